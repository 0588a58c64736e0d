import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'data/**', '.sst/**', 'tools/shapes/**'],
    // onnxruntime-node and better-sqlite3 are native addons: forks isolate them per file
    pool: 'forks',
    // the edge serves the playground and /docs from a generated module: build it first
    globalSetup: ['playground/vitest-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
