/**
 * The playground: `/` and its hashed assets under `/assets/`, plus the local key offer.
 *
 * The page is static; everything it does goes through the public API with the key the
 * user gives it. On a single node reached over loopback, GET /playground/local-key hands
 * the page the key `npm start` created, so a developer does not have to copy it. That
 * offer is made only when the composition root passes `localApiKey` (edge/local.ts does so
 * only when it listens on loopback and its public URL is loopback too), and only to a
 * request that is visibly local: a loopback Host (which defeats DNS rebinding: a foreign
 * page that resolves its own name to 127.0.0.1 still sends its own name), no proxy
 * headers, and not a cross-site fetch.
 */
import type { Context } from 'hono';
import { ProblemError } from '../middleware/problem/index.ts';
import { type EdgeApp, type RouteContext } from './common.ts';
import { type UiAssetLoader, loadUiAssets, serveAsset, uiAsset } from './ui-assets.ts';

const LOOPBACK_HOSTNAME = /^(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])$/i;

/**
 * The page's policy: own scripts and styles only; images and uploads may use the object
 * store's https origin. Images may also be data: URLs, because the live previews arrive on
 * the event stream as small PNG data URLs (JobPreview); an image cannot run code, and no
 * other directive takes data:.
 */
export function playgroundCsp(publicBaseUrl: string): string {
  const api = new URL(publicBaseUrl).origin;
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' ${api} blob: data: https:`,
    `connect-src 'self' ${api} https:`,
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function registerPlaygroundRoutes(app: EdgeApp, { deps }: RouteContext, load: UiAssetLoader = loadUiAssets): void {
  const csp = playgroundCsp(deps.publicBaseUrl);

  app.get('/', async (c) => {
    const page = await uiAsset(load, '/');
    if (!page) throw new ProblemError(404, { title: 'Not found', detail: 'the playground page is missing from the build' });
    return serveAsset(c, page, { 'content-security-policy': csp });
  });

  app.get('/assets/:name', async (c) => {
    const asset = await uiAsset(load, `/assets/${c.req.param('name')}`);
    if (!asset) throw new ProblemError(404, { title: 'Not found', detail: `no asset ${c.req.param('name')}; reload the page for current asset names` });
    return serveAsset(c, asset, { 'content-security-policy': "default-src 'none'; frame-ancestors 'none'" });
  });

  app.get('/playground/local-key', async (c) => {
    if (!deps.localApiKey) {
      throw new ProblemError(404, { type: 'no-local-key', title: 'Not found', detail: 'this server offers no local key; use an API key from your administrator' });
    }
    refuseIfNotLocal(c);
    const key = await deps.localApiKey();
    if (!key) throw new ProblemError(404, { type: 'no-local-key', title: 'Not found', detail: 'no local key has been created yet; `npm start` creates one' });
    return c.json({ key }, 200, { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  });
}

function refuseIfNotLocal(c: Context): void {
  const refuse = (field: string, message: string) =>
    new ProblemError(403, { type: 'not-local', title: 'Forbidden', detail: 'the local key is offered only to pages loaded from this machine over loopback', errors: [{ field, message }] });
  // @hono/node-server builds the URL from the Host header; in process it is the request URL
  const hostname = new URL(c.req.url).hostname;
  if (!LOOPBACK_HOSTNAME.test(hostname)) throw refuse('header Host', `must be a loopback name such as 127.0.0.1 or localhost (got ${JSON.stringify(hostname.slice(0, 100))})`);
  for (const h of ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-real-ip']) {
    if (c.req.header(h) !== undefined) throw refuse(`header ${h}`, 'a proxied request is not a local one');
  }
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined && site !== 'same-origin' && site !== 'none') throw refuse('header Sec-Fetch-Site', `must be same-origin (got ${JSON.stringify(site.slice(0, 40))})`);
  const origin = c.req.header('origin');
  if (origin !== undefined && origin !== new URL(c.req.url).origin) throw refuse('header Origin', 'must be this server');
}
