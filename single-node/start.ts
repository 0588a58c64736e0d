/**
 * `npm start`: the whole platform on one machine, in one process tree: the edge on
 * 127.0.0.1:PORT, the runner (its sampler in worker threads) and the webhook dispatcher,
 * over the embedded adapters under DATA_DIR and the built-in models.
 *
 * On first start it creates the secrets and a local API key (tenant "local"), and prints
 * the key, the base URL and a ready-to-paste curl. Jobs survive anything: a job running
 * when the process is killed -9 is picked up again after a restart (its lease expires,
 * RUNNER_VISIBILITY_SECONDS, 30 s by default) and completes exactly once.
 *
 * Each phase of the start (secrets, adapters, models, listen, local key) logs a line with its
 * duration. A start that has not finished within AMDM_START_TIMEOUT_SECONDS (120; 0: no
 * limit) logs the phase it is stuck in and exits 1 (single-node/start-watchdog.ts), rather than
 * leaving a process that never answers.
 *
 * While it runs it announces its URL and DATA_DIR in the per-user runtime folder
 * (single-node/data-dir.ts, `runtimeDir`), where `amdm keys` finds them.
 *
 * Environment: PORT (8787), DATA_DIR (./data), AMDM_ALLOW_PRIVATE_WEBHOOKS=1 to let
 * webhooks reach localhost, AMDM_START_TIMEOUT_SECONDS, AMDM_MAX_ACTIVE_JOBS (queued + running
 * jobs per tenant, 50), AMDM_TRUSTED_PROXY (reverse proxies whose X-Forwarded-For counts, see
 * edge/local.ts), AMDM_RUNTIME_DIR (where running servers announce themselves), and
 * everything gpu-runner/main.ts reads.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { localEdgeSettings, startLocalEdge } from '../edge/local.ts';
import { jsonLogger } from '../shared/logger.ts';
import { installSignalHandlers, runnerConfigFromEnv, selectAdapters, startRunner } from '../gpu-runner/main.ts';
import { createApiKey, verifyApiKey } from '../shared/api-keys.ts';
import type { ObjectStore } from '../shared/ports/store.ts';
import { StorageHealth } from '../shared/storage-health.ts';
import { announceServer, dataLayout, loadSecrets, runtimeDir } from './data-dir.ts';
import { startWatchdog } from './start-watchdog.ts';

/** Relative to the working directory when below it, absolute otherwise. */
function shortPath(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : r;
}

async function localKey(store: ObjectStore, dataDir: string, pepper: string): Promise<string> {
  const layout = dataLayout(dataDir);
  if (existsSync(layout.localKeyFile)) {
    const key = readFileSync(layout.localKeyFile, 'utf8').trim();
    if (await verifyApiKey(store, pepper, key)) return key;
    // revoked (or from a wiped store): make a new one below
  }
  const created = await createApiKey(store, { tenant: 'local', pepper });
  writeFileSync(layout.localKeyFile, created.key, { mode: 0o600 });
  return created.key;
}

/** AMDM_START_TIMEOUT_SECONDS: how long the whole start may take (default 120; 0: no limit). */
function startTimeoutSeconds(env: NodeJS.ProcessEnv): number {
  const raw = env.AMDM_START_TIMEOUT_SECONDS;
  if (raw === undefined || raw === '') return 120;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 86_400) throw new Error(`AMDM_START_TIMEOUT_SECONDS must be an integer from 0 to 86400 (got ${JSON.stringify(raw)})`);
  return n;
}

async function main(): Promise<void> {
  const logger = jsonLogger('start');
  const env = process.env;
  const start = startWatchdog({ timeoutSeconds: startTimeoutSeconds(env), logger });
  const config = runnerConfigFromEnv(env);
  const port = Number(env.PORT ?? 8787);
  const layout = dataLayout(config.dataDir);
  const secrets = await start.run('secrets', () => loadSecrets(layout, env), () => ({ dir: layout.secretsDir }));
  if (!config.engine && !config.modelsDirs.some((d) => existsSync(d) && readdirSync(d).length > 0)) {
    throw new Error(`no model packages in ${config.modelsDirs.join(', ')}; the built-in models live in models/ (or set AMDM_MODELS_DIR)`);
  }
  const edgeSettings = localEdgeSettings(env);
  // one record of a full disk for the adapters, the runner and the edge's /healthz: logged once
  const storageHealth = new StorageHealth({ logger: jsonLogger('storage') });
  const adapters = await start.run('adapters', () => selectAdapters(config, env, { storage: storageHealth }), () => ({ data_dir: layout.dataDir }));

  logger.info('loading models (first start compiles the ONNX sessions)', { data_dir: layout.dataDir, models: config.modelsDirs });
  const runner = await start.run('models', () => startRunner(config, adapters, { logger: jsonLogger('runner'), storageHealth }));
  let edge: Awaited<ReturnType<typeof startLocalEdge>>;
  try {
    edge = await start.run(
      'listen',
      () =>
        startLocalEdge({
          dataDir: config.dataDir,
          port,
          publicBaseUrl: config.publicBaseUrl,
          catalog: () => runner.engine.catalog(),
          modelsDirs: config.modelsDirs,
          adapters: { store: adapters.store, jobs: adapters.jobs, ...(adapters.admission ? { admission: adapters.admission } : {}) },
          allowPrivateWebhooks: config.allowPrivateWebhooks,
          ...edgeSettings,
          logger: jsonLogger('edge'),
          env,
          storageHealth,
        }),
      (e) => ({ url: e.url }),
    );
  } catch (err) {
    await runner.abortNow().catch(() => {});
    throw err;
  }
  const key = await start.run('local key', () => localKey(adapters.store, config.dataDir, secrets.pepper));
  start.done({ url: edge.url });
  // so that `amdm keys` run from any folder puts keys where this server reads them
  let withdraw = () => {};
  try {
    withdraw = announceServer(runtimeDir(env), { url: edge.url, data_dir: layout.dataDir });
  } catch (err) {
    logger.warn('could not announce the server for `amdm keys`; give it --data-dir', { dir: runtimeDir(env), err: String(err) });
  }
  process.on('exit', () => withdraw());

  const examplesDir = resolve(new URL('../examples', import.meta.url).pathname);
  const examples = existsSync(examplesDir) ? readdirSync(examplesDir).filter((f) => f.endsWith('.json')).sort() : [];
  const example = shortPath(resolve(examplesDir, examples.includes('single.json') ? 'single.json' : (examples[0] ?? 'single.json')));
  const lines = [
    '',
    'AMDM API is running (single node)',
    `  playground    ${edge.url}/   (fills in the local key)`,
    `  base URL      ${edge.url}`,
    `  API key       ${key}`,
    `  data          ${layout.dataDir}`,
    `  API docs      ${edge.url}/docs   (OpenAPI: ${edge.url}/openapi.json)`,
    `  webhooks      signed with the secret in ${shortPath(join(layout.secretsDir, 'webhook-secret'))}${config.allowPrivateWebhooks ? ' (private addresses allowed)' : ' (set AMDM_ALLOW_PRIVATE_WEBHOOKS=1 to reach localhost)'}`,
    '',
    'Submit an example and wait for the result:',
    `  curl -sS ${edge.url}/v1/jobs -H "Authorization: Bearer ${key}" -H "Content-Type: application/json" -H "Prefer: wait=60" --data @${example}`,
    ...(examples.length > 1 ? [`  (other examples: ${examples.filter((e) => e !== 'single.json').map((e) => shortPath(resolve(examplesDir, e))).join(', ')})`] : []),
    '',
    `More keys: npx amdm keys create --tenant NAME${resolve(layout.dataDir) === resolve('data') ? '' : ` --data-dir ${shortPath(layout.dataDir)}`}    Stop: Ctrl-C (twice to stop at once)`,
    '',
  ];
  process.stdout.write(lines.join('\n'));

  installSignalHandlers(
    {
      // drain: stop taking requests first, then let the runner finish or release its job
      close: async () => {
        await edge.close();
        await runner.close();
      },
      abortNow: async () => {
        await Promise.allSettled([edge.close(), runner.abortNow()]);
      },
    },
    logger,
  );
}

main().catch((err) => {
  console.error(`npm start: ${(err as Error).message}`);
  if (process.env.AMDM_DEBUG) console.error(err);
  process.exit(1);
});
