/**
 * Builds the people-facing pages into one generated module, playground/generated/ui-assets.js:
 * the playground (`/`, from playground/src, bundled with esbuild) and the API reference
 * (`/docs`, Swagger UI from swagger-ui-dist), every file as text with a content-hashed
 * name. A module, not files on disk, because the edge has no filesystem on Lambda: the
 * Lambda bundle includes it like any other import, and the local server serves the same
 * bytes. Nothing is fetched at run time and no font is downloaded.
 *
 * The playground's presets are the request files in examples/, embedded in its page as
 * JSON: the Lambda edge has no examples/ folder to read, and one page load needs no second
 * request for them.
 *
 * Runs from `npm run build:ui`, before `npm start` (prestart) and before every vitest run
 * (playground/vitest-setup.ts). The write is atomic and skipped when nothing changed, so
 * concurrent runs in one checkout do not disturb each other.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import type { UiAsset, UiAssetBundle } from './generated/ui-assets.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = join(HERE, 'src');
const EXAMPLES = join(HERE, '..', 'examples');
export const GENERATED_MODULE = join(HERE, 'generated', 'ui-assets.js');

const hash = (text: string): string => createHash('sha256').update(text).digest('hex');

async function bundle(entry: string, format: 'esm' | 'iife'): Promise<string> {
  const out = await build({
    entryPoints: [join(SRC, entry)],
    bundle: true,
    format,
    platform: 'browser',
    target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
    minify: true,
    write: false,
    legalComments: 'eof',
    charset: 'utf8',
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}

async function minifyCss(entry: string): Promise<string> {
  const out = await build({ entryPoints: [join(SRC, entry)], bundle: true, minify: true, write: false, logLevel: 'silent', charset: 'utf8' });
  return out.outputFiles[0]!.text;
}

/**
 * examples/*.json as the page's presets, `[{ name, request }]`, fewest models first (a
 * newcomer meets the simplest first), as text safe inside <script type="application/json">:
 * every "<" escaped, so no "</script>" in a prompt can end the element.
 */
export function examplesJson(dir = EXAMPLES): string {
  const presets = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => {
      try {
        return { name: f.slice(0, -'.json'.length), request: JSON.parse(readFileSync(join(dir, f), 'utf8')) as { models: unknown[] } };
      } catch (err) {
        throw new Error(`examples/${f}: not valid JSON: ${(err as Error).message}`);
      }
    })
    .sort((a, b) => a.request.models.length - b.request.models.length || a.name.localeCompare(b.name));
  return JSON.stringify(presets).replaceAll('<', '\\u003c');
}

/** Source maps are not shipped: drop the comments that would make browsers ask for them. */
const dropSourceMapComment = (text: string): string => text.replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, '').replace(/\/\*# sourceMappingURL=\S+ \*\/\s*$/, '');

export async function buildUiAssets(): Promise<UiAssetBundle> {
  const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
  const swagger = (f: string) => readFileSync(join(swaggerDir, f), 'utf8');
  const swaggerVersion = (JSON.parse(swagger('package.json')) as { version: string }).version;

  const files: Record<string, UiAsset> = {};
  const names: Record<string, string> = {};
  const add = (logical: string, body: string, contentType: string): void => {
    const h = hash(body);
    const dot = logical.lastIndexOf('.');
    const name = `${logical.slice(0, dot)}.${h.slice(0, 12)}${logical.slice(dot)}`;
    names[logical] = name;
    files[`/assets/${name}`] = { contentType, body, etag: `"${h.slice(0, 32)}"`, immutable: true };
  };
  add('playground.js', await bundle('main.ts', 'esm'), 'text/javascript; charset=utf-8');
  add('playground.css', await minifyCss('styles.css'), 'text/css; charset=utf-8');
  add('favicon.svg', readFileSync(join(SRC, 'favicon.svg'), 'utf8'), 'image/svg+xml');
  add('docs.js', await bundle('docs.ts', 'iife'), 'text/javascript; charset=utf-8');
  add('docs.css', await minifyCss('docs.css'), 'text/css; charset=utf-8');
  add('swagger-ui-bundle.js', dropSourceMapComment(swagger('swagger-ui-bundle.js')), 'text/javascript; charset=utf-8');
  add('swagger-ui.css', dropSourceMapComment(swagger('swagger-ui.css')), 'text/css; charset=utf-8');
  // the bundle's own header points at this name, next to it
  const license = `swagger-ui-dist ${swaggerVersion}\n\n${swagger('LICENSE')}\n${swagger('NOTICE')}\n\n${swagger('swagger-ui-bundle.js.LICENSE.txt')}`;
  files['/assets/swagger-ui-bundle.js.LICENSE.txt'] = { contentType: 'text/plain; charset=utf-8', body: license, etag: `"${hash(license).slice(0, 32)}"`, immutable: false };

  const inserts: Record<string, string> = { examples: examplesJson() };
  const page = (template: string): UiAsset => {
    const body = readFileSync(join(SRC, template), 'utf8').replace(/\{\{(=?)([\w.-]+)\}\}/g, (_, raw: string, logical: string) => {
      if (raw) {
        // {{=name}}: text generated here, not an asset name
        if (!Object.hasOwn(inserts, logical)) throw new Error(`${template}: nothing to insert as "${logical}" (have ${Object.keys(inserts).join(', ')})`);
        return inserts[logical]!;
      }
      const name = names[logical];
      if (!name) throw new Error(`${template}: no asset "${logical}" (have ${Object.keys(names).join(', ')})`);
      return name;
    });
    return { contentType: 'text/html; charset=utf-8', body, etag: `"${hash(body).slice(0, 32)}"`, immutable: false };
  };
  files['/'] = page('index.html');
  files['/docs'] = page('docs.html');
  return { files };
}

/** Build and write the module; returns whether its content changed. */
export async function writeUiAssets(): Promise<{ path: string; changed: boolean; bytes: number }> {
  const assets = await buildUiAssets();
  const text =
    '// Generated by playground/build.ts (npm run build:ui) from playground/src and swagger-ui-dist. Do not edit; not committed.\n' +
    `export const UI_ASSETS = ${JSON.stringify(assets)};\n`;
  mkdirSync(dirname(GENERATED_MODULE), { recursive: true });
  if (existsSync(GENERATED_MODULE) && readFileSync(GENERATED_MODULE, 'utf8') === text) return { path: GENERATED_MODULE, changed: false, bytes: text.length };
  const tmp = `${GENERATED_MODULE}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, GENERATED_MODULE);
  return { path: GENERATED_MODULE, changed: true, bytes: text.length };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeUiAssets().then(
    (r) => console.log(`build:ui: ${r.changed ? 'wrote' : 'up to date:'} ${r.path} (${(r.bytes / 1e6).toFixed(1)} MB)`),
    (err) => {
      console.error(`build:ui: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
