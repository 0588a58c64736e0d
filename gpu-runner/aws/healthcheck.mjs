// Container health check for the GPU runner (Dockerfile HEALTHCHECK): healthy when the
// runner's liveness file (gpu-runner/aws/liveness.ts) was rewritten recently enough.
// Plain JavaScript with no imports beyond node:, so each check costs one short node start,
// not a TypeScript loader.
//   AMDM_LIVENESS_FILE               default /tmp/amdm-runner.alive
//   AMDM_LIVENESS_MAX_AGE_SECONDS    default 60 (six missed beats at the 10 s default)
import { statSync } from 'node:fs';

const path = process.env.AMDM_LIVENESS_FILE || '/tmp/amdm-runner.alive';
const maxAge = Number(process.env.AMDM_LIVENESS_MAX_AGE_SECONDS || 60);
if (!Number.isFinite(maxAge) || maxAge <= 0) {
  console.error(`unhealthy: AMDM_LIVENESS_MAX_AGE_SECONDS=${process.env.AMDM_LIVENESS_MAX_AGE_SECONDS} is not a positive number`);
  process.exit(1);
}

let ageSeconds;
try {
  ageSeconds = (Date.now() - statSync(path).mtimeMs) / 1000;
} catch {
  console.error(`unhealthy: no liveness file at ${path}`);
  process.exit(1);
}
if (ageSeconds > maxAge) {
  console.error(`unhealthy: ${path} is ${Math.round(ageSeconds)} s old (limit ${maxAge} s)`);
  process.exit(1);
}
console.log(`healthy: ${path} is ${Math.round(ageSeconds)} s old`);
