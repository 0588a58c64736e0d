/**
 * `amdm keys create --tenant NAME | revoke KEY_ID_OR_KEY | list`: API keys, in the store of
 * a single node or of an AWS stage.
 *
 * Where the keys go, first match wins:
 * - `--store s3://BUCKET[/PREFIX]`: that bucket, with the operator's AWS credentials;
 * - `--data-dir DIR`: a single node's store under DIR;
 * - under `npx sst shell --stage STAGE` (SST_RESOURCE_Store in the environment): the stage's
 *   bucket, `Resource.Store.name`;
 * - DATA_DIR when set;
 * - otherwise the DATA_DIR of the single node running now (`npm start` announces it, see
 *   single-node/data-dir.ts), or ./data when none runs and ./data holds a single node's data.
 *   Nothing else is guessed: several running servers, or no server and no ./data, is an
 *   error naming --data-dir, never a key in a folder no server reads. A key made for a
 *   folder no running server uses says so on stderr.
 *
 * The pepper: AMDM_KEY_PEPPER when set. Otherwise, for S3, the stage's KeyPepper secret
 * (`Resource.KeyPepper.value`, present under `sst shell`); a missing pepper is an error there,
 * never a new one, since a key hashed with another pepper than the edge's would never verify.
 * For a single node, DATA_DIR/secrets/pepper (created on first use).
 *
 * Safe while the API runs: every key object has one writer (this command), the single node's
 * store commits each key in a SQLite transaction and S3 writes are atomic. A revoked key stops
 * working on a single node's next request (revocation moves the key revision its edge reads,
 * shared/api-keys.ts), and on AWS within the edge's key cache time (10 s).
 */
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { Resource } from 'sst/resource';
import { hasLink, linkedString, type Links } from '../../adapters/aws/links.ts';
import { S3Store } from '../../adapters/aws/s3-store.ts';
import { createApiKey, listApiKeys, revokeApiKey, TENANT_RE } from '../../shared/api-keys.ts';
import type { ObjectStore } from '../../shared/ports/store.ts';
import { type DataLayout, type RunningServer, dataLayout, isInitialized, loadSecrets, openEmbeddedStore, runningServers, runtimeDir } from '../../single-node/data-dir.ts';
import { UsageError, type CliCommand } from '../command.ts';

const USAGE =
  'keys create --tenant NAME | keys revoke KEY_ID_OR_KEY | keys list  [--data-dir DIR | --store s3://BUCKET[/PREFIX] [--region R]]   manage API keys (the running single node, or an AWS stage under `sst shell`)';

interface Target {
  store: ObjectStore;
  pepper: string;
  where: string;
  close(): Promise<void>;
}

/** s3://bucket or s3://bucket/prefix/ -> the bucket and the store prefix ('' or ending in '/'). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new UsageError(`--store must be s3://BUCKET or s3://BUCKET/PREFIX (got ${JSON.stringify(url)})`);
  const path = (m[2] ?? '').replace(/\/+$/, '');
  return { bucket: m[1]!, prefix: path ? `${path}/` : '' };
}

function s3Target(bucket: string, prefix: string, pepper: string, region: string | undefined): Target {
  // the operator's credentials and region, from the environment or ~/.aws, as the AWS CLI
  const client = new S3Client(region ? { region } : {});
  const store = new S3Store({ client, bucket, prefix });
  return {
    store,
    pepper,
    where: `s3://${bucket}/${prefix}`,
    async close() {
      await store.close();
      client.destroy();
    },
  };
}

function openTarget(values: { 'data-dir'?: string; store?: string; region?: string }, env: NodeJS.ProcessEnv, links: Links): Target {
  if (values.store !== undefined && values['data-dir'] !== undefined) throw new UsageError('give --store or --data-dir, not both');
  const sstStage = hasLink(links, 'store');
  if (values.store !== undefined || (values['data-dir'] === undefined && sstStage)) {
    const { bucket, prefix } = values.store !== undefined ? parseS3Url(values.store) : { bucket: linkedString(links, 'store'), prefix: '' };
    const pepper = env.AMDM_KEY_PEPPER || (hasLink(links, 'keyPepper') ? linkedString(links, 'keyPepper') : '');
    if (!pepper) {
      throw new UsageError(
        `no pepper for s3://${bucket}: run under \`npx sst shell --stage STAGE -- ...\` (it reads the stage's KeyPepper secret) ` +
          'or set AMDM_KEY_PEPPER to the value of that secret',
      );
    }
    return s3Target(bucket, prefix, pepper, values.region);
  }
  const { layout, note } = singleNodeDir(values['data-dir'] ?? env.DATA_DIR, runningServers(runtimeDir(env)));
  if (note) process.stderr.write(`${note}\n`);
  const secrets = loadSecrets(layout, env);
  // the CLI never hands out blob URLs, but the store always signs with the deployment's key
  const store = openEmbeddedStore(layout, { blobSecret: secrets.blobSecret, publicBaseUrl: env.PUBLIC_BASE_URL ?? 'http://127.0.0.1:8787' });
  return { store, pepper: secrets.pepper, where: layout.dataDir, close: () => store.close() };
}

/** Which single node's folder: the one given, else the running server's, else ./data if it was ever used. */
export function singleNodeDir(given: string | undefined, servers: readonly RunningServer[], fallback = './data'): { layout: DataLayout; note: string | null } {
  const list = () => servers.map((s) => `${s.url} (data in ${s.data_dir})`).join(', ');
  if (given !== undefined) {
    const layout = dataLayout(given);
    const elsewhere = servers.length > 0 && !servers.some((s) => s.data_dir === layout.dataDir);
    return {
      layout,
      note: elsewhere ? `note: no running server uses ${layout.dataDir}; running: ${list()}. Keys made here work only for a server started with DATA_DIR=${layout.dataDir}` : null,
    };
  }
  if (servers.length === 1) {
    const s = servers[0]!;
    return { layout: dataLayout(s.data_dir), note: `using the data folder of the server running at ${s.url}: ${s.data_dir}` };
  }
  if (servers.length > 1) throw new UsageError(`several servers are running: ${list()}; say which with --data-dir DIR`);
  const layout = dataLayout(fallback);
  if (!isInitialized(layout)) {
    throw new UsageError(
      `no server is running and ${layout.dataDir} holds no single node's data; start the server first (npm start), or give --data-dir DIR (the folder its banner shows under "data")`,
    );
  }
  return { layout, note: null };
}

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { tenant: { type: 'string' }, 'data-dir': { type: 'string' }, store: { type: 'string' }, region: { type: 'string' }, json: { type: 'boolean' } },
    });
    const [sub, ...rest] = positionals;
    if (!sub || !['create', 'revoke', 'list'].includes(sub)) throw new UsageError(`give a subcommand: create, revoke or list (usage: amdm ${USAGE})`);
    if (sub === 'create') {
      if (rest.length > 0) throw new UsageError(`keys create takes no positional arguments (got ${rest.join(' ')})`);
      if (!values.tenant) throw new UsageError('keys create needs --tenant NAME');
      if (!TENANT_RE.test(values.tenant)) throw new UsageError(`--tenant must be lowercase letters, digits, '-' or '_' (at most 63, starting with a letter or digit); got "${values.tenant}"`);
    }
    if (sub === 'revoke' && rest.length !== 1) throw new UsageError('keys revoke takes one KEY_ID or the full key');
    const target = openTarget(values, process.env, Resource);
    const { store, pepper } = target;
    try {
      if (sub === 'create') {
        const created = await createApiKey(store, { tenant: values.tenant!, pepper });
        // the key alone on stdout, so `KEY=$(amdm keys create --tenant x)` works
        process.stdout.write(`${created.key}\n`);
        process.stderr.write(`created key ${created.keyId} for tenant "${values.tenant}" in ${target.where}; it is shown only now\n`);
        return 0;
      }
      if (sub === 'revoke') {
        const r = await revokeApiKey(store, { keyIdOrKey: rest[0]!, pepper });
        if (!r) {
          process.stderr.write(`no key ${JSON.stringify(rest[0]!.slice(0, 20))} in ${target.where}; see: amdm keys list\n`);
          return 1;
        }
        process.stderr.write(r.alreadyRevoked ? `key ${r.keyId} was already revoked\n` : `revoked key ${r.keyId} of tenant "${r.tenant}"\n`);
        return 0;
      }
      const keys = await listApiKeys(store);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(keys)}\n`);
      } else {
        const rows = [['KEY_ID', 'TENANT', 'CREATED', 'STATUS'], ...keys.map((k) => [k.keyId, k.tenant, k.created_at, k.revoked_at ? `revoked ${k.revoked_at}` : 'active'])];
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
        for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
      }
      return 0;
    } finally {
      await target.close();
    }
  },
};
