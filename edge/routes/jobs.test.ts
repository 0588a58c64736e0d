/**
 * POST /v1/jobs as a client sees its body checked: which media types pass, what malformed or
 * invalid bodies get, in which order the checks answer, and what a 202 carries. The route
 * validates its body itself (see jobs.ts); this pins the answers to what the generated
 * validators of @hono/zod-openapi gave.
 */
import { describe, expect, it } from 'vitest';
import { MemoryQueue } from '../../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import type { ModelInfo } from '../../shared/contract/index.ts';
import { createApp } from '../app.ts';

const BASE = 'http://127.0.0.1:8787';
const SECRET = 'blob-secret-'.repeat(4);
const PEPPER = 'pepper-'.repeat(4);

const CATALOG: ModelInfo[] = [
  {
    id: 'shapes-base',
    description: '',
    ecosystem: 'shapes-v1',
    latent: { channels: 4, vae_scale_factor: 4 },
    sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
    conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: null },
    schedulers: ['ddim', 'euler'],
  },
];

async function setup() {
  const store = new MemoryStore({ signing: { secret: SECRET, baseUrl: BASE } });
  const queue = new MemoryQueue();
  const app = createApp({
    store,
    queue,
    catalog: async () => CATALOG,
    pepper: PEPPER,
    publicBaseUrl: BASE,
    clock: { now: () => Date.parse('2025-03-01T10:00:00Z') },
    random: () => new Uint8Array(32).fill(7),
    logger: { error() {}, warn() {}, info() {} },
  });
  const key = (await createApiKey(store, { tenant: 'acme', pepper: PEPPER })).key;
  const post = (headers: Record<string, string>, body?: string) =>
    app.request('/v1/jobs', { method: 'POST', headers: { authorization: `Bearer ${key}`, ...headers }, ...(body !== undefined ? { body } : {}) });
  return { post, queue };
}

const VALID = JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 4, seed: 1 } });

describe('POST /v1/jobs body checks', () => {
  it('accepts JSON media types with parameters, in any case', async () => {
    const { post } = await setup();
    for (const type of ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/vnd.amdm+json']) {
      expect((await post({ 'content-type': type }, VALID)).status, type).toBe(202);
    }
  });

  it('answers 415 for other media types, malformed parameters, and a body without a type', async () => {
    const { post } = await setup();
    const cases: [Record<string, string>, string | undefined][] = [
      [{ 'content-type': 'text/plain' }, VALID],
      [{ 'content-type': 'text/plain' }, undefined],
      [{ 'content-type': 'application/json;' }, VALID],
      [{ 'content-type': 'application/json; charset' }, VALID],
      [{ 'content-type': 'application/jsonx' }, VALID],
      [{}, VALID],
    ];
    for (const [headers, body] of cases) {
      const res = await post(headers, body);
      expect(res.status, JSON.stringify(headers)).toBe(415);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(await res.json()).toMatchObject({ type: 'urn:amdm:problem:unsupported-media-type', errors: [{ field: 'header Content-Type' }] });
    }
  });

  it('answers 400 for malformed or empty JSON', async () => {
    const { post } = await setup();
    for (const body of ['{"models": [', '', 'nul']) {
      const res = await post({ 'content-type': 'application/json' }, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json()).toMatchObject({ type: 'urn:amdm:problem:malformed-json', errors: [{ field: 'body' }] });
    }
  });

  it('answers 422 naming every field at fault, an absent body included', async () => {
    const { post } = await setup();
    const none = await post({});
    expect(none.status).toBe(422);
    expect((await none.json()).errors).toEqual([expect.objectContaining({ field: 'models' })]);
    const array = await post({ 'content-type': 'application/json' }, '[]');
    expect(array.status).toBe(422);
    const bad = await post(
      { 'content-type': 'application/json' },
      JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'x', extra: 1 }], sampler: { steps: 0 } }),
    );
    expect(bad.status).toBe(422);
    const body = await bad.json();
    expect(body).toMatchObject({ type: 'urn:amdm:problem:validation-error', status: 422 });
    expect(body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['models[0].extra', 'sampler.steps']);
  });

  it('checks the shape of the headers before the body, and the body before what Prefer asks', async () => {
    const { post } = await setup();
    const long = await post({ 'content-type': 'text/plain', prefer: `wait=1, ${'x'.repeat(200)}` }, 'not json');
    expect(long.status).toBe(400);
    expect((await long.json()).errors).toEqual([expect.objectContaining({ field: 'header Prefer' })]);
    const body = await post({ 'content-type': 'text/plain', prefer: 'wait=soon' }, 'not json');
    expect(body.status).toBe(415);
    const wait = await post({ 'content-type': 'application/json', prefer: 'wait=soon' }, VALID);
    expect(wait.status).toBe(400);
    expect((await wait.json()).errors).toEqual([expect.objectContaining({ field: 'header Prefer' })]);
  });

  it('202 carries the queued job, its location, no-store and a request id', async () => {
    const { post, queue } = await setup();
    const res = await post({ 'content-type': 'application/json' }, VALID);
    expect(res.status).toBe(202);
    const job = await res.json();
    expect(res.headers.get('location')).toBe(`${BASE}/v1/jobs/${job.id}`);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-request-id')).toMatch(/^[\w=-]{8,}$/);
    expect(job).toMatchObject({
      object: 'job',
      status: 'queued',
      created_at: '2025-03-01T10:00:00.000Z',
      started_at: null,
      finished_at: null,
      progress: null,
      usage: null,
      error: null,
      outputs: [],
      webhook: null,
      queue: { position: null, reason: expect.any(String) },
      timings: { queued_ms: null, run_ms: null, onnx_ms: null, outside_onnx_ms: null },
      urls: { self: `${BASE}/v1/jobs/${job.id}`, cancel: `${BASE}/v1/jobs/${job.id}/cancel`, events: `${BASE}/v1/jobs/${job.id}/events` },
    });
    expect(job.spec.models[0]).toMatchObject({ id: 'shapes-base', prompt: 'a red circle' });
    expect((await queue.stats()).visible).toBe(1);
  });
});
