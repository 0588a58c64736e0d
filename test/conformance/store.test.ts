/**
 * The ObjectStore conformance suite against every adapter: memory, filesystem, SQLite and the
 * single node's split store (their signed URLs served by a blob route using the shared
 * verifier), and S3 on fauxqs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { S3Store } from '../../adapters/aws/s3-store.ts';
import { FsStore } from '../../adapters/embedded/fs-store.ts';
import { SplitStore } from '../../adapters/embedded/split-store.ts';
import { SqliteStore } from '../../adapters/embedded/sqlite-store.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import { startBlobServer, type BlobServer } from './blob-server.ts';
import { startFauxqs, type Fauxqs } from './fauxqs-server.ts';
import { describeStoreConformance } from './store.case.ts';

const SECRET = 'conformance-secret-of-at-least-32-bytes!';

let blobs: BlobServer;
let dataRoot: string;
let fauxqs: Fauxqs;
let roots = 0;
beforeAll(async () => {
  [blobs, dataRoot, fauxqs] = await Promise.all([
    startBlobServer(),
    mkdtemp(join(tmpdir(), 'amdm-store-conformance-')),
    startFauxqs(),
  ]);
});
afterAll(async () => {
  await Promise.all([blobs?.stop(), fauxqs?.stop(), dataRoot && rm(dataRoot, { recursive: true, force: true })]);
});

describeStoreConformance('memory', {
  capabilities: { listsInByteOrder: true, refusesBadSignedUrls: true },
  async create() {
    const mount = blobs.mount(SECRET);
    const store = new MemoryStore({ signing: { secret: SECRET, baseUrl: mount.baseUrl } });
    mount.serve(store);
    return store;
  },
});

describeStoreConformance('filesystem', {
  capabilities: { listsInByteOrder: true, refusesBadSignedUrls: true },
  async create() {
    const mount = blobs.mount(SECRET);
    const store = new FsStore({ root: join(dataRoot, `store-${++roots}`), signing: { secret: SECRET, baseUrl: mount.baseUrl } });
    mount.serve(store);
    return store;
  },
  async onSmallFs(dir) {
    return new FsStore({ root: join(dir, 'store'), signing: { secret: SECRET, baseUrl: 'http://127.0.0.1:9' } });
  },
});

describeStoreConformance('sqlite (writer inline)', {
  capabilities: { listsInByteOrder: true, refusesBadSignedUrls: true },
  async create() {
    const mount = blobs.mount(SECRET);
    const store = new SqliteStore({ dir: join(dataRoot, `store-${++roots}`), signing: { secret: SECRET, baseUrl: mount.baseUrl }, writer: 'inline' });
    mount.serve(store);
    return store;
  },
  async onSmallFs(dir) {
    return new SqliteStore({ dir, signing: { secret: SECRET, baseUrl: 'http://127.0.0.1:9' }, writer: 'inline' });
  },
});

describeStoreConformance('sqlite (writer thread)', {
  capabilities: { listsInByteOrder: true, refusesBadSignedUrls: true },
  async create() {
    const mount = blobs.mount(SECRET);
    const store = new SqliteStore({ dir: join(dataRoot, `store-${++roots}`), signing: { secret: SECRET, baseUrl: mount.baseUrl }, writer: 'thread' });
    mount.serve(store);
    return store;
  },
  async onSmallFs(dir) {
    return new SqliteStore({ dir, signing: { secret: SECRET, baseUrl: 'http://127.0.0.1:9' }, writer: 'thread' });
  },
});

describeStoreConformance('split (sqlite records + filesystem blobs)', {
  capabilities: { listsInByteOrder: true, refusesBadSignedUrls: true },
  async create() {
    const mount = blobs.mount(SECRET);
    const signing = { secret: SECRET, baseUrl: mount.baseUrl };
    const root = join(dataRoot, `store-${++roots}`);
    const store = new SplitStore({
      records: new SqliteStore({ dir: root, signing }),
      blobs: new FsStore({ root: join(root, 'blobs'), signing }),
    });
    mount.serve(store);
    return store;
  },
  async onSmallFs(dir) {
    const signing = { secret: SECRET, baseUrl: 'http://127.0.0.1:9' };
    return new SplitStore({ records: new SqliteStore({ dir, signing }), blobs: new FsStore({ root: join(dir, 'blobs'), signing }) });
  },
});

describeStoreConformance('s3 (fauxqs)', {
  // fauxqs sorts listings with localeCompare and does not verify SigV4 presigned URLs
  capabilities: { listsInByteOrder: false, refusesBadSignedUrls: false },
  async create() {
    return new S3Store({ client: fauxqs.s3, bucket: await fauxqs.createBucket() });
  },
});
