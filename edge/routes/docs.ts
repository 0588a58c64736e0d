/**
 * GET /docs: the human API reference, Swagger UI over /openapi.json, bundled from
 * swagger-ui-dist at build time (playground/build.ts) and served from here: no CDN, no
 * fonts, no third party. Its policy pins every fetch to this API.
 */
import { ProblemError } from '../middleware/problem/index.ts';
import { type EdgeApp, type RouteContext } from './common.ts';
import { type UiAssetLoader, loadUiAssets, serveAsset, uiAsset } from './ui-assets.ts';

export function docsCsp(publicBaseUrl: string): string {
  const api = new URL(publicBaseUrl).origin;
  return [
    "default-src 'none'",
    "script-src 'self'",
    // Swagger UI (React) writes style attributes into its markup
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    // the document, and "try it out" requests to the server it names
    `connect-src 'self' ${api}`,
    "font-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function registerDocsRoutes(app: EdgeApp, { deps }: RouteContext, load: UiAssetLoader = loadUiAssets): void {
  const csp = docsCsp(deps.publicBaseUrl);
  app.get('/docs', async (c) => {
    const page = await uiAsset(load, '/docs');
    if (!page) throw new ProblemError(404, { title: 'Not found', detail: 'the reference page is missing from the build' });
    return serveAsset(c, page, { 'content-security-policy': csp });
  });
}
