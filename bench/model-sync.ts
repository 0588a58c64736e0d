/**
 * `npx tsx bench/model-sync.ts`: how long a runner's model sync takes (gpu-runner/aws/
 * model-sync.ts) against S3 as fauxqs serves it on loopback, cold (every file downloaded and
 * hashed) and warm (every file already in the cache, only hashed), with one download at a time
 * and with the runner's default concurrency. Never a timed test.
 *
 * What it shows and what it cannot: loopback has no per-connection bandwidth limit, so the
 * cold numbers here are bounded by this machine's CPU (SHA-256, fauxqs, the SDK) and disk, not
 * by a network; on AWS one S3 connection carries far less than an instance's network, which is
 * what parallel downloads are for. The warm number is the part that stays on AWS: hashing the
 * cache before each task starts.
 *
 *   npx tsx bench/model-sync.ts -- [--files 16] [--mib 10] [--repeats 3]   (fauxqs takes at most 11 MiB per PUT)
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startFauxqs } from 'fauxqs';
import { DEFAULT_SYNC_CONCURRENCY, s3ModelSource, syncModels } from '../gpu-runner/aws/model-sync.ts';

const { values } = parseArgs({
  options: { files: { type: 'string', default: '16' }, mib: { type: 'string', default: '10' }, repeats: { type: 'string', default: '3' } },
  allowPositionals: true,
});
const fileCount = Number(values.files);
const mib = Number(values.mib);
const repeats = Number(values.repeats);
const BUCKET = 'amdm-bench-models';

const server = await startFauxqs({ port: 0, logger: false });
server.createBucket(BUCKET);
const s3 = new S3Client({ endpoint: server.address, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } });

const manifest: Record<string, string> = {};
for (let i = 0; i < fileCount; i++) {
  // incompressible-looking bytes, one file in memory at a time
  const body = new Uint8Array(mib * 1024 * 1024).map((_, j) => (j * 2654435761 + i * 97) >>> 24);
  const path = `bench/unet-${i}/model.onnx`;
  manifest[path] = createHash('sha256').update(body).digest('hex');
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `models/${path}`, Body: body }));
}
await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'models/checksums.json', Body: JSON.stringify(manifest) }));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const totalMiB = fileCount * mib;

async function measure(concurrency: number): Promise<{ cold: number; warm: number }> {
  const cold: number[] = [];
  const warm: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const cacheDir = await mkdtemp(join(tmpdir(), 'amdm-bench-sync-'));
    try {
      let t0 = performance.now();
      await syncModels({ source: s3ModelSource(s3, BUCKET, 'models/'), cacheDir, concurrency });
      cold.push(performance.now() - t0);
      t0 = performance.now();
      const again = await syncModels({ source: s3ModelSource(s3, BUCKET, 'models/'), cacheDir, concurrency });
      warm.push(performance.now() - t0);
      if (again.downloaded.length !== 0) throw new Error('warm sync downloaded files');
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  }
  return { cold: median(cold), warm: median(warm) };
}

console.log(`model sync against fauxqs on loopback: ${fileCount} files x ${mib} MiB = ${totalMiB} MiB, median of ${repeats}`);
console.log('concurrency | cold sync ms | cold MiB/s | warm (cached) ms | warm MiB/s');
const rows: Record<string, unknown>[] = [];
for (const concurrency of [1, DEFAULT_SYNC_CONCURRENCY]) {
  const { cold, warm } = await measure(concurrency);
  const row = { concurrency, cold_ms: Math.round(cold), cold_mib_s: Math.round(totalMiB / (cold / 1000)), warm_ms: Math.round(warm), warm_mib_s: Math.round(totalMiB / (warm / 1000)) };
  rows.push(row);
  console.log(`${concurrency} | ${row.cold_ms} | ${row.cold_mib_s} | ${row.warm_ms} | ${row.warm_mib_s}`);
}
console.log(JSON.stringify({ files: fileCount, mib, rows }));
s3.destroy();
await server.stop();
