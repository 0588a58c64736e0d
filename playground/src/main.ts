/**
 * The AMDM playground: one page that composes a job for several models, submits it to the
 * API this page is served by, follows it live and shows the aggregated image beside each
 * model's own. Everything goes through the public API with the user's key; the page has
 * no privileges of its own. The one exception is the local key offer, which the server
 * makes only to a loopback visitor of a single-node install.
 */
import { ApiClient, ApiError, NetworkError, describeProblem, isTerminalStatus, type JobRecord, type ModelInfo } from '../../shared/client/client.ts';
import { BoxEditor, colorOf, type GroundingBox } from './box-editor.ts';
import { byId, field, h, numberInput, numberText, uid } from './dom.ts';
import { ErrorDisplay } from './errors.ts';
import { UI_DEFAULTS, UI_LIMITS, UI_OFFICIAL } from './limits.ts';
import { type FormModel, type FormState, buildRequest } from './request.ts';

/** The API is the origin (and path prefix) this page was served from. */
const API_BASE = new URL('.', location.href).href.replace(/\/$/, '');

const PHASES: Record<string, string> = {
  starting: 'starting',
  aggregating: 'aggregating the models',
  base_only: 'base model only',
  decoding: 'decoding',
};

/** The caption-only model is the one that learned color words; the others never saw one. */
const EXAMPLE_PROMPTS = { caption: 'a red circle and a blue square', conditioned: 'a circle and a square' };
const captionOnly = (m: ModelInfo) => !m.conditions.grounding && !m.conditions.reference_image;

interface ModelEntry {
  form: FormModel;
  boxes: GroundingBox[];
  editor: BoxEditor | null;
  /** object URL of the chosen reference image, for its preview */
  preview: string | null;
  referenceName: string | null;
}

const els = {
  form: byId<HTMLFormElement>('job-form'),
  summary: byId<HTMLDivElement>('error-summary'),
  key: byId<HTMLInputElement>('api-key'),
  showKey: byId<HTMLButtonElement>('show-key'),
  keyNote: byId<HTMLParagraphElement>('api-key-note'),
  modelsStatus: byId<HTMLParagraphElement>('models-status'),
  picker: byId<HTMLDivElement>('model-picker'),
  cards: byId<HTMLDivElement>('model-cards'),
  sampling: byId<HTMLDivElement>('sampling'),
  submit: byId<HTMLButtonElement>('submit'),
  cancel: byId<HTMLButtonElement>('cancel'),
  jobId: byId<HTMLParagraphElement>('job-id'),
  progress: byId<HTMLProgressElement>('progress'),
  progressText: byId<HTMLParagraphElement>('progress-text'),
  queueText: byId<HTMLParagraphElement>('queue-text'),
  result: byId<HTMLElement>('result'),
  images: byId<HTMLDivElement>('images'),
  showBoxes: byId<HTMLInputElement>('show-boxes'),
  details: byId<HTMLDListElement>('result-details'),
  requestJson: byId<HTMLPreElement>('request-json'),
  announcer: byId<HTMLDivElement>('announcer'),
};

const errors = new ErrorDisplay(els.form, els.summary);
let catalog: ModelInfo[] = [];
const entries = new Map<string, ModelEntry>();
let baseId = '';
const auxIds: string[] = [];
let running: { id: string; abort: AbortController } | null = null;

function announce(message: string): void {
  // cleared first, so the same message twice is read twice
  els.announcer.textContent = '';
  window.setTimeout(() => (els.announcer.textContent = message), 50);
}

function client(): ApiClient {
  return new ApiClient({ baseUrl: API_BASE, apiKey: els.key.value.trim() });
}

// ---- 1. key and models --------------------------------------------------------------

els.showKey.addEventListener('click', () => {
  const show = els.key.type === 'password';
  els.key.type = show ? 'text' : 'password';
  els.showKey.setAttribute('aria-pressed', String(show));
  els.showKey.textContent = show ? 'Hide' : 'Show';
});

let keyTimer = 0;
els.key.addEventListener('input', () => {
  window.clearTimeout(keyTimer);
  keyTimer = window.setTimeout(() => void loadModels(), 500);
});

async function offerLocalKey(): Promise<void> {
  try {
    const res = await fetch(`${API_BASE}/playground/local-key`, { headers: { accept: 'application/json' } });
    if (!res.ok) return;
    const { key } = (await res.json()) as { key?: string };
    if (typeof key === 'string' && els.key.value === '') {
      els.key.value = key;
      els.keyNote.textContent = "Filled in with this single-node server's local key (offered only to this machine).";
      els.keyNote.hidden = false;
    }
  } catch {
    // no local key on offer: the user types one
  }
}

async function loadModels(): Promise<void> {
  if (els.key.value.trim() === '') {
    els.modelsStatus.textContent = 'Enter an API key to load the models.';
    return;
  }
  els.modelsStatus.textContent = 'Loading models…';
  try {
    catalog = (await client().models()).data;
  } catch (err) {
    catalog = [];
    renderPicker();
    els.modelsStatus.textContent = '';
    showError(err, 'Could not load the models');
    return;
  }
  errors.clear();
  els.modelsStatus.textContent = `${catalog.length} model${catalog.length === 1 ? '' : 's'} installed.`;
  if (!catalog.some((m) => m.id === baseId)) {
    // the grounding model makes the best base: any other base re-decides the positions
    // until the last steps, while the grounding model keeps its boxes and takes the colors
    // and the background from the auxiliaries (docs/control-table.md)
    baseId = (catalog.find((m) => m.conditions.grounding) ?? catalog.find(captionOnly) ?? catalog[0])?.id ?? '';
    auxIds.length = 0;
  }
  renderPicker();
  renderCards();
  renderSampling();
}

// ---- 2. model picker and cards ------------------------------------------------------

function entry(id: string, role: 'base' | 'auxiliary'): ModelEntry {
  const info = catalog.find((m) => m.id === id)!;
  let e = entries.get(id);
  if (!e) {
    e = {
      form: {
        id,
        role,
        prompt: captionOnly(info) ? EXAMPLE_PROMPTS.caption : EXAMPLE_PROMPTS.conditioned,
        negativePrompt: '',
        guidance: '',
        p: '',
        weight: '',
        grounding: null,
        reference: null,
      },
      boxes: [],
      editor: null,
      preview: null,
      referenceName: null,
    };
    entries.set(id, e);
  }
  e.form.role = role;
  e.form.grounding = info.conditions.grounding ? e.boxes : null;
  e.form.reference = info.conditions.reference_image ? (e.form.reference ?? { uploadId: null, scale: '' }) : null;
  return e;
}

function selected(): { info: ModelInfo; entry: ModelEntry }[] {
  const base = catalog.find((m) => m.id === baseId);
  if (!base) return [];
  const aux = catalog.filter((m) => auxIds.includes(m.id));
  return [{ info: base, entry: entry(base.id, 'base') }, ...aux.map((info) => ({ info, entry: entry(info.id, 'auxiliary') }))];
}

function describeConditions(m: ModelInfo): string {
  const parts = [`prompt up to ${m.conditions.prompt.max_tokens} tokens`];
  if (m.conditions.grounding) parts.push(`grounding boxes (up to ${m.conditions.grounding.max_objects})`);
  if (m.conditions.reference_image) parts.push('a reference image');
  return `takes ${parts.join(', ')}`;
}

function renderPicker(): void {
  if (catalog.length === 0) {
    els.picker.replaceChildren(h('p', { class: 'hint' }, 'No models loaded yet.'));
    return;
  }
  const base = catalog.find((m) => m.id === baseId)!;
  const select = h(
    'select',
    {
      on: {
        change: () => {
          baseId = select.value;
          const i = auxIds.indexOf(baseId);
          if (i >= 0) auxIds.splice(i, 1);
          renderPicker();
          renderCards();
          renderSampling();
        },
      },
    },
    ...catalog.map((m) => h('option', { attrs: { value: m.id, selected: m.id === baseId } }, m.id)),
  );
  select.id = 'base-model';
  const maxAux = UI_LIMITS.maxModels - 1;
  const boxes = catalog
    .filter((m) => m.id !== baseId)
    .map((m) => {
      const other = m.ecosystem !== base.ecosystem;
      const full = !auxIds.includes(m.id) && auxIds.length >= maxAux;
      const hintId = uid('aux-hint');
      const input = h('input', {
        attrs: { type: 'checkbox', value: m.id, 'aria-describedby': hintId, disabled: other || full },
        props: { checked: auxIds.includes(m.id) },
        on: {
          change: () => {
            if (input.checked) auxIds.push(m.id);
            else auxIds.splice(auxIds.indexOf(m.id), 1);
            renderPicker();
            renderCards();
            renderSampling();
            (els.picker.querySelector<HTMLInputElement>(`input[value="${CSS.escape(m.id)}"]`) ?? els.picker).focus();
          },
        },
      });
      const why = other ? `another ecosystem (${m.ecosystem}): cannot be aggregated with ${base.id}` : full ? `at most ${UI_LIMITS.maxModels} models per job` : describeConditions(m);
      return h('div', { class: 'check' }, h('label', {}, input, ` ${m.id}`), h('p', { class: 'hint', id: hintId }, why));
    });
  els.picker.replaceChildren(
    field('Base model', select, { apiField: 'models[0].id', hint: `${base.description} It ${describeConditions(base)}.` }),
    h(
      'fieldset',
      { attrs: { 'data-field': 'models' } },
      h('legend', {}, 'Auxiliary models'),
      boxes.length > 0 ? null : h('p', { class: 'hint' }, 'No other model is installed.'),
      ...boxes,
    ),
  );
}

function size(): { width: number; height: number } {
  const base = catalog.find((m) => m.id === baseId);
  const [dw, dh] = base?.sizes.default ?? [64, 64];
  const w = Number(byIdOptional<HTMLInputElement>('width')?.value) || dw;
  const hgt = Number(byIdOptional<HTMLInputElement>('height')?.value) || dh;
  return { width: w, height: hgt };
}

function byIdOptional<T extends HTMLElement>(id: string): T | null {
  return document.getElementById(id) as T | null;
}

function renderCards(): void {
  const models = selected();
  const { width, height } = size();
  els.cards.replaceChildren(
    ...models.map(({ info, entry: e }, i) => {
      const f = e.form;
      const path = `models[${i}]`;
      const prompt = h('textarea', { attrs: { rows: 2, maxlength: UI_LIMITS.maxPromptChars }, props: { value: f.prompt }, on: { input: () => (f.prompt = prompt.value) } });
      const negative = h('textarea', { attrs: { rows: 1, maxlength: UI_LIMITS.maxPromptChars }, props: { value: f.negativePrompt }, on: { input: () => (f.negativePrompt = negative.value) } });
      const guidance = numberInput({ min: 0, max: UI_LIMITS.maxGuidance, step: 0.5, placeholder: String(UI_DEFAULTS.guidance), value: f.guidance });
      guidance.addEventListener('input', () => (f.guidance = numberText(guidance)));
      const p = numberInput({ min: 0, step: 'any', placeholder: 'auto', value: f.p });
      p.addEventListener('input', () => (f.p = numberText(p)));
      const weight = numberInput({ min: 0, step: 'any', placeholder: 'required', value: f.weight });
      weight.addEventListener('input', () => (f.weight = numberText(weight)));
      const weightField = field('Weight', weight, { apiField: `${path}.weight`, class: 'weight-field' });

      let grounding: HTMLElement | null = null;
      if (info.conditions.grounding) {
        e.editor = new BoxEditor({
          boxes: e.boxes,
          maxBoxes: info.conditions.grounding.max_objects,
          apiField: `${path}.grounding`,
          modelId: info.id,
          aspect: width / height,
          onChange: () => {},
          announce,
        });
        grounding = h('div', { class: 'grounding' }, h('h4', {}, 'Grounding boxes'), e.editor.element);
      } else {
        e.editor = null;
      }

      let reference: HTMLElement | null = null;
      if (info.conditions.reference_image && f.reference) {
        const ref = f.reference;
        const status = h('p', { class: 'hint', attrs: { role: 'status' } }, e.referenceName ? `Uploaded ${e.referenceName}.` : 'No image chosen yet.');
        const preview = h('img', { class: 'ref-preview', attrs: { alt: e.referenceName ? `reference image ${e.referenceName}` : '', hidden: !e.preview, src: e.preview ?? undefined } });
        const file = h('input', { attrs: { type: 'file', accept: 'image/png,image/jpeg' } });
        file.addEventListener('change', () => void uploadReference(e, file, status, preview));
        const scale = numberInput({ min: 0, max: 2, step: 0.05, placeholder: String(UI_DEFAULTS.referenceScale), value: ref.scale });
        scale.addEventListener('input', () => (ref.scale = numberText(scale)));
        reference = h(
          'div',
          { class: 'reference' },
          h('h4', {}, 'Reference image'),
          field(`Image (PNG or JPEG; shown to the model at ${info.conditions.reference_image.width}×${info.conditions.reference_image.height})`, file, { apiField: `${path}.reference_image` }),
          status,
          preview,
          field('Image scale', scale, { apiField: `${path}.reference_image.scale` }),
        );
      }

      const card = h(
        'fieldset',
        { class: 'model-card', attrs: { 'data-field': path } },
        h('legend', {}, h('span', { class: 'role' }, i === 0 ? 'Base' : 'Auxiliary'), ` ${info.id}`),
        info.description ? h('p', { class: 'hint' }, info.description) : null,
        field('Prompt', prompt, { apiField: `${path}.prompt` }),
        field('Negative prompt', negative, { apiField: `${path}.negative_prompt` }),
        h(
          'div',
          { class: 'row' },
          field('Guidance scale', guidance, { apiField: `${path}.guidance_scale` }),
          field('p (deviation distance)', p, { apiField: `${path}.p`, hint: 'latent units; blank: the official default, scaled to the size' }),
          weightField,
        ),
        grounding,
        reference,
      );
      return card;
    }),
  );
  syncWeightMode();
}

async function uploadReference(e: ModelEntry, file: HTMLInputElement, status: HTMLElement, preview: HTMLImageElement): Promise<void> {
  const chosen = file.files?.[0];
  if (!chosen || !e.form.reference) return;
  const type = chosen.type === 'image/jpeg' ? 'image/jpeg' : chosen.type === 'image/png' ? 'image/png' : null;
  if (!type) {
    status.textContent = 'Choose a PNG or JPEG file.';
    return;
  }
  status.textContent = `Uploading ${chosen.name}…`;
  try {
    const uploadId = await client().upload(chosen, type);
    e.form.reference.uploadId = uploadId;
    e.referenceName = chosen.name;
    if (e.preview) URL.revokeObjectURL(e.preview);
    e.preview = URL.createObjectURL(chosen);
    preview.src = e.preview;
    preview.alt = `reference image ${chosen.name}`;
    preview.hidden = false;
    status.textContent = `Uploaded ${chosen.name}.`;
  } catch (err) {
    e.form.reference.uploadId = null;
    status.textContent = `Upload failed: ${err instanceof ApiError ? describeProblem(err.problem) : (err as Error).message}`;
  }
}

// ---- 3. aggregation and sampling ----------------------------------------------------

const sampling = {
  weightMode: 'omega' as 'omega' | 'weights',
  omega: numberInput({ min: 0, max: 1, step: 0.01 }),
  omega2: numberInput({ min: 0, max: 1, step: 0.01, placeholder: String(UI_OFFICIAL.omega2) }),
  windowStart: numberInput({ min: 0, integer: true, placeholder: String(UI_DEFAULTS.window[0]) }),
  windowEnd: numberInput({ min: 0, integer: true, placeholder: String(UI_DEFAULTS.window[1]) }),
  clamp: h('input', { attrs: { type: 'checkbox' } }),
  steps: numberInput({ min: UI_LIMITS.minSteps, max: UI_LIMITS.maxSteps, integer: true, placeholder: String(UI_DEFAULTS.steps) }),
  seed: numberInput({ min: 0, max: UI_LIMITS.maxSeed, integer: true, placeholder: 'random' }),
  width: numberInput({ integer: true }),
  height: numberInput({ integer: true }),
  scheduler: h('select', {}, h('option', { attrs: { value: 'ddim' } }, 'DDIM'), h('option', { attrs: { value: 'euler' } }, 'Euler')),
  images: numberInput({ min: 1, max: UI_LIMITS.maxImages, integer: true, placeholder: '1' }),
  perModel: h('input', { attrs: { type: 'checkbox' }, props: { checked: true } }),
};
sampling.width.id = 'width';
sampling.height.id = 'height';

const weightRadios = (['omega', 'weights'] as const).map((mode) =>
  h('input', {
    attrs: { type: 'radio', name: 'weight-mode', value: mode },
    props: { checked: mode === 'omega' },
    on: {
      change: () => {
        sampling.weightMode = mode;
        syncWeightMode();
      },
    },
  }),
);

const omegaField = field('ω', sampling.omega, { apiField: 'aggregation.omega', hint: 'the base model’s share; the official parameterization' });
const omega2Field = field('ω₂', sampling.omega2, { apiField: 'aggregation.omega2', hint: 'with three models' });
const weightModeGroup = h(
  'fieldset',
  { class: 'weight-mode' },
  h('legend', {}, 'Aggregation weights'),
  h('label', {}, weightRadios[0], ' ω (official)'),
  h('label', {}, weightRadios[1], ' a weight per model'),
  omegaField,
  omega2Field,
);
const windowGroup = h(
  'fieldset',
  { attrs: { 'data-field': 'aggregation.window' } },
  h('legend', {}, 'Aggregation window (steps)'),
  h('p', { class: 'hint' }, 'The models are aggregated from the start step to the end step, inclusive; then the base model runs alone. Step 0 is never aggregated.'),
  h('div', { class: 'row' }, field('Start', sampling.windowStart, { apiField: 'aggregation.window[0]' }), field('End', sampling.windowEnd, { apiField: 'aggregation.window[1]' })),
  h('div', { class: 'check', attrs: { 'data-field': 'aggregation.clamp' } }, h('label', {}, sampling.clamp, ' Stop the pull at μ instead of overshooting it')),
);
const weightNote = h('p', { class: 'hint' });
const perModelField = h('div', { class: 'check' }, h('label', {}, sampling.perModel, ' Also show each model’s own image'));

function syncWeightMode(): void {
  const n = selected().length;
  const officialOk = n === 2 || n === 3;
  if (!officialOk && sampling.weightMode === 'omega' && n > 3) {
    weightNote.textContent = 'With four models, equal weights apply unless you give a weight per model.';
  } else {
    weightNote.textContent = n === 1 ? 'One model: nothing to aggregate.' : '';
  }
  weightModeGroup.hidden = n === 1;
  windowGroup.hidden = n === 1;
  omegaField.hidden = !(sampling.weightMode === 'omega' && officialOk);
  omega2Field.hidden = !(sampling.weightMode === 'omega' && n === 3);
  sampling.omega.placeholder = String(n === 3 ? UI_OFFICIAL.omega1 : UI_OFFICIAL.omega);
  for (const w of els.cards.querySelectorAll<HTMLElement>('.weight-field')) w.hidden = !(sampling.weightMode === 'weights' && n > 1);
  perModelField.hidden = n === 1;
  const euler = sampling.scheduler.querySelector<HTMLOptionElement>('option[value="euler"]')!;
  euler.disabled = n > 1;
  if (n > 1) sampling.scheduler.value = 'ddim';
}

function renderSampling(): void {
  const base = catalog.find((m) => m.id === baseId);
  if (base) {
    for (const [input, k] of [[sampling.width, 0], [sampling.height, 1]] as const) {
      input.min = String(base.sizes.min);
      input.max = String(base.sizes.max);
      input.step = String(base.sizes.multiple);
      input.placeholder = String(base.sizes.default[k]);
    }
  }
  if (els.sampling.childElementCount === 0) {
    const randomSeed = h('button', {
      attrs: { type: 'button' },
      on: {
        click: () => {
          sampling.seed.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
          announce(`Seed ${sampling.seed.value}`);
        },
      },
    }, 'Random seed');
    const onSize = () => {
      const { width, height } = size();
      for (const e of entries.values()) e.editor?.setAspect(width / height);
    };
    sampling.width.addEventListener('input', onSize);
    sampling.height.addEventListener('input', onSize);
    els.sampling.append(
      weightNote,
      weightModeGroup,
      windowGroup,
      h(
        'div',
        { class: 'row' },
        field('Steps', sampling.steps, { apiField: 'sampler.steps' }),
        seedField(randomSeed),
      ),
      h(
        'div',
        { class: 'row' },
        field('Width', sampling.width, { apiField: 'sampler.width' }),
        field('Height', sampling.height, { apiField: 'sampler.height' }),
        field('Scheduler', sampling.scheduler, { apiField: 'sampler.scheduler', hint: 'several models need DDIM' }),
        field('Images', sampling.images, { apiField: 'outputs.images' }),
      ),
      perModelField,
    );
  }
  syncWeightMode();
}


/** The seed input with its button on one line, the hint below both. */
function seedField(randomSeed: HTMLButtonElement): HTMLElement {
  const f = field('Seed', sampling.seed, { apiField: 'sampler.seed', hint: `a whole number 0 to ${UI_LIMITS.maxSeed}; blank for a random one`, class: 'seed-field' });
  const wrap = h('div', { class: 'with-button' });
  sampling.seed.replaceWith(wrap);
  wrap.append(sampling.seed, randomSeed);
  return f;
}

function formState(): FormState {
  return {
    models: selected().map(({ entry: e }) => e.form),
    weightMode: sampling.weightMode,
    omega: numberText(sampling.omega),
    omega2: numberText(sampling.omega2),
    windowStart: numberText(sampling.windowStart),
    windowEnd: numberText(sampling.windowEnd),
    clamp: sampling.clamp.checked,
    steps: numberText(sampling.steps),
    seed: sampling.seed.validity.badInput ? 'not a number' : sampling.seed.value,
    width: numberText(sampling.width),
    height: numberText(sampling.height),
    scheduler: sampling.scheduler.value === 'euler' ? 'euler' : 'ddim',
    images: numberText(sampling.images),
    perModel: sampling.perModel.checked,
  };
}

// ---- 4. submit, follow, cancel ------------------------------------------------------

function showError(err: unknown, title: string): void {
  if (err instanceof ApiError) {
    errors.show(title, err.fieldErrors, err.fieldErrors.length > 0 ? undefined : describeProblem(err.problem));
  } else if (err instanceof NetworkError) {
    errors.show(title, [], err.message);
  } else {
    errors.show(title, [], (err as Error).message);
  }
}

els.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void submit();
});

async function submit(): Promise<void> {
  if (running) return;
  errors.clear();
  if (els.key.value.trim() === '') {
    errors.show('The job was not sent', [{ field: 'header Authorization', message: 'enter an API key' }]);
    return;
  }
  if (selected().length === 0) {
    errors.show('The job was not sent', [], 'Load the models first: enter an API key.');
    return;
  }
  const { request, errors: local } = buildRequest(formState());
  els.requestJson.textContent = JSON.stringify(request, null, 2);
  if (local.length > 0) {
    errors.show('Check these fields', local);
    return;
  }
  els.submit.disabled = true;
  let job: JobRecord;
  try {
    job = await client().submit(request, { idempotencyKey: crypto.randomUUID() });
  } catch (err) {
    els.submit.disabled = false;
    showError(err, 'The API refused the job');
    return;
  }
  const abort = new AbortController();
  running = { id: job.id, abort };
  els.cancel.disabled = false;
  els.result.hidden = true;
  els.jobId.textContent = `Job ${job.id}`;
  renderProgress(job);
  announce('Job submitted.');
  try {
    const done = await client().follow(job.id, { signal: abort.signal, onUpdate: (j) => renderProgress(j) });
    renderProgress(done);
    renderResult(done);
  } catch (err) {
    if ((err as Error).name !== 'AbortError') showError(err, 'Lost track of the job');
  } finally {
    running = null;
    els.cancel.disabled = true;
    els.submit.disabled = false;
  }
}

els.cancel.addEventListener('click', async () => {
  if (!running) return;
  els.cancel.disabled = true;
  try {
    renderProgress(await client().cancel(running.id));
    announce('Cancel requested.');
  } catch (err) {
    // 409: it finished meanwhile; the stream brings the final state
    if (!(err instanceof ApiError && err.status === 409)) {
      els.cancel.disabled = false;
      showError(err, 'Could not cancel the job');
    }
  }
});

let lastStatus = '';
function renderProgress(job: JobRecord): void {
  const p = job.progress;
  els.progress.dataset.status = job.status;
  if (job.status === 'queued') {
    els.progress.removeAttribute('value'); // indeterminate
    // the reason already says how many jobs are ahead ("next in line", "2 job(s) ahead; 1 running")
    els.progressText.textContent = job.queue ? `Queued: ${job.queue.reason}` : 'Queued.';
    els.queueText.textContent = job.queue?.position != null ? `${job.queue.position} job${job.queue.position === 1 ? '' : 's'} ahead of this one.` : '';
  } else {
    els.queueText.textContent = '';
    if (p) {
      els.progress.max = p.total;
      els.progress.value = job.status === 'succeeded' ? p.total : p.step;
    }
    const image = p && p.images > 1 ? ` · image ${p.image} of ${p.images}` : '';
    const steps = p ? `Step ${job.status === 'succeeded' ? p.total : p.step} of ${p.total}` : '';
    if (job.status === 'running') els.progressText.textContent = `Running: ${steps} · ${PHASES[p?.phase ?? 'starting'] ?? p?.phase}${image}`;
    else if (job.status === 'succeeded') els.progressText.textContent = `Succeeded: ${steps}${job.timings.run_ms !== null ? ` in ${Math.round(job.timings.run_ms)} ms` : ''}`;
    else if (job.status === 'canceled') els.progressText.textContent = `Canceled${p ? ` at step ${p.step} of ${p.total}` : ' before it started'}.`;
    else els.progressText.textContent = `Failed: ${job.error ? describeProblem(job.error) : 'no reason given'}`;
  }
  els.progress.setAttribute('aria-valuetext', els.progressText.textContent ?? '');
  const key = `${job.status}|${p?.phase ?? ''}`;
  if (key !== lastStatus) {
    lastStatus = key;
    if (isTerminalStatus(job.status) || job.status === 'queued') announce(els.progressText.textContent ?? '');
    else announce(`Running: ${PHASES[p?.phase ?? 'starting'] ?? ''}`);
  }
}

// ---- 5. result ----------------------------------------------------------------------

els.showBoxes.addEventListener('change', () => els.images.classList.toggle('hide-boxes', !els.showBoxes.checked));

function renderResult(job: JobRecord): void {
  if (job.status !== 'succeeded') return;
  const spec = job.spec;
  const { width, height } = spec.sampler;
  // 32x32 images are tiny: scale up by whole pixels, as large as fits in 256 CSS px
  const scale = Math.max(1, Math.floor(256 / Math.max(width, height)));
  const allBoxes = spec.models.flatMap((m) => m.grounding);
  const figures = job.outputs
    .filter((o) => o.kind === 'image')
    .sort((a, b) => (a.source === 'aggregated' ? -1 : 0) - (b.source === 'aggregated' ? -1 : 0) || a.index - b.index)
    .map((o) => {
      const own = spec.models.find((m) => m.id === o.source);
      const boxes = o.source === 'aggregated' ? allBoxes : (own?.grounding ?? []);
      const label = o.source === 'aggregated' ? `Aggregated (base ${spec.models[0]!.id})` : `${o.source} alone`;
      const img = h('img', {
        attrs: { src: o.url, width: width * scale, height: height * scale, alt: `${label}, image ${o.index + 1}, ${width}×${height} pixels, seed ${spec.sampler.seed + o.index}` },
      });
      const overlay = h('div', { class: 'box-overlay', attrs: { 'aria-hidden': 'true' } });
      boxes.forEach((g, i) => {
        const [x0, y0, x1, y1] = g.box;
        const b = h('div', { class: 'overlay-box' }, h('span', {}, g.phrase));
        Object.assign(b.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%`, borderColor: colorOf(i) });
        (b.firstChild as HTMLElement).style.background = colorOf(i);
        overlay.append(b);
      });
      const name = `${job.id}-${o.source}-${o.index}.png`;
      return h(
        'figure',
        { class: 'output' },
        h('div', { class: 'frame' }, img, overlay),
        h('figcaption', {}, label, spec.outputs.images > 1 ? ` · image ${o.index + 1}` : '', ' · ', h('a', { attrs: { href: o.url, download: name } }, 'Download PNG')),
      );
    });
  els.images.replaceChildren(...figures);
  const t = job.timings;
  const ms = (v: number | null) => (v === null ? '–' : `${Math.round(v)} ms`);
  const rows: [string, string][] = [
    ['Seed', String(spec.sampler.seed)],
    ['Size', `${width}×${height}, ${spec.sampler.steps} steps, ${spec.sampler.scheduler}`],
    ['Weights', spec.models.map((m) => `${m.id} ${m.weight.toFixed(3)} (p ${m.p.toFixed(1)})`).join(', ') + ` · ${spec.aggregation.weights}`],
    ['Window', `steps ${spec.aggregation.window[0]} to ${spec.aggregation.window[1]}`],
    ['Time', `queued ${ms(t.queued_ms)}, ran ${ms(t.run_ms)} (${ms(t.onnx_ms)} in onnxruntime, ${ms(t.outside_onnx_ms)} outside)`],
    ['Usage', job.usage ? `${job.usage.unet_evals} UNet evaluations, ${job.usage.images} image${job.usage.images === 1 ? '' : 's'}, ${ms(job.usage.runner_ms)} runner time` : '–'],
    ['Links expire', new Date(job.outputs[0]?.expires_at ?? Date.now()).toLocaleTimeString()],
  ];
  els.details.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  els.result.hidden = false;
}

// ---- start --------------------------------------------------------------------------

renderPicker();
void offerLocalKey().then(loadModels);
