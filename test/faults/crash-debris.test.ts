/**
 * Crash debris: a process killed with -9 in the middle of writing a blob leaves the temp file
 * of that write in DATA_DIR/store. Readers never see it, but nothing removed it, so every
 * crash kept its bytes forever. The server and the runners now sweep temp files older than
 * STALE_TEMP_MS (10 min, longer than any write takes) when they open the store.
 */
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../../adapters/embedded/fs-store.ts';
import { dataLayout, loadSecrets, openEmbedded } from '../../single-node/data-dir.ts';
import { crashBody } from '../conformance/fixtures/fs-store-child.ts';
import { runChild } from '../conformance/run-child.ts';

const CHILD = fileURLToPath(new URL('../conformance/fixtures/fs-store-child.ts', import.meta.url));
const signing = { secret: 'fs-store-test-secret-at-least-32-bytes', baseUrl: 'http://127.0.0.1:9/' };
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const tempFiles = (root: string): string[] =>
  readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.startsWith('@tmp-'))
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();

describe('crash debris', () => {
  it('temp files of writes cut short by kill -9 are swept when the single node starts again; fresh ones are kept', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'amdm-debris-'));
    dirs.push(dataDir);
    const layout = dataLayout(dataDir);
    // a writer of 16 puts at a time, killed mid-stream: some writes are always under way.
    // Should a kill land between writes, the next one will not.
    let acked: number[] = [];
    let debris: string[] = [];
    for (let attempt = 0; attempt < 5 && debris.length === 0; attempt++) {
      const { lines, signal } = await runChild(CHILD, layout.storeDir, [], 60 * (attempt + 1));
      expect(signal).toBe('SIGKILL');
      acked = lines.filter((l) => /^\d+$/.test(l)).map(Number);
      debris = tempFiles(layout.storeDir);
    }
    expect(debris.length, 'temp files left by the killed writer').toBeGreaterThan(0);
    // as the sweep will find them 11 minutes later; and one write under way right now
    const past = new Date(Date.now() - 11 * 60_000);
    for (const f of debris) utimesSync(join(layout.storeDir, f), past, past);
    const live = join(layout.storeDir, 'crash@', '@tmp-livewriter-000000000000-0');
    writeFileSync(live, 'being written');

    const secrets = loadSecrets(layout, {});
    const adapters = openEmbedded(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: 'http://127.0.0.1' });
    await adapters.startup;
    await adapters.close();
    expect(tempFiles(layout.storeDir)).toEqual([relative(layout.storeDir, live)]);
    // every acknowledged write is still whole
    const store = new FsStore({ root: layout.storeDir, signing });
    for (const i of acked) expect(new TextDecoder().decode((await store.get(`crash/k${i}`))!.body)).toBe(crashBody(i));
  });
});
