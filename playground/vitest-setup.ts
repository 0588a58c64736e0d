/**
 * vitest globalSetup: the edge serves the playground and /docs from a generated module,
 * so it is built once before any test file runs (tests that start the edge in process, or
 * `npm start` as a child, find it in place).
 */
import { writeUiAssets } from './build.ts';

export default async function setup(): Promise<void> {
  await writeUiAssets();
}
