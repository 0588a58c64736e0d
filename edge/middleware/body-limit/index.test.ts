import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { problemOnError } from '../problem/index.ts';
import { bodyLimit } from './index.ts';

const silent = { error() {}, warn() {}, info() {} };

function app(maxBytes: number) {
  const a = new Hono();
  a.onError(problemOnError({ logger: silent }));
  a.post('/', bodyLimit({ maxBytes, what: 'job request' }), async (c) => c.json({ got: (await c.req.text()).length }));
  return a;
}

describe('body limit middleware', () => {
  it('lets bodies up to the limit through', async () => {
    const res = await app(10).request('/', { method: 'POST', body: '0123456789' });
    expect(await res.json()).toEqual({ got: 10 });
  });

  it('413 problem when the declared length is too large', async () => {
    const res = await app(10).request('/', { method: 'POST', body: '01234567890' });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ status: 413, detail: 'the job request is limited to 10 bytes', errors: [{ field: 'body' }] });
  });

  it('413 when a streamed body without Content-Length grows past the limit', async () => {
    const stream = new ReadableStream({
      start(ctl) {
        for (let i = 0; i < 5; i++) ctl.enqueue(new TextEncoder().encode('0123'));
        ctl.close();
      },
    });
    const res = await app(10).request('/', { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
  });

  it('decides on a declared Content-Length alone, without reading the body', async () => {
    let pulled = false;
    const untouchable = () =>
      new ReadableStream(
        {
          pull(ctl) {
            pulled = true;
            ctl.enqueue(new TextEncoder().encode('0123456789x'));
            ctl.close();
          },
        },
        { highWaterMark: 0 },
      );
    const refused = await app(10).request('/', { method: 'POST', headers: { 'content-length': '11' }, body: untouchable(), duplex: 'half' } as RequestInit);
    expect(refused.status).toBe(413);
    expect(pulled).toBe(false);
    const accepted = await app(10).request('/', { method: 'POST', headers: { 'content-length': '10' }, body: '0123456789' });
    expect(await accepted.json()).toEqual({ got: 10 });
  });

  it('400 for a Content-Length that is not a number', async () => {
    const res = await app(10).request('/', { method: 'POST', headers: { 'content-length': '-1' }, body: 'x' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ errors: [{ field: 'header Content-Length' }] });
  });

  it('checks its options', () => {
    expect(() => bodyLimit({ maxBytes: 0 })).toThrow(/option "maxBytes"/);
    expect(() => bodyLimit({ maxBytes: 1.5 })).toThrow(/option "maxBytes"/);
  });
});
