/**
 * The type of the module `npm run build:ui` (playground/build.ts) writes beside this file:
 * the playground and the API reference page, bundled, as text. The module itself is not
 * committed (it is ~2 MB of generated code); this declaration is, so the edge type-checks
 * on a fresh clone. `npm start` and `npm test` build the module first.
 */
export interface UiAsset {
  contentType: string;
  body: string;
  /** a strong validator of `body` (quoted, as sent in ETag) */
  etag: string;
  /** content-hashed name: cache forever */
  immutable: boolean;
}

export interface UiAssetBundle {
  /** URL path (from the API root, e.g. '/', '/docs', '/assets/playground.3f2a….js') -> asset */
  files: Record<string, UiAsset>;
}

export declare const UI_ASSETS: UiAssetBundle;
