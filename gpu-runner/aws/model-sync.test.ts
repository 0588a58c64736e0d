/**
 * Model sync against S3 as fauxqs serves it (the real S3 wire protocol, in process), and
 * against an ObjectStore-like reader.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startFauxqs, type FauxqsServer } from 'fauxqs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelSyncError, s3ModelSource, storeModelSource, syncModels } from './model-sync.ts';

const BUCKET = 'amdm-models-test';
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

// A package shaped like tools/shapes/export.py output; the UNet is large enough to arrive in
// several chunks, so the streaming hash is exercised across chunk boundaries.
const unet = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 31) % 251);
const files: Record<string, Uint8Array | string> = {
  'shapes/unet/model.onnx': unet,
  'shapes/unet/config.json': '{"in_channels":4}',
  'shapes/amdm.json': '{"components":{}}',
};
const checksums = Object.fromEntries(Object.entries(files).map(([p, body]) => [p, sha256(body)]));

let server: FauxqsServer;
let s3: S3Client;
let cacheDir: string;

async function put(key: string, body: Uint8Array | string) {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

async function upload(manifest: Record<string, string> = checksums, prefix = 'models/') {
  for (const [path, body] of Object.entries(files)) await put(prefix + path, body);
  await put(`${prefix}checksums.json`, JSON.stringify(manifest));
}

beforeAll(async () => {
  server = await startFauxqs({ port: 0, logger: false });
  server.createBucket(BUCKET);
  s3 = new S3Client({
    endpoint: server.address,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
});

afterAll(async () => {
  s3?.destroy();
  await server?.stop();
});

beforeEach(async () => {
  server.emptyBucket(BUCKET);
  cacheDir = await mkdtemp(join(tmpdir(), 'amdm-model-cache-'));
});

afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

const source = () => s3ModelSource(s3, BUCKET, 'models/');

async function listCache(dir = cacheDir): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('syncModels from S3', () => {
  it('copies every listed file into the cache, byte for byte', async () => {
    await upload();
    const lines: string[] = [];
    const report = await syncModels({ source: source(), cacheDir, log: (l) => lines.push(l) });
    expect(report.downloaded.sort()).toEqual(Object.keys(files).sort());
    expect(report.kept).toEqual([]);
    expect(await listCache()).toEqual(Object.keys(files).sort());
    // Buffer.equals, not toEqual: a deep equality walk over 3 MB takes vitest many seconds.
    expect((await readFile(join(cacheDir, 'shapes/unet/model.onnx'))).equals(unet)).toBe(true);
    expect(lines.at(-1)).toMatch(/3 downloaded, 0 already cached/);
  });

  it('keeps files already cached with the right hash and fetches only the rest', async () => {
    await upload();
    await syncModels({ source: source(), cacheDir });
    await rm(join(cacheDir, 'shapes/amdm.json'));
    const report = await syncModels({ source: source(), cacheDir });
    expect(report.downloaded).toEqual(['shapes/amdm.json']);
    expect(report.kept.sort()).toEqual(['shapes/unet/config.json', 'shapes/unet/model.onnx']);
  });

  it('replaces a cached file whose content no longer matches its hash', async () => {
    await upload();
    await mkdir(join(cacheDir, 'shapes/unet'), { recursive: true });
    await writeFile(join(cacheDir, 'shapes/unet/model.onnx'), 'truncated');
    const report = await syncModels({ source: source(), cacheDir });
    expect(report.downloaded).toContain('shapes/unet/model.onnx');
    expect(sha256(await readFile(join(cacheDir, 'shapes/unet/model.onnx')))).toBe(checksums['shapes/unet/model.onnx']);
  });

  it('refuses a download whose hash differs from the manifest, naming the file, and leaves nothing of it', async () => {
    await upload({ ...checksums, 'shapes/unet/model.onnx': sha256('another model') });
    const sync = syncModels({ source: source(), cacheDir });
    await expect(sync).rejects.toThrow(ModelSyncError);
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(
      /model file shapes\/unet\/model\.onnx from s3:\/\/amdm-models-test\/models\/shapes\/unet\/model\.onnx has sha256 [0-9a-f]{64}, but checksums\.json lists/,
    );
    const cached = await listCache();
    expect(cached).not.toContain('shapes/unet/model.onnx');
    expect(cached.filter((f) => f.includes('.partial-'))).toEqual([]);
  });

  it('names a listed file that is missing from the bucket', async () => {
    await upload({ ...checksums, 'shapes/vae/model.onnx': sha256('vae') });
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(
      /model file shapes\/vae\/model\.onnx is listed in s3:\/\/amdm-models-test\/models\/checksums\.json but .* does not exist/,
    );
  });

  it('refuses to start without a manifest', async () => {
    await put('models/shapes/amdm.json', '{}');
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(/model manifest s3:\/\/amdm-models-test\/models\/checksums\.json does not exist/);
  });

  it.each([
    ['../outside.onnx'],
    ['shapes/../../outside.onnx'],
    ['/etc/passwd'],
    ['shapes//unet.onnx'],
  ])('refuses a manifest path that leaves the cache: %s', async (path) => {
    await put('models/checksums.json', JSON.stringify({ [path]: sha256('x') }));
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(/allowed: a relative path inside the models prefix/);
  });

  it('refuses a manifest whose hashes are not sha256 hex', async () => {
    await put('models/checksums.json', JSON.stringify({ 'shapes/amdm.json': 'md5:abc' }));
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(/shapes\/amdm\.json has sha256 "md5:abc"; expected 64 lowercase hex digits/);
    await put('models/checksums.json', '[1,2]');
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(/must be an object/);
    await put('models/checksums.json', '{not json');
    await expect(syncModels({ source: source(), cacheDir })).rejects.toThrow(/is not JSON/);
  });

  it('downloads several files at once, and no more than asked', async () => {
    // six UNet-sized files: the downloads overlap when the sync runs them in parallel
    const many = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`big/part-${i}.onnx`, unet.map((b) => (b + i) % 256)]));
    for (const [path, body] of Object.entries(many)) await put(`models/${path}`, body);
    await put('models/checksums.json', JSON.stringify(Object.fromEntries(Object.entries(many).map(([p, b]) => [p, sha256(b)]))));
    // the real S3 source, counting downloads that are open (from GET to the body's last byte)
    const real = source();
    let open = 0;
    let most = 0;
    const counting = {
      describe: real.describe,
      async open(key: string) {
        const body = await real.open(key);
        if (body === null || key === 'checksums.json') return body;
        open++;
        most = Math.max(most, open);
        return (async function* () {
          try {
            yield* body;
          } finally {
            open--;
          }
        })();
      },
    };
    const t0 = performance.now();
    const report = await syncModels({ source: counting, cacheDir, concurrency: 3 });
    // measured, never asserted (timings depend on the machine): bench/model-sync.ts has the numbers
    console.info(`model sync of 6 x 3 MiB from fauxqs, 3 at a time: ${Math.round(performance.now() - t0)} ms`);
    expect(report.downloaded.sort()).toEqual(Object.keys(many).sort());
    expect(most).toBe(3);
    for (const [path, body] of Object.entries(many)) expect((await readFile(join(cacheDir, path))).equals(body)).toBe(true);
  });

  it('lets two tasks that share the instance\'s cache sync into it at the same time', async () => {
    await upload();
    const [a, b] = await Promise.all([syncModels({ source: source(), cacheDir }), syncModels({ source: source(), cacheDir })]);
    expect([...a.downloaded, ...a.kept].sort()).toEqual(Object.keys(files).sort());
    expect([...b.downloaded, ...b.kept].sort()).toEqual(Object.keys(files).sort());
    // every file whole, no partial left behind
    expect(await listCache()).toEqual(Object.keys(files).sort());
    expect((await readFile(join(cacheDir, 'shapes/unet/model.onnx'))).equals(unet)).toBe(true);
  });

  it('reads from the prefix it is given', async () => {
    await upload(checksums, 'models/v2/');
    const report = await syncModels({ source: s3ModelSource(s3, BUCKET, 'models/v2'), cacheDir });
    expect(report.downloaded).toHaveLength(3);
  });
});

describe('syncModels from an ObjectStore-like reader', () => {
  it('verifies and copies the same way', async () => {
    const objects = new Map<string, Uint8Array>(
      Object.entries({ ...files, 'checksums.json': JSON.stringify(checksums) }).map(([k, v]) => [
        `models/${k}`,
        typeof v === 'string' ? new TextEncoder().encode(v) : v,
      ]),
    );
    const store = { get: async (key: string) => (objects.has(key) ? { body: objects.get(key)! } : null) };
    const report = await syncModels({ source: storeModelSource(store, 'models/'), cacheDir });
    expect(report.downloaded).toHaveLength(3);
    objects.set('models/shapes/amdm.json', new TextEncoder().encode('tampered'));
    await rm(join(cacheDir, 'shapes/amdm.json'));
    await expect(syncModels({ source: storeModelSource(store, 'models/'), cacheDir })).rejects.toThrow(
      /model file shapes\/amdm\.json from store:models\/shapes\/amdm\.json has sha256/,
    );
  });
});
