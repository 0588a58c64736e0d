/**
 * The runner image's application layer, without Docker (tools/runner-app-check.ts): the
 * Dockerfile's production install and prune, its COPY instructions, and its command, run on
 * the CPU against fauxqs through one job. A package the runner imports but the image does not
 * install, a file it imports but the image does not copy, or a prune that removes what
 * linux-x64 needs fails here, in CI, though the image itself is never built.
 */
import { describe, expect, it } from 'vitest';
import { checkRunnerApp } from '../tools/runner-app-check.ts';

describe('the runner image\'s application layer', () => {
  it('installs, prunes, copies and starts as the Dockerfile says, and takes a job to its image', async () => {
    const report = await checkRunnerApp();
    expect(report.job).toMatchObject({ status: 'succeeded', outputs: 1 });
    expect(report.exitCode).toBe(0);
    // what the prune took: other platforms' onnxruntime and the SST CLI binary, never linux-x64
    expect(report.pruned).toContain('onnxruntime-node/bin/napi-v6/darwin');
    expect(report.pruned).toContain('onnxruntime-node/bin/napi-v6/win32');
    expect(report.pruned.some((p) => /^sst-linux-/.test(p))).toBe(true);
    expect(report.pruned.filter((p) => p.includes('linux/x64'))).toEqual([]);
    expect(report.nodeModulesBytes.pruned).toBeLessThan(report.nodeModulesBytes.installed);
    expect(report.modelSyncMs).not.toBeNull();
  }, 240_000);
});
