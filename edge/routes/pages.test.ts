/**
 * The people-facing routes in process: the playground and the reference page with their
 * security headers and caching, the local key offer and who gets it, a server whose pages
 * were never built, and an OpenAPI document whose every operation shows a request and a
 * response example; and the Lambda bundle carrying the pages.
 */
import SwaggerParser from '@apidevtools/swagger-parser';
import { fileURLToPath } from 'node:url';
import { OpenAPIHono } from '@hono/zod-openapi';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { MemoryQueue } from '../../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import type { ModelInfo } from '../../shared/contract/index.ts';
import { createApp, type AppDeps } from '../app.ts';
import { problemOnError } from '../middleware/problem/index.ts';
import type { EdgeApp, RouteContext } from './common.ts';
import { registerDocsRoutes } from './docs.ts';
import { registerPlaygroundRoutes } from './playground.ts';

const BASE = 'http://127.0.0.1:8787';
const PEPPER = 'pepper-'.repeat(4);
const model: ModelInfo = {
  id: 'shapes-base',
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [32, 32], min: 32, max: 64, multiple: 8 },
  conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null },
  schedulers: ['ddim', 'euler'],
};

function app(over: Partial<AppDeps> = {}): EdgeApp {
  return createApp({ store: new MemoryStore(), queue: new MemoryQueue(), catalog: async () => [model], pepper: PEPPER, publicBaseUrl: BASE, logger: { error() {}, warn() {}, info() {} }, ...over });
}

const LOCAL_KEY = 'amdm_abcdefghijkl_0123456789012345678901234567890123456789';

describe('the playground and the reference page', () => {
  it('serve HTML with a strict policy, and every asset they name with long-lived caching and ETags', async () => {
    const a = app();
    for (const page of ['/', '/docs']) {
      const res = await a.request(`${BASE}${page}`);
      expect(res.status, page).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      const csp = res.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('cache-control')).toBe('no-cache');
      const html = await res.text();
      // nothing from another origin: no CDN, no web fonts
      expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
      const assets = [...html.matchAll(/(?:src|href)="(assets\/[^"]+)"/g)].map((m) => m[1]!);
      expect(assets.length, page).toBeGreaterThanOrEqual(3);
      for (const asset of assets) {
        const r = await a.request(`${BASE}/${asset}`);
        expect(r.status, asset).toBe(200);
        expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
        const etag = r.headers.get('etag')!;
        const again = await a.request(`${BASE}/${asset}`, { headers: { 'if-none-match': etag } });
        expect(again.status, asset).toBe(304);
        expect(await again.text()).toBe('');
      }
    }
    expect((await a.request(`${BASE}/assets/nope.js`)).status).toBe(404);
  });

  it('the page script never evaluates strings as code', async () => {
    const html = await (await app().request(`${BASE}/`)).text();
    const src = /src="(assets\/playground\.[^"]+\.js)"/.exec(html)![1]!;
    const js = await (await app().request(`${BASE}/${src}`)).text();
    expect(js.length).toBeGreaterThan(1000);
    expect(js).not.toMatch(/\beval\s*\(|new Function\s*\(|innerHTML\s*=/);
  });

  it('the policy lets images and uploads reach the API origin even when the page is opened under another name', async () => {
    const csp = (await app({ publicBaseUrl: 'https://api.amdm.test/prod' }).request('https://d123.cdn.amdm.test/')).headers.get('content-security-policy')!;
    expect(csp).toMatch(/img-src 'self' https:\/\/api\.amdm\.test /);
    expect(csp).toMatch(/connect-src 'self' https:\/\/api\.amdm\.test /);
  });

  it('the policy lets the live previews (PNG data: URLs on the event stream) show as images, and nothing else load from data:', async () => {
    const directives = new Map(
      (await app().request(`${BASE}/`)).headers.get('content-security-policy')!.split(';').map((d) => {
        const [name, ...sources] = d.trim().split(/\s+/);
        return [name!, sources] as const;
      }),
    );
    expect(directives.get('img-src')).toContain('data:');
    expect([...directives].filter(([name, sources]) => name !== 'img-src' && sources.includes('data:'))).toEqual([]);
  });

  it('a server whose pages were never built still serves the API and says how to build them', async () => {
    const bare: EdgeApp = new OpenAPIHono();
    bare.onError(problemOnError({ logger: { error() {}, warn() {}, info() {} } }));
    const ctx = { deps: { publicBaseUrl: BASE, localApiKey: null } } as unknown as RouteContext;
    const unbuilt = async (): Promise<never> => {
      throw new Error('Cannot find module playground/generated/ui-assets.js');
    };
    registerPlaygroundRoutes(bare, ctx, unbuilt);
    registerDocsRoutes(bare, ctx, unbuilt);
    for (const path of ['/', '/docs', '/assets/playground.0123456789ab.js']) {
      const res = await bare.request(`${BASE}${path}`);
      expect(res.status, path).toBe(503);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect((await res.json()).detail).toMatch(/npm run build:ui/);
    }
  });
});

describe('the Lambda bundle', () => {
  it('an esbuild bundle of edge/lambda.ts carries the pages (the generated module is a static import target)', async () => {
    const out = await build({
      entryPoints: [fileURLToPath(new URL('../lambda.ts', import.meta.url))],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      write: false,
      logLevel: 'silent',
      // what the Lambda runtime provides, and native code the edge never loads
      external: ['@aws-sdk/*', 'better-sqlite3', 'onnxruntime-node'],
    });
    const text = out.outputFiles.map((f) => f.text).join('\n');
    expect(text).toContain('<title>AMDM playground</title>');
    expect(text).toContain('<title>AMDM API reference</title>');
    expect(text).toContain('SwaggerUIBundle');
  });
});

describe('the local key offer', () => {
  const key = (over: Partial<AppDeps> = {}) => app({ localApiKey: async () => LOCAL_KEY, ...over });

  it('hands the key to a same-origin page on loopback, never cached', async () => {
    for (const origin of ['http://127.0.0.1:8787', 'http://localhost:8787', 'http://[::1]:8787']) {
      const res = await key().request(`${origin}/playground/local-key`, { headers: { 'sec-fetch-site': 'same-origin' } });
      expect(res.status, origin).toBe(200);
      expect(await res.json()).toEqual({ key: LOCAL_KEY });
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
  });

  it('refuses a foreign Host (DNS rebinding), a proxied request and a cross-site fetch, naming the header', async () => {
    const cases: [string, Record<string, string>, string][] = [
      ['http://evil.example:8787', {}, 'header Host'],
      ['http://127.0.0.1:8787', { 'x-forwarded-for': '203.0.113.9' }, 'header x-forwarded-for'],
      ['http://127.0.0.1:8787', { forwarded: 'for=203.0.113.9' }, 'header forwarded'],
      ['http://127.0.0.1:8787', { 'sec-fetch-site': 'cross-site' }, 'header Sec-Fetch-Site'],
      ['http://127.0.0.1:8787', { origin: 'http://evil.example' }, 'header Origin'],
    ];
    for (const [origin, headers, field] of cases) {
      const res = await key().request(`${origin}/playground/local-key`, { headers });
      expect(res.status, field).toBe(403);
      const body = await res.json();
      expect(body.errors[0].field).toBe(field);
      expect(JSON.stringify(body)).not.toContain(LOCAL_KEY);
    }
  });

  it('is absent unless the composition root offers it, and says so when no key exists yet', async () => {
    expect((await app().request(`${BASE}/playground/local-key`)).status).toBe(404);
    const none = await key({ localApiKey: async () => null }).request(`${BASE}/playground/local-key`);
    expect(none.status).toBe(404);
    expect((await none.json()).detail).toMatch(/npm start/);
    expect(() => app({ localApiKey: 'amdm_x' as never })).toThrow(/option "localApiKey"/);
  });
});

describe('the OpenAPI document', () => {
  it('is valid 3.1 and every operation has a request example (body or parameters) and response examples', async () => {
    const doc = await (await app().request(`${BASE}/openapi.json`)).json();
    await SwaggerParser.validate(structuredClone(doc));
    type Op = {
      parameters?: { name: string; example?: unknown; schema?: { example?: unknown } }[];
      requestBody?: { content: Record<string, { example?: unknown }> };
      responses: Record<string, { content?: Record<string, { example?: unknown }> }>;
    };
    let operations = 0;
    for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, Op>>)) {
      for (const [verb, op] of Object.entries(methods)) {
        const id = `${verb.toUpperCase()} ${path}`;
        operations++;
        for (const content of Object.values(op.requestBody?.content ?? {})) expect(content.example, `${id} request body`).toBeDefined();
        for (const p of op.parameters ?? []) expect(p.example ?? p.schema?.example, `${id} parameter ${p.name}`).toBeDefined();
        expect(op.requestBody !== undefined || (op.parameters ?? []).length > 0 || verb === 'get', `${id} has a request`).toBe(true);
        for (const [status, r] of Object.entries(op.responses)) {
          for (const content of Object.values(r.content ?? {})) expect(content.example, `${id} ${status}`).toBeDefined();
        }
      }
    }
    expect(operations).toBeGreaterThanOrEqual(11);
    // the pages are not API operations
    expect(Object.keys(doc.paths)).not.toContain('/');
    expect(Object.keys(doc.paths)).not.toContain('/docs');
    expect(doc.paths['/v1/jobs/{id}/events'].get.description).toMatch(/Authorization header/);
  });
});
