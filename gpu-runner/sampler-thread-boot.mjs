// Entry of a sampler worker thread. A worker starts as plain Node, which cannot load
// TypeScript (under vitest there is no tsx loader to inherit either), so register tsx
// first, then load the TypeScript module that hosts the engine.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
