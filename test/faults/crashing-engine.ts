/**
 * A poison job for the fault tests: generating kills the whole runner process, as a native
 * crash (or the OOM killer) would. Every delivery of the job takes its runner down.
 */
import type { Engine, EngineResult } from '../../gpu-runner/engine/types.ts';
import { createEngine as slow } from './slow-engine.ts';

export function createEngine(): Engine {
  const inner = slow();
  return {
    catalog: () => inner.catalog(),
    async generate(): Promise<EngineResult> {
      process.kill(process.pid, 'SIGKILL');
      return new Promise(() => {});
    },
    dispose: () => inner.dispose(),
  };
}
