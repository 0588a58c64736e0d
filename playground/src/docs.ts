/**
 * Starts Swagger UI (bundled from swagger-ui-dist, served by the edge) on /openapi.json.
 * A separate file because the page's Content-Security-Policy allows no inline script.
 * No validator badge (it would send the document to a third party) and no URL from the
 * query string (the page shows only this API's document).
 */
interface SwaggerUIBundleFn {
  (config: Record<string, unknown>): unknown;
  presets: { apis: unknown };
}

const bundle = (globalThis as unknown as { SwaggerUIBundle?: SwaggerUIBundleFn }).SwaggerUIBundle;
const target = document.getElementById('swagger-ui');
if (!bundle || !target) {
  if (target) target.textContent = 'The reference viewer did not load; the OpenAPI document is at openapi.json.';
} else {
  bundle({
    url: new URL('openapi.json', document.baseURI).href,
    domNode: target,
    presets: [bundle.presets.apis],
    layout: 'BaseLayout',
    deepLinking: true,
    validatorUrl: null,
    queryConfigEnabled: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
}
