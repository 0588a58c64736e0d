/**
 * Requests that Node's HTTP parser refuses before Hono sees them (a negative Content-Length,
 * headers over the size limit, a method with a control byte) are answered with problem+json
 * like every other 4xx, over a raw socket against the edge as `npm start` serves it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG } from '../bench/job-bodies.ts';
import { createApiKey } from '../shared/api-keys.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../single-node/data-dir.ts';
import { type LocalEdge, startLocalEdge } from './local.ts';

let dataDir: string;
let edge: LocalEdge;
let adapters: ReturnType<typeof openEmbedded>;
let key: string;
let port: number;
beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'amdm-client-error-'));
  const env = { DATA_DIR: dataDir };
  const layout = dataLayout(dataDir);
  const secrets = loadSecrets(layout, env);
  adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
  edge = await startLocalEdge({ dataDir, port: 0, catalog: async () => CATALOG, adapters, env, logger: { error() {}, warn() {}, info() {} } });
  port = Number(new URL(edge.url).port);
  key = (await createApiKey(adapters.store, { tenant: 'acme', pepper: secrets.pepper })).key;
});
afterAll(async () => {
  await edge?.close();
  await adapters?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Writes the bytes and reads until the server closes the connection (or `until` matches). */
function raw(bytes: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      got += d;
      if (until?.test(got)) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('end', () => resolve(got));
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
    socket.write(bytes, 'latin1');
  });
}

function parse(response: string): { status: number; headers: Record<string, string>; body: string } {
  const end = response.indexOf('\r\n\r\n');
  expect(end, `no end of headers in ${JSON.stringify(response)}`).toBeGreaterThan(0);
  const [statusLine, ...lines] = response.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine!)?.[1]), headers, body: response.slice(end + 4) };
}

describe("Node's parser errors are problem+json", () => {
  it('Content-Length: -1 is a 400 naming the header', async () => {
    const res = parse(await raw('POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n{}'));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers.connection).toBe('close');
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
    expect(JSON.parse(res.body)).toEqual({
      type: 'urn:amdm:problem:bad-request',
      title: 'Bad request',
      status: 400,
      detail: expect.stringMatching(/not valid HTTP\/1\.1/),
      errors: [{ field: 'header Content-Length', message: expect.stringMatching(/non-negative decimal integer/) }],
    });
  });

  it('headers over the size limit are a 431', async () => {
    const res = parse(await raw(`GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(res.body)).toMatchObject({ status: 431, title: 'Request header fields too large', errors: [{ field: 'headers' }] });
  });

  it('a method with a control byte is a 400 naming the method', async () => {
    const res = parse(await raw('GE\x01T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(JSON.parse(res.body)).toMatchObject({ status: 400, errors: [{ field: 'method' }] });
  });

  it('never writes a status line into a response already under way on the connection', async () => {
    const job = await fetch(`${edge.url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'a red circle' }], sampler: { steps: 4, seed: 1 } }),
    });
    expect(job.status).toBe(202);
    const { id } = (await job.json()) as { id: string };
    // the event stream stays open (no runner takes the job); once it has begun, garbage follows
    const socket = connect(port, '127.0.0.1');
    socket.setEncoding('latin1');
    let got = '';
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('data', (d: string) => {
      const first = !got.includes('event: job');
      got += d;
      if (first && got.includes('event: job')) socket.write('POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n');
    });
    socket.write(`GET /v1/jobs/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n\r\n`);
    await closed;
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    expect(got).toContain('event: job');
    expect(got.match(/HTTP\/1\.1 /g)).toHaveLength(1);
  });
});
