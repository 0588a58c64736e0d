/**
 * Run by image-bombs.test.ts in a process of its own (node --expose-gc --import tsx), so
 * that the RSS it reports is the refusals' alone. It refuses each hostile image ROUNDS
 * times through the edge (createApp over the memory adapters: inline and signed PUT) and
 * through the engine's decoder (what a runner does with an upload the edge never saw, as
 * on S3), then prints one JSON line: every answer, RSS after a warm-up with a good image,
 * the peak RSS (getrusage), and RSS at the end.
 */
import { encode as encodePng } from 'fast-png';
import { MemoryQueue } from '../../adapters/memory/memory-queue.ts';
import { MemoryStore } from '../../adapters/memory/memory-store.ts';
import { createApp } from '../../edge/app.ts';
import { decodeImage } from '../../gpu-runner/engine/image.ts';
import { createApiKey } from '../../shared/api-keys.ts';
import type { ModelInfo } from '../../shared/contract/index.ts';
import { pngBomb, pngLyingData, pngProfileBomb } from '../fixtures/images.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const BASE = 'http://127.0.0.1:8787';
const SECRET = 'blob-secret-'.repeat(4);
const PEPPER = 'pepper-'.repeat(4);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const model = (id: string, reference: boolean): ModelInfo => ({
  id,
  description: '',
  ecosystem: 'shapes-v1',
  latent: { channels: 4, vae_scale_factor: 4 },
  sizes: { default: [64, 64], min: 32, max: 128, multiple: 16 },
  conditions: { prompt: { max_tokens: 32 }, grounding: null, reference_image: reference ? { width: 32, height: 32 } : null },
  schedulers: ['ddim'],
});

async function settle(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().rss;
}

const store = new MemoryStore({ signing: { secret: SECRET, baseUrl: BASE } });
const app = createApp({
  store,
  queue: new MemoryQueue(),
  catalog: async () => [model('shapes-base', false), model('shapes-style', true)],
  pepper: PEPPER,
  publicBaseUrl: BASE,
  localBlobs: { secret: SECRET },
  logger: { error() {}, warn() {}, info() {} },
  limits: { idempotencySettleMs: 0, maxActiveJobs: 1000 },
  rateLimiter: { take: () => ({ ok: true }) },
});
const key = (await createApiKey(store, { tenant: 'acme', pepper: PEPPER })).key;
const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };

const bomb = pngBomb(30000, 30000);
const inline = async (b64: string) =>
  (
    await app.request('/v1/jobs', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ models: [{ id: 'shapes-base', role: 'base', prompt: 'x' }, { id: 'shapes-style', role: 'auxiliary', prompt: 'x', reference_image: { data: b64 } }] }),
    })
  ).status;
const upload = async (bytes: Uint8Array<ArrayBuffer>) => {
  const ticket = (await (await app.request('/v1/uploads', { method: 'POST', headers: auth, body: JSON.stringify({ content_type: 'image/png' }) })).json()) as { upload_url: string };
  return (await app.request(ticket.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bytes })).status;
};
const decode = (bytes: Uint8Array) => {
  try {
    const img = decodeImage(bytes, 'models[1].reference_image');
    return `decoded ${img.width}×${img.height}`;
  } catch (err) {
    return (err as Error).message;
  }
};

// warm-up: the same paths with a good image, so what is measured next is the refusals
const good = new Uint8Array(encodePng({ width: 48, height: 32, data: new Uint8Array(48 * 32 * 3).fill(90), channels: 3, depth: 8 }));
const warm = { inline: await inline(Buffer.from(good).toString('base64')), upload: await upload(good), decode: decode(good) };
const startRss = await settle();

const answers: Record<string, Set<string | number>> = { inline: new Set(), upload: new Set(), decodeBomb: new Set(), decodeLying: new Set(), decodeProfile: new Set() };
const b64 = Buffer.from(bomb).toString('base64');
for (let i = 0; i < ROUNDS; i++) {
  answers.inline!.add(await inline(b64));
  answers.upload!.add(await upload(bomb));
  answers.decodeBomb!.add(decode(bomb));
  answers.decodeLying!.add(decode(pngLyingData(64, 64, 2 ** 30)));
  answers.decodeProfile!.add(decode(pngProfileBomb(16, 16, 2 ** 30)));
}
const peakRss = process.resourceUsage().maxRSS * 1024;
const endRss = await settle();
console.log(JSON.stringify({ warm, answers: Object.fromEntries(Object.entries(answers).map(([k, v]) => [k, [...v]])), bombBytes: bomb.length, startRss, peakRss, endRss }));
