/**
 * A real small filesystem for full-disk tests: a tmpfs of a few MiB that the test mounts
 * itself (root, or CAP_SYS_ADMIN), fills to the last byte and frees again. Where mounting is
 * not allowed, SMALL_FS.available is false and the tests that need one skip, printing
 * SMALL_FS.reason; the port-level tests with an injected full store still run everywhere.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallFs {
  /** the mount point */
  dir: string;
  /** Writes a filler file until the filesystem has no byte left. */
  fill(): void;
  /** Removes the filler. */
  free(): void;
  unmount(): void;
}

function mount(dir: string, sizeBytes: number): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
}

function unmount(dir: string): void {
  // lazy: a handle a failed test left open must not keep the mount (or the test run) alive
  execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
}

/** Probed once per test file: a mount of a tiny tmpfs, then its unmount. */
export const SMALL_FS: { available: boolean; reason: string } = (() => {
  const dir = mkdtempSync(join(tmpdir(), 'amdm-small-fs-probe-'));
  try {
    mount(dir, 64 * 1024);
    unmount(dir);
    rmdirSync(dir);
    return { available: true, reason: '' };
  } catch (err) {
    const why = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n')[0];
    try {
      rmdirSync(dir);
    } catch {
      // still mounted (the unmount failed): leave the empty mount point
    }
    return { available: false, reason: `cannot mount a tmpfs here (${why}); run the tests as root to cover a real full disk` };
  }
})();

export function mountSmallFs(sizeBytes = 4 * 1024 * 1024): SmallFs {
  const dir = mkdtempSync(join(tmpdir(), 'amdm-small-fs-'));
  mount(dir, sizeBytes);
  const filler = join(dir, 'filler');
  let mounted = true;
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'a');
      try {
        // big chunks first, then down to single bytes: every block is taken, partial ones too
        for (let chunk = 1 << 20; chunk >= 1; chunk >>= 2) {
          const zeros = Buffer.alloc(chunk);
          for (;;) {
            try {
              writeSync(fd, zeros);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
              break;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      unmount(dir);
      rmdirSync(dir);
    },
  };
}

/** A directory inside a small filesystem, created. */
export function subdir(fs: SmallFs, name: string): string {
  const path = join(fs.dir, name);
  mkdirSync(path, { recursive: true });
  return path;
}
