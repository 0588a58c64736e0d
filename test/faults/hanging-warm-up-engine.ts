/**
 * A model load that never finishes, as one stuck in native code or waiting on a lock would:
 * the start-up watchdog test's engine. Everything else is the slow engine.
 */
import type { Engine } from '../../gpu-runner/engine/types.ts';
import { createEngine as slow } from './slow-engine.ts';

export function createEngine(): Engine & { warmUp(): Promise<void> } {
  const inner = slow();
  return {
    catalog: () => inner.catalog(),
    generate: (spec, opts) => inner.generate(spec, opts),
    warmUp: () => new Promise<void>(() => {}),
    dispose: () => inner.dispose(),
  };
}
