/**
 * A minimal /v1/blobs/* route on node:http for the conformance tests: it checks signed URLs
 * with the shared verifier exactly as the edge does and serves the embedded stores, so the
 * suite can fetch their signed URLs over real HTTP. Several stores mount under /s/{n}.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ObjectStore } from '../../shared/ports/store.ts';
import { keyFromBlobPath, verifyBlobSignature } from '../../shared/signed-url.ts';

export interface BlobServer {
  /**
   * A new mount point checking URLs with `secret`: give `baseUrl` to the store for signing,
   * then `serve` the store built with it.
   */
  mount(secret: string): { baseUrl: string; serve(store: ObjectStore): void };
  stop(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

export async function startBlobServer(): Promise<BlobServer> {
  const mounts = new Map<string, { store: ObjectStore | null; secret: string }>();
  let next = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://blob.invalid');
    const match = /^\/s\/(\d+)(\/.*)$/.exec(url.pathname);
    const mount = match ? mounts.get(match[1]!) : undefined;
    const key = match ? keyFromBlobPath(match[2]!) : null;
    if (!mount?.store || key === null) return void res.writeHead(404).end('no such blob route');
    const store = mount.store;
    if (req.method !== 'GET' && req.method !== 'PUT') return void res.writeHead(405, { allow: 'GET, PUT' }).end();
    const expires = url.searchParams.get('expires') ?? '';
    const sig = url.searchParams.get('sig') ?? '';
    if (url.searchParams.get('method') !== req.method) return void res.writeHead(403).end('method mismatch');
    const verdict = await verifyBlobSignature(mount.secret, req.method, key, expires, sig, Math.floor(Date.now() / 1000));
    if (!verdict.valid) return void res.writeHead(403).end(verdict.reason);
    if (req.method === 'GET') {
      const object = await store.get(key);
      if (!object) return void res.writeHead(404).end('no such key');
      res.writeHead(200, { 'content-type': object.contentType, 'content-length': object.body.byteLength });
      return void res.end(object.body);
    }
    await store.put(key, await readBody(req), req.headers['content-type']);
    res.writeHead(200).end();
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    mount(secret) {
      const id = String(++next);
      const entry: { store: ObjectStore | null; secret: string } = { store: null, secret };
      mounts.set(id, entry);
      return {
        baseUrl: `http://127.0.0.1:${port}/s/${id}`,
        serve(store) {
          entry.store = store;
        },
      };
    },
    stop() {
      server.closeAllConnections();
      return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}
