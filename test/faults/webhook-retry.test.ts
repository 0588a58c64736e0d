/**
 * A webhook receiver that fails twice: the job's webhook arrives on the third try, signed
 * so that the Standard Webhooks verifier accepts it, and every attempt shows on the job.
 * The whole local stack runs (edge over HTTP, runner, dispatcher); the retry schedule is
 * shortened to 1 s so the test takes seconds.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobRecord, WebhookPayload } from '../../shared/contract/index.ts';
import { dataLayout, loadSecrets } from '../../single-node/data-dir.ts';
import { startStack, until, type Stack } from '../e2e/harness.ts';
import { SLOW_ENGINE } from './runner-process.ts';

let stack: Stack | null = null;
const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  await stack?.close();
  stack = null;
  for (const s of servers.splice(0)) await new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); });
});

describe('webhook faults', () => {
  it('a receiver answering 500 twice gets the webhook on the third try, with a valid signature', async () => {
    const hits: { headers: IncomingHttpHeaders; body: string; answered: number }[] = [];
    const answers = [500, 500, 200];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const answered = answers[Math.min(hits.length, answers.length - 1)]!;
        hits.push({ headers: req.headers, body, answered });
        res.writeHead(answered).end();
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/amdm`;

    stack = await startStack({ engine: { module: SLOW_ENGINE, options: { stepMs: 5 } }, config: { webhookRetrySchedule: [1, 1, 1] } });
    const res = await stack.api('/v1/jobs', { body: { models: [{ id: 'shapes-base', role: 'base', prompt: 'hook' }], sampler: { steps: 4 }, webhook: { url: hookUrl } } });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as JobRecord;

    await until(async () => hits.length >= 3, 'three webhook attempts', 30_000);
    expect(hits.map((h) => h.answered)).toEqual([500, 500, 200]);
    const secret = loadSecrets(dataLayout(stack.dataDir)).webhookSecret;
    const payload = new Webhook(secret).verify(hits[2]!.body, hits[2]!.headers as Record<string, string>) as WebhookPayload;
    expect(payload.type).toBe('job.succeeded');
    expect(payload.data).toMatchObject({ id, status: 'succeeded' });
    // one event, one id: receivers can drop duplicates
    expect(new Set(hits.map((h) => h.headers['webhook-id'])).size).toBe(1);

    const record = await until(async () => {
      const r = (await (await stack!.api(`/v1/jobs/${id}`)).json()) as JobRecord;
      return r.webhook!.deliveries.length === 3 ? r : null;
    }, 'the deliveries on the job', 10_000);
    expect(record.webhook!.deliveries.map((d) => [d.attempt, d.status, d.ok])).toEqual([[1, 500, false], [2, 500, false], [3, 200, true]]);
    expect(record.webhook!.deliveries[2]!.next_attempt_at).toBeNull();
  });
});
