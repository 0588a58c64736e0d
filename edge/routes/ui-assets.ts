/**
 * The people-facing pages' files (the playground at `/`, the API reference at `/docs`),
 * served from the module `npm run build:ui` generates (playground/build.ts). It is loaded
 * on the first page request, not with the app: API requests on a cold Lambda do not pay
 * for parsing 2 MB of page code, and an edge whose pages were never built still serves
 * the API, answering the pages with a 503 that says how to build them.
 */
import type { Context } from 'hono';
import type { UiAsset, UiAssetBundle } from '../../playground/generated/ui-assets.js';
import { ProblemError } from '../middleware/problem/index.ts';

export type { UiAsset, UiAssetBundle };
export type UiAssetLoader = () => Promise<UiAssetBundle>;

let loading: Promise<UiAssetBundle> | null = null;

/** The generated module, imported once; a failed import is retried on the next request. */
export const loadUiAssets: UiAssetLoader = () =>
  (loading ??= import('../../playground/generated/ui-assets.js').then(
    (m) => m.UI_ASSETS,
    (err: unknown) => {
      loading = null;
      throw err;
    },
  ));

export async function uiAsset(load: UiAssetLoader, path: string): Promise<UiAsset | null> {
  let bundle: UiAssetBundle;
  try {
    bundle = await load();
  } catch {
    throw new ProblemError(503, {
      type: 'ui-not-built',
      title: 'Service unavailable',
      detail: 'the playground and API reference pages are not built on this server: run `npm run build:ui` (npm start and npm test do it). The API itself works.',
    });
  }
  return Object.hasOwn(bundle.files, path) ? bundle.files[path]! : null;
}

/** Security headers every page and asset gets. */
const BASE_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  // signed output URLs must not leak to other sites through Referer
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

/** 200 with the asset, or 304 when the client's copy is current. */
export function serveAsset(c: Context, asset: UiAsset, headers: Record<string, string> = {}): Response {
  const all: Record<string, string> = {
    ...BASE_HEADERS,
    ...headers,
    etag: asset.etag,
    // hashed names never change content; pages are revalidated on every load so a deploy shows at once
    'cache-control': asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  };
  const ifNoneMatch = c.req.header('if-none-match');
  if (ifNoneMatch && ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === asset.etag)) {
    return new Response(null, { status: 304, headers: all });
  }
  return new Response(asset.body, { status: 200, headers: { ...all, 'content-type': asset.contentType } });
}
