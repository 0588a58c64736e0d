/**
 * `amdm keys create --tenant NAME | revoke KEY_ID_OR_KEY | list`: API keys of a
 * single-node deployment, in the store under DATA_DIR (default ./data), with the pepper from
 * AMDM_KEY_PEPPER or DATA_DIR/secrets/pepper (created on first use).
 *
 * Safe while `npm start` runs: the filesystem store writes atomically and every key object
 * has one writer (this command). A revoked key stops working within the edge's key cache
 * time (10 s).
 */
import { parseArgs } from 'node:util';
import { createApiKey, listApiKeys, revokeApiKey, TENANT_RE } from '../../shared/api-keys.ts';
import { FsStore } from '../../adapters/embedded/fs-store.ts';
import { dataLayout, loadSecrets } from '../../tools/single-node.ts';
import { UsageError, type CliCommand } from '../command.ts';

const USAGE = 'keys create --tenant NAME | keys revoke KEY_ID_OR_KEY | keys list  [--data-dir DIR]   manage API keys (single node)';

export const command: CliCommand = {
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { tenant: { type: 'string' }, 'data-dir': { type: 'string' }, json: { type: 'boolean' } },
    });
    const [sub, ...rest] = positionals;
    if (!sub || !['create', 'revoke', 'list'].includes(sub)) throw new UsageError(`give a subcommand: create, revoke or list (usage: amdm ${USAGE})`);
    const layout = dataLayout(values['data-dir'] ?? process.env.DATA_DIR ?? './data');
    const secrets = loadSecrets(layout);
    // the CLI never hands out blob URLs, but the store always signs with the deployment's key
    const store = new FsStore({ root: layout.storeDir, signing: { secret: secrets.blobSecret, baseUrl: process.env.PUBLIC_BASE_URL ?? 'http://127.0.0.1:8787' } });
    try {
      if (sub === 'create') {
        if (rest.length > 0) throw new UsageError(`keys create takes no positional arguments (got ${rest.join(' ')})`);
        const tenant = values.tenant;
        if (!tenant) throw new UsageError('keys create needs --tenant NAME');
        if (!TENANT_RE.test(tenant)) throw new UsageError(`--tenant must be lowercase letters, digits, '-' or '_' (at most 63, starting with a letter or digit); got "${tenant}"`);
        const created = await createApiKey(store, { tenant, pepper: secrets.pepper });
        // the key alone on stdout, so `KEY=$(amdm keys create --tenant x)` works
        process.stdout.write(`${created.key}\n`);
        process.stderr.write(`created key ${created.keyId} for tenant "${tenant}"; it is shown only now\n`);
        return 0;
      }
      if (sub === 'revoke') {
        if (rest.length !== 1) throw new UsageError('keys revoke takes one KEY_ID or the full key');
        const r = await revokeApiKey(store, { keyIdOrKey: rest[0]!, pepper: secrets.pepper });
        if (!r) {
          process.stderr.write(`no key ${JSON.stringify(rest[0]!.slice(0, 20))}; see: amdm keys list\n`);
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
      await store.close();
    }
  },
};
