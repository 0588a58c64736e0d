/**
 * The playground in a real browser (Debian's Chromium driven by playwright-core) against
 * the local stack: the page offers the local key, models are picked (a base, a grounding
 * model, and a style model whose reference image is uploaded), a box is drawn with the
 * mouse and nudged with the keyboard, its phrase typed; a bad seed and an API error (a window past the last step) show next to
 * their fields; the job runs to the image with progress n of n; a long job is canceled
 * from the page; and /docs renders the reference from this server alone.
 *
 * The engine is the real one when model packages are present (models/ or
 * AMDM_MODELS_DIR), else the slow test double, whose catalog has the same three models.
 * Set AMDM_UPDATE_SCREENSHOT=1 to rewrite docs/playground.png from the finished page
 * (every run takes the screenshot; only then does it replace the committed one).
 *
 * Two page loads in all: browser tests are the slowest kind on a shared 2-core machine.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRecord } from '../../shared/contract/index.ts';
import { startStack, until, type Stack } from '../e2e/harness.ts';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`test/browser: skipped: ${CHROMIUM} is missing (apt-get install -y chromium; never npx playwright install)`);
const SCREENSHOT = fileURLToPath(new URL('../../docs/playground.png', import.meta.url));

let stack: Stack;
let ctx: BrowserContext;
let userDataDir: string;
/** requests the page made to any origin but the API's: must stay empty (no CDN, no fonts) */
const foreign: string[] = [];
const pageErrors: string[] = [];

async function launch(): Promise<BrowserContext> {
  userDataDir = mkdtempSync(join(tmpdir(), 'amdm-chromium-'));
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 1000 },
  });
}

function watch(page: Page): void {
  const origin = new URL(stack.url).origin;
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin) foreign.push(r.url());
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
}

describe.skipIf(!HAVE_CHROMIUM)('the playground in Chromium', () => {
  beforeAll(async () => {
    stack = await startStack({ config: { intraOpNumThreads: 1 } });
    // what `npm start` leaves in DATA_DIR; the page is offered it because it loads over loopback
    writeFileSync(join(stack.dataDir, 'local-api-key'), stack.key, { mode: 0o600 });
    ctx = await launch();
  });
  afterAll(async () => {
    await ctx?.close();
    await stack?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  it('composes a job of a base, a grounding and a style model, shows errors at their fields, runs it to the images, and cancels another', async () => {
    const page = await ctx.newPage();
    watch(page);
    const posted: unknown[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/jobs') posted.push(r.postDataJSON());
    });
    await page.goto(`${stack.url}/`);

    // 1. the local key is offered, the models load
    await expect.poll(() => page.getByRole('status').filter({ hasText: /models? installed/ }).count(), { timeout: 30_000 }).toBe(1);
    expect(await page.getByLabel('API key', { exact: true }).inputValue()).toBe(stack.key);
    await page.getByText("Filled in with this single-node server's local key").waitFor();

    // pick the base and a grounding model
    await page.getByLabel('Base model').selectOption('shapes-base');
    await page.getByRole('checkbox', { name: 'shapes-layout' }).check();
    const canvas = page.getByRole('application', { name: 'Grounding boxes for shapes-layout' });
    await canvas.scrollIntoViewIfNeeded();

    // 2. draw a box by dragging, then type its phrase (the phrase input takes the focus)
    const box = (await canvas.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.4, { steps: 5 });
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.6, { steps: 5 });
    await page.mouse.up();
    await page.keyboard.type('a red circle');
    const row = page.getByRole('group', { name: 'Box 1' });
    expect(await row.getByLabel('Phrase').inputValue()).toBe('a red circle');
    const x0 = row.getByLabel('left (x0)');
    expect(Number(await x0.inputValue())).toBeCloseTo(0.1, 1);
    expect(Number(await row.getByLabel('bottom (y1)').inputValue())).toBeCloseTo(0.6, 1);
    // the keyboard moves it too
    const before = Number(await x0.inputValue());
    await canvas.focus();
    await page.keyboard.press('ArrowRight');
    expect(Number(await x0.inputValue())).toBeCloseTo(before + 0.01, 5);

    // a third model that needs a reference image: uploaded through POST /v1/uploads and the signed PUT
    await page.getByRole('checkbox', { name: 'shapes-style' }).check();
    const example = JSON.parse(readFileSync(fileURLToPath(new URL('../../examples/base-layout-style.json', import.meta.url)), 'utf8')) as { models: { reference_image?: { data: string } }[] };
    const png = Buffer.from(example.models.find((m) => m.reference_image)!.reference_image!.data, 'base64');
    await page.getByLabel(/^Image \(PNG or JPEG/).setInputFiles({ name: 'style.png', mimeType: 'image/png', buffer: png });
    await page.getByRole('status').filter({ hasText: 'Uploaded style.png.' }).waitFor({ timeout: 30_000 });
    expect(await page.getByRole('img', { name: 'reference image style.png' }).isVisible()).toBe(true);
    // the box drawn for shapes-layout survived the re-render of the model cards
    expect(await page.getByRole('group', { name: 'Box 1' }).getByLabel('Phrase').inputValue()).toBe('a red circle');

    // every control a screen reader reaches has a name: a <label>, aria-label or aria-labelledby
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('input, select, textarea, button, canvas[tabindex]')]
        .filter((el) => !el.closest('[hidden]'))
        .filter((el) => !((el as HTMLInputElement).labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent!.trim())))
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    expect(unnamed).toEqual([]);

    // a seed that is not a uint32 is refused at its field, before anything is sent
    await page.getByLabel('Seed').fill('4294967296');
    await page.getByRole('button', { name: 'Generate' }).click();
    const seedError = page.locator('.field:has(#' + (await page.getByLabel('Seed').getAttribute('id')) + ') .field-error');
    await expect.poll(() => seedError.textContent(), { timeout: 30_000 }).toMatch(/whole number from 0 to 4294967295/);
    expect(posted).toHaveLength(0);
    await page.getByLabel('Seed').fill('7');

    // an API error lands next to the field it names: the default window [1, 3] needs more than 3 steps
    await page.getByLabel('Steps').fill('3');
    await page.getByRole('button', { name: 'Generate' }).click();
    const windowGroup = page.getByRole('group', { name: 'Aggregation window (steps)' });
    await expect.poll(() => windowGroup.locator('.field-error').textContent(), { timeout: 30_000 }).toMatch(/window must lie in \[0, steps\) = \[0, 3\)/);
    expect(await page.getByRole('alert').getByRole('link', { name: /aggregation\.window/ }).count()).toBe(1);
    expect(await windowGroup.getByLabel('End').getAttribute('aria-invalid')).toBe('true');
    expect(posted).toHaveLength(1);

    // 3. fixed: submit and wait for the image
    await page.getByLabel('Steps').fill('12');
    await page.getByRole('button', { name: 'Generate' }).click();
    const images = page.locator('#images img');
    await images.first().waitFor({ timeout: 60_000 });
    expect(await windowGroup.locator('.field-error').count()).toBe(0);

    // what was sent: the two models in page order, the box normalized xyxy with its phrase
    const sent = posted.at(-1) as { models: { id: string; grounding?: { phrase: string; box: number[] }[]; reference_image?: { upload_id: string } }[]; sampler: { steps: number; seed: number } };
    expect(sent.models.map((m) => m.id)).toEqual(['shapes-base', 'shapes-layout', 'shapes-style']);
    expect(sent.models[2]!.reference_image!.upload_id).toMatch(/^upl_/);
    const g = sent.models[1]!.grounding![0]!;
    expect(g.phrase).toBe('a red circle');
    expect(g.box.every((v) => v >= 0 && v <= 1) && g.box[0]! < g.box[2]! && g.box[1]! < g.box[3]!).toBe(true);
    expect(g.box[0]).toBeCloseTo(0.11, 1);
    expect(sent.sampler).toMatchObject({ steps: 12, seed: 7 });

    // 4. every image decoded, progress reached n of n
    await expect
      .poll(() => images.evaluateAll((els) => els.length > 0 && els.every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0)), { timeout: 30_000 })
      .toBe(true);
    // the aggregated image and each auxiliary model's own
    expect(await images.count()).toBe(3);
    expect(await page.locator('#progress-text').textContent()).toMatch(/^Succeeded: Step 12 of 12/);
    expect(await page.locator('#progress').evaluate((p) => [(p as HTMLProgressElement).value, (p as HTMLProgressElement).max])).toEqual([12, 12]);
    expect(await page.locator('#images .overlay-box').first().textContent()).toBe('a red circle');
    const download = page.getByRole('link', { name: 'Download PNG' }).first();
    expect(await download.getAttribute('href')).toMatch(new RegExp(`^${stack.url}/v1/blobs/tenants/alpha/jobs/job_[a-z0-9]+/out/aggregated-0\\.png\\?`));
    expect(await page.locator('#result-details').textContent()).toMatch(/Seed7.*UNet evaluations/s);

    // the finished page, for docs/playground.png (tall enough to hold the whole page unscrolled)
    await page.evaluate(() => window.scrollTo(0, 0));
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    await page.setViewportSize({ width: 1280, height: Math.min(height, 5000) });
    const shot = await page.screenshot({ path: process.env.AMDM_UPDATE_SCREENSHOT === '1' ? SCREENSHOT : join(userDataDir, 'playground.png') });
    expect(shot.subarray(1, 4).toString()).toBe('PNG');
    await page.setViewportSize({ width: 1280, height: 1000 });

    // cancel from the page: a long job, canceled once it runs
    await page.getByLabel('Steps').fill('100');
    await page.getByLabel('Images', { exact: true }).fill('4');
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#progress-text').textContent(), { timeout: 30_000 }).toMatch(/^Running: Step/);
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await expect.poll(() => page.locator('#progress-text').textContent(), { timeout: 30_000 }).toMatch(/^Canceled at step \d+ of 100/);
    const id = (await page.locator('#job-id').textContent())!.replace('Job ', '');
    const job = (await (await stack.api(`/v1/jobs/${id}`)).json()) as JobRecord;
    expect(job.status).toBe('canceled');
    expect(await page.getByRole('button', { name: 'Generate' }).isEnabled()).toBe(true);

    expect(pageErrors).toEqual([]);
    expect(foreign).toEqual([]);
    await page.close();
  });

  it('serves the API reference at /docs from this server alone', async () => {
    const page = await ctx.newPage();
    watch(page);
    await page.goto(`${stack.url}/docs`);
    await page.getByRole('heading', { name: /AMDM API/ }).first().waitFor();
    await until(async () => (await page.locator('.opblock-summary-path', { hasText: '/v1/jobs/{id}/events' }).count()) === 1, 'the operations to render', 30_000);
    expect(await page.locator('.opblock').count()).toBeGreaterThanOrEqual(11);
    expect(pageErrors).toEqual([]);
    expect(foreign).toEqual([]);
    await page.close();
  });
});
