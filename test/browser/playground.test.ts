/**
 * The playground in a real browser (Debian's Chromium driven by playwright-core) against
 * the local stack: the page offers the local key, models are picked (a base, a grounding
 * model, and a style model whose reference image is uploaded), a box is drawn with the
 * mouse and nudged with the keyboard, its phrase typed; a bad seed and an API error (a window past the last step) show next to
 * their fields; the job runs to the image with progress n of n; a long job is canceled
 * from the page. A newcomer's round trip: an example preset fills the form (the request
 * and its curl and fetch snippets show before anything is sent), runs to its images, shows
 * in the history with a thumbnail, and opening it there fills the form with the same job
 * again. What issue #13 asks of the page: the prompt's token count while typing, a job's
 * warnings at their fields, live previews while it runs (the window's end kept), and each
 * model alone beside the aggregated image. And /docs renders the reference from this
 * server alone.
 *
 * The engine is the real one when model packages are present (models/ or
 * AMDM_MODELS_DIR), else the slow test double, whose catalog has the same models.
 * Set AMDM_UPDATE_SCREENSHOT=1 to rewrite docs/playground.png from the finished
 * three-model example (every run takes the screenshot; only then does it replace the
 * committed one).
 *
 * Three page loads in all: browser tests are the slowest kind on a shared 2-core machine.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type JobRecord, JobRequest } from '../../shared/contract/index.ts';
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

    // the prompt's token count, from the model's tokenizer, follows the typing
    const basePrompt = page.getByRole('group', { name: 'Base shapes-base' }).getByLabel('Prompt', { exact: true });
    const tokenCount = page.locator(`.field:has(#${await basePrompt.getAttribute('id')}) .token-count`);
    await expect.poll(() => tokenCount.textContent(), { timeout: 30_000 }).toBe('7 / 14 tokens');
    expect((await basePrompt.getAttribute('aria-describedby'))!.split(' ')).toContain(await tokenCount.getAttribute('id'));
    await basePrompt.press('End');
    await basePrompt.pressSequentially(' and a green triangle on a yellow background', { delay: 20 });
    await expect.poll(() => tokenCount.textContent(), { timeout: 30_000 }).toMatch(/^(\d+) \/ 14 tokens: the last \d+ are dropped$/);
    expect(await tokenCount.getAttribute('class')).toContain('over');
    await basePrompt.fill('a red circle and a blue square');
    await expect.poll(() => tokenCount.textContent(), { timeout: 30_000 }).toBe('7 / 14 tokens');
    expect(await tokenCount.getAttribute('class')).not.toContain('over');
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


    // cancel from the page: a long job, canceled once it runs; at a size the models were not
    // trained at, which the 202 already warns about, at the field like an error but as a warning
    await page.getByLabel('Steps').fill('100');
    await page.getByLabel('Images', { exact: true }).fill('4');
    await page.getByLabel('Width').fill('64');
    await page.getByLabel('Height').fill('64');
    await page.getByRole('button', { name: 'Generate' }).click();
    const warningList = page.locator('#job-warnings');
    await expect.poll(() => warningList.getByRole('link').allTextContents(), { timeout: 30_000 }).toEqual([
      'sampler.width: model "shapes-base" was trained at 32×32 pixels; at 64×64 it renders, but expect repeated or broken objects',
    ]);
    expect(await warningList.getAttribute('role')).toBe('status');
    const width = page.getByLabel('Width');
    const widthWarning = page.locator('.field', { has: width }).locator('.field-warning');
    expect(await widthWarning.textContent()).toMatch(/^model "shapes-base" was trained at 32×32 pixels/);
    expect(await widthWarning.evaluate((el) => getComputedStyle(el, '::before').content)).toBe('"Warning: "');
    expect((await width.getAttribute('aria-describedby'))!.split(' ')).toContain(await widthWarning.getAttribute('id'));
    expect(await width.getAttribute('class')).toContain('has-warning');
    // a warning is not an error: the input is not invalid, and nothing is in the error summary
    expect(await width.getAttribute('aria-invalid')).toBeNull();
    expect(await page.locator('#error-summary').isHidden()).toBe(true);
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

  it('runs an example preset, finds it in the history with a thumbnail, and opening it fills the form with the same job', async () => {
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(stack.url).origin });
    const page = await ctx.newPage();
    watch(page);
    const posted: unknown[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/jobs') posted.push(r.postDataJSON());
    });
    await page.goto(`${stack.url}/`);
    await expect.poll(() => page.getByRole('status').filter({ hasText: /models? installed/ }).count(), { timeout: 30_000 }).toBe(1);
    const snippet = page.locator('#request-snippet');
    const shownRequest = async () => JSON.parse((await snippet.textContent())!) as unknown;

    // an empty page already shows the request it would send; one model: no window, no weights.
    // The default base is the grounding model (docs/control-table.md: the best setting found
    // on validation has the layout model as the base)
    expect(await shownRequest()).toMatchObject({ models: [{ id: 'shapes-layout', role: 'base', prompt: 'a circle and a square' }] });
    expect(await page.getByRole('group', { name: 'Aggregation window (steps)' }).isVisible()).toBe(false);
    // nor each model alone: a job of one model is already that
    expect(await page.getByRole('checkbox', { name: /^Also run each model alone/ }).isVisible()).toBe(false);
    // the fp16 copy of the base is not offered beside it, and the page says why
    await page.getByLabel('Base model').selectOption('shapes-base');
    expect(await page.getByRole('checkbox', { name: 'shapes-base-fp16' }).count()).toBe(0);
    await page.getByText(/Not offered: shapes-base-fp16, the same model as the base shapes-base/).waitFor();

    // one click: the three-model example, boxes and reference image included, cards collapsed
    const example = JSON.parse(readFileSync(fileURLToPath(new URL('../../examples/base-layout-style.json', import.meta.url)), 'utf8')) as unknown;
    await page.getByRole('button', { name: 'base-layout-style' }).click();
    await page.getByRole('status').filter({ hasText: 'Loaded examples/base-layout-style.json.' }).waitFor();
    expect(JobRequest.parse(await shownRequest())).toEqual(JobRequest.parse(example));
    expect(await page.locator('details.model-card').evaluateAll((ds) => ds.map((d) => [(d as HTMLDetailsElement).open, d.querySelector('summary')!.textContent]))).toEqual([
      [false, 'Base shapes-base “a red circle and a blue square”'],
      [false, 'Auxiliary shapes-layout “a circle and a square” · 2 boxes'],
      [false, 'Auxiliary shapes-style “a circle and a square” · reference image'],
    ]);
    expect(await page.getByRole('group', { name: 'Aggregation window (steps)' }).isVisible()).toBe(true);

    // the curl and fetch snippets follow the form, name this server, and hold no key
    await page.getByLabel('curl').check();
    const curl = (await snippet.textContent())!;
    expect(curl).toMatch(new RegExp(`^curl -sS '${stack.url}/v1/jobs'`));
    expect(curl).toContain('-H "Authorization: Bearer $AMDM_API_KEY"');
    expect(curl).toContain('"box": [0.06, 0.1, 0.44, 0.48]');
    await page.getByLabel('Seed').fill('8');
    expect(await snippet.textContent()).toContain('"seed": 8');
    await page.getByLabel('Seed').fill('7');
    await page.getByLabel('JavaScript fetch').check();
    expect(await snippet.textContent()).toContain('Authorization: `Bearer ${process.env.AMDM_API_KEY}`');
    await page.getByRole('button', { name: 'Copy' }).click();
    await page.getByRole('status').filter({ hasText: 'Copied.' }).waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(await snippet.textContent());
    expect((await page.locator('.request').textContent())!).not.toContain(stack.key);
    await page.getByLabel('JSON body of POST /v1/jobs').check();

    // each model alone too, with what it costs; enough steps that the previews have a run to show
    const solo = page.getByRole('checkbox', { name: /^Also run each model alone/ });
    await solo.check();
    await page.getByLabel('Steps').fill('50');
    expect(await page.locator('#' + (await solo.getAttribute('aria-describedby'))).textContent()).toMatch(/: 147 more UNet evaluations, 297 for the whole job\.$/);
    const withSolo = { ...(example as object), sampler: { steps: 50, seed: 7 }, outputs: { per_model: true, solo: true } };
    expect(JobRequest.parse(await shownRequest())).toEqual(JobRequest.parse(withSolo));

    // Generate: what is sent is the example, with solo; live previews show while it runs
    await page.getByRole('button', { name: 'Generate' }).click();
    const preview = page.locator('#preview');
    await expect.poll(() => preview.locator('img').evaluateAll((els) => els.filter((i) => (i as HTMLImageElement).src.startsWith('data:image/png;base64,')).length), { timeout: 60_000 }).toBeGreaterThan(0);
    await preview.getByRole('heading', { name: 'Live preview' }).waitFor();
    expect(await preview.textContent()).toContain('decoded by the VAE');
    // the frame of the window's end stays on show, where the models were just pulled together
    await preview.getByRole('heading', { name: /^End of the window: pulled together \(step 4 of 50\)$/ }).waitFor({ timeout: 60_000 });
    expect(await preview.getByRole('img', { name: /^Preview at the end of the window: shapes-layout in the aggregated run, step 4 of 50$/ }).count()).toBe(1);
    const images = page.locator('#images img');
    await expect.poll(() => images.evaluateAll((els) => els.length === 6 && els.every((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0)), { timeout: 60_000 }).toBe(true);
    expect(posted).toHaveLength(1);
    expect(JobRequest.parse(posted[0])).toEqual(JobRequest.parse(withSolo));
    const first = (await page.locator('#job-id').textContent())!.replace('Job ', '');
    // every image is labelled for what it is: the aggregated image, each model alone, and each
    // model's own latent inside the aggregated run (which is not the model alone)
    const rows = await page.locator('#images .output-row').evaluateAll((rs) => rs.map((r) => [r.querySelector('h3')!.textContent, [...r.querySelectorAll('figcaption')].map((f) => f.textContent)]));
    expect(rows).toEqual([
      ['Aggregated', ['Aggregated (base shapes-base) · Download PNG']],
      ['Each model alone', ['shapes-base alone · Download PNG', 'shapes-layout alone · Download PNG', 'shapes-style alone · Download PNG']],
      ['Each model’s own latent inside the aggregated run', ['shapes-layout · Download PNG', 'shapes-style · Download PNG']],
    ]);
    expect(await page.getByRole('img', { name: /^shapes-layout alone, image 1/ }).count()).toBe(1);
    expect(await page.getByRole('img', { name: /^shapes-layout: its own latent inside the aggregated run/ }).count()).toBe(1);
    expect(await page.locator('#images a[download]').evaluateAll((as) => as.map((a) => (a as HTMLAnchorElement).download))).toEqual(
      ['aggregated', 'solo-shapes-base', 'solo-shapes-layout', 'solo-shapes-style', 'shapes-layout', 'shapes-style'].map((n) => `${first}-${n}-0.png`),
    );
    expect(await page.locator('#result-details').textContent()).toContain('Each model alone147 of the 297 UNet evaluations estimated for the job');

    // the finished three-model job, for docs/playground.png (tall enough to hold the whole page unscrolled)
    await page.locator('#history-list img').first().waitFor({ timeout: 30_000 });
    await page.evaluate(() => window.scrollTo(0, 0));
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    await page.setViewportSize({ width: 1280, height: Math.min(height, 5000) });
    const shot = await page.screenshot({ path: process.env.AMDM_UPDATE_SCREENSHOT === '1' ? SCREENSHOT : join(userDataDir, 'playground.png') });
    expect(shot.subarray(1, 4).toString()).toBe('PNG');
    await page.setViewportSize({ width: 1280, height: 1000 });

    // the history lists it, newest first, with its thumbnail decoded
    const item = page.locator(`#history-list button[data-job="${first}"]`);
    await item.waitFor({ timeout: 30_000 });
    expect(await page.locator('#history-list button').first().getAttribute('data-job')).toBe(first);
    expect(await item.textContent()).toMatch(/^succeeded · .*shapes-base \+ shapes-layout \+ shapes-style/);
    await expect.poll(() => item.locator('img').evaluate((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth > 0), { timeout: 30_000 }).toBe(true);

    // another example replaces the form; opening the job from the history brings it all back
    await page.getByRole('button', { name: 'single', exact: true }).click();
    expect(await page.getByRole('checkbox', { name: 'shapes-layout' }).isChecked()).toBe(false);
    await item.click();
    await page.getByRole('status').filter({ hasText: `Loaded job ${first}.` }).waitFor();
    expect(await page.getByLabel('Base model').inputValue()).toBe('shapes-base');
    expect(await page.getByRole('checkbox', { name: 'shapes-layout' }).isChecked()).toBe(true);
    expect(await page.getByRole('checkbox', { name: 'shapes-style' }).isChecked()).toBe(true);
    expect(await page.getByLabel('Seed').inputValue()).toBe('7');
    expect(await page.getByLabel('Steps').inputValue()).toBe('50');
    expect(await solo.isChecked()).toBe(true);
    await page.locator('details.model-card summary', { hasText: 'shapes-layout' }).click();
    expect(await page.getByRole('group', { name: 'Box 2' }).getByLabel('Phrase').inputValue()).toBe('square');
    await page.locator('details.model-card summary', { hasText: 'shapes-style' }).click();
    await page.getByText(new RegExp(`^The image job ${first} used \\(upload upl_`)).waitFor();
    expect(await images.count()).toBe(6);
    const again = (await shownRequest()) as { models: { reference_image?: { upload_id?: string } }[] };
    expect(again.models[2]!.reference_image!.upload_id).toMatch(/^upl_/);

    // sent again, it is the same job: the same spec, the same image bytes
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#job-id').textContent(), { timeout: 30_000 }).not.toBe(`Job ${first}`);
    await expect.poll(() => page.locator('#progress-text').textContent(), { timeout: 60_000 }).toMatch(/^Succeeded/);
    const second = (await page.locator('#job-id').textContent())!.replace('Job ', '');
    const [a, b] = await Promise.all([first, second].map(async (id) => (await (await stack.api(`/v1/jobs/${id}`)).json()) as JobRecord));
    expect(b!.spec).toEqual(a!.spec);
    const bytes = async (job: JobRecord) => Buffer.from(await (await fetch(job.outputs.find((o) => o.source === 'aggregated')!.url)).arrayBuffer());
    expect((await bytes(b!)).equals(await bytes(a!))).toBe(true);

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
