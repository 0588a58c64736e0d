// Prunes a production node_modules to what the GPU runner runs on: linux-x64, with CUDA.
//
//   node gpu-runner/prune-node-modules.mjs NODE_MODULES_DIR
//
// Run by the runner image's install stage (gpu-runner/Dockerfile) right after
// `npm ci --omit=dev`, and by tools/runner-app-check.ts on the same install, so what the check
// runs is what the image ships. Plain JavaScript: it runs before anything is built.
//
// What goes, and why it is safe:
// - onnxruntime-node's binaries for other platforms (bin/napi-v*/darwin, win32, linux/arm64):
//   the package ships all of them (~245 MB) and loads only bin/napi-v*/<platform>/<arch>.
//   linux/x64 stays, with the CUDA execution provider libraries its install script adds there.
// - the SST CLI binary packages (sst-linux-x64 and the other sst-<os>-<arch>, ~72 MB): npm
//   installs them as optional dependencies of `sst`, but the runner only imports
//   `sst/resource`, which reads the SST_RESOURCE_* variables and never runs the CLI.
//
// Prints one JSON line: what was removed and how many bytes.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2];
if (!root || !existsSync(root)) {
  console.error(`usage: node gpu-runner/prune-node-modules.mjs NODE_MODULES_DIR (got ${JSON.stringify(root)})`);
  process.exit(2);
}

/** Bytes under a path, without following symlinks. */
function size(path) {
  const info = statSync(path, { throwIfNoEntry: false });
  if (!info) return 0;
  if (!info.isDirectory()) return info.size;
  return readdirSync(path).reduce((sum, name) => sum + size(join(path, name)), 0);
}

const doomed = [];
const ort = join(root, 'onnxruntime-node', 'bin');
if (existsSync(ort)) {
  for (const napi of readdirSync(ort)) {
    for (const platform of readdirSync(join(ort, napi))) {
      if (platform !== 'linux') doomed.push(join(ort, napi, platform));
      else for (const arch of readdirSync(join(ort, napi, platform))) if (arch !== 'x64') doomed.push(join(ort, napi, platform, arch));
    }
  }
  if (!readdirSync(ort).some((napi) => existsSync(join(ort, napi, 'linux', 'x64')))) {
    console.error(`prune-node-modules: ${ort} has no linux/x64 binary; refusing to prune an install that cannot run here`);
    process.exit(1);
  }
}
for (const name of readdirSync(root)) {
  if (/^sst-(linux|darwin|win32|freebsd)-/.test(name)) doomed.push(join(root, name));
}

let bytes = 0;
for (const path of doomed) {
  bytes += size(path);
  rmSync(path, { recursive: true, force: true });
}
console.log(JSON.stringify({ pruned: doomed.map((p) => p.slice(root.length + 1)), bytes }));
