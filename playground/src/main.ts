/**
 * The AMDM playground: one page that composes a job for several models, submits it to the
 * API this page is served by, follows it live (its warnings, live previews) and shows the
 * aggregated image beside each model's own: alone, and inside the aggregated run. Everything goes through the public API with the user's key; the page has
 * no privileges of its own. The one exception is the local key offer, which the server
 * makes only to a loopback visitor of a single-node install.
 */
import { ApiClient, ApiError, NetworkError, describeProblem, isTerminalStatus, type JobRecord, type JobRequestInput, type ModelInfo } from '../../shared/client/client.ts';
import { BoxEditor, colorOf, type GroundingBox } from './box-editor.ts';
import { append, byId, field, h, numberInput, numberText, uid } from './dom.ts';
import { ErrorDisplay, WarningDisplay } from './errors.ts';
import { type LoadResult, formFromRequest, formFromSpec } from './form-load.ts';
import { UI_DEFAULTS, UI_LIMITS, UI_OFFICIAL } from './limits.ts';
import { PREVIEW_METHODS, type PreviewPicture, PreviewFrames, phaseLabel, pictureLabel } from './live.ts';
import { type Output, downloadName, outputModel, outputRows } from './outputs.ts';
import { type FormModel, type FormState, buildRequest, estimateUnetEvals } from './request.ts';
import { curlSnippet, fetchSnippet, prettyJson } from './snippets.ts';
import { TokenCounter, describeTokenCount } from './token-count.ts';
import { auxiliaryChoices, variantOf } from './variants.ts';

/** The API is the origin (and path prefix) this page was served from. */
const API_BASE = new URL('.', location.href).href.replace(/\/$/, '');

/** The caption-only model is the one that learned color words; the others never saw one. */
const EXAMPLE_PROMPTS = { caption: 'a red circle and a blue square', conditioned: 'a circle and a square' };
const captionOnly = (m: ModelInfo) => !m.conditions.grounding && !m.conditions.reference_image;

/** examples/*.json, embedded in the page by playground/build.ts */
const PRESETS = JSON.parse(byId<HTMLScriptElement>('examples').textContent || '[]') as { name: string; request: JobRequestInput }[];

/** How many past jobs the history shows. */
const HISTORY_LIMIT = 12;

interface ModelEntry {
  form: FormModel;
  boxes: GroundingBox[];
  editor: BoxEditor | null;
  /** object URL of the reference image, for its preview */
  preview: string | null;
  /** the reference image in a few words, for its preview's alt text ("style.png") */
  referenceName: string | null;
  /** where it came from, as a sentence ("Uploaded style.png.") */
  referenceStatus: string | null;
  /** whether its card is expanded; kept across re-renders */
  open: boolean;
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
  warnings: byId<HTMLDivElement>('job-warnings'),
  preview: byId<HTMLDivElement>('preview'),
  result: byId<HTMLElement>('result'),
  images: byId<HTMLDivElement>('images'),
  showBoxes: byId<HTMLInputElement>('show-boxes'),
  details: byId<HTMLDListElement>('result-details'),
  snippet: byId<HTMLPreElement>('request-snippet'),
  copy: byId<HTMLButtonElement>('copy-snippet'),
  copyStatus: byId<HTMLParagraphElement>('copy-status'),
  presets: byId<HTMLUListElement>('presets'),
  loadNote: byId<HTMLDivElement>('load-note'),
  historyList: byId<HTMLOListElement>('history-list'),
  historyStatus: byId<HTMLParagraphElement>('history-status'),
  historyRefresh: byId<HTMLButtonElement>('history-refresh'),
  announcer: byId<HTMLDivElement>('announcer'),
};

const errors = new ErrorDisplay(els.form, els.summary);
const warnings = new WarningDisplay(els.form, els.warnings);
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
    renderPresets();
    // another key's jobs must not stay on show
    els.historyList.replaceChildren();
    els.historyStatus.textContent = '';
    els.modelsStatus.textContent = '';
    showError(err, 'Could not load the models');
    return;
  }
  errors.clear();
  els.modelsStatus.textContent = `${catalog.length} model${catalog.length === 1 ? '' : 's'} installed.`;
  if (!catalog.some((m) => m.id === baseId)) {
    // the grounding model makes the best base: any other base re-decides the positions
    // until the last steps, while the grounding model keeps its boxes and takes the colors
    // and the background from the auxiliaries (docs/control-table.md); originals before variants
    const original = (m: ModelInfo) => !variantOf(m, catalog);
    baseId = (catalog.find((m) => m.conditions.grounding && original(m)) ?? catalog.find((m) => captionOnly(m) && original(m)) ?? catalog[0])?.id ?? '';
    auxIds.length = 0;
  }
  renderPicker();
  renderCards();
  renderSampling();
  renderPresets();
  void loadHistory();
}

// ---- 2. model picker and cards ------------------------------------------------------

const tokens = new TokenCounter({
  count: (modelId, text, signal) => client().countTokens(modelId, text, signal),
  // this API has no tokenizer (AWS): no counters for the rest of the session
  onUnavailable: () => els.cards.querySelectorAll<HTMLElement>('.token-count').forEach((c) => (c.hidden = true)),
});

/** "7 / 14 tokens" under a prompt field, kept up to date as the user types. */
function tokenCount(input: HTMLTextAreaElement, wrap: HTMLElement, apiField: string, modelId: string): void {
  const out = h('p', { class: 'token-count', id: uid('tokens'), attrs: { hidden: true } });
  wrap.append(out);
  input.setAttribute('aria-describedby', [input.getAttribute('aria-describedby'), out.id].filter(Boolean).join(' '));
  const update = () =>
    tokens.request(apiField, modelId, input.value, (c) => {
      if (!c) {
        out.hidden = true;
        return;
      }
      const d = describeTokenCount(c);
      out.textContent = d.text;
      out.classList.toggle('over', d.over);
      out.hidden = false;
    });
  input.addEventListener('input', update);
  update();
}

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
      referenceStatus: null,
      open: true,
    };
    entries.set(id, e);
  }
  e.form.role = role;
  e.form.grounding = info.conditions.grounding ? e.boxes : null;
  e.form.reference = info.conditions.reference_image ? (e.form.reference ?? { uploadId: null, data: null, scale: '' }) : null;
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
    ...catalog.map((m) => {
      const original = variantOf(m, catalog);
      return h('option', { attrs: { value: m.id, selected: m.id === baseId } }, original ? `${m.id} (a variant of ${original.id})` : m.id);
    }),
  );
  select.id = 'base-model';
  const maxAux = UI_LIMITS.maxModels - 1;
  const choices = auxiliaryChoices(baseId, auxIds, catalog);
  const boxes = choices.offered
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
            // a model just added is one to edit: its card opens
            const added = entries.get(m.id);
            if (input.checked && added) added.open = true;
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
      choices.left.length > 0 ? h('p', { class: 'hint' }, `Not offered: ${choices.left.map((l) => `${l.info.id}, ${l.reason}`).join('; ')}.`) : null,
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

/** One line that says what a collapsed card holds. */
function gist(e: ModelEntry): string {
  const f = e.form;
  const prompt = f.prompt.trim() === '' ? 'no prompt' : `“${f.prompt.length > 40 ? `${f.prompt.slice(0, 39)}…` : f.prompt}”`;
  const parts = [prompt];
  if (f.grounding) parts.push(`${f.grounding.length} box${f.grounding.length === 1 ? '' : 'es'}`);
  if (f.reference) parts.push(f.reference.uploadId !== null || f.reference.data !== null ? 'reference image' : 'no reference image yet');
  return parts.join(' · ');
}

function renderCards(): void {
  const models = selected();
  const { width, height } = size();
  els.cards.replaceChildren(
    ...models.map(({ info, entry: e }, i) => {
      const f = e.form;
      const path = `models[${i}]`;
      const summaryGist = h('span', { class: 'gist' }, gist(e));
      const regist = () => (summaryGist.textContent = gist(e));
      const prompt = h('textarea', { attrs: { rows: 2, maxlength: UI_LIMITS.maxPromptChars }, props: { value: f.prompt }, on: { input: () => ((f.prompt = prompt.value), regist()) } });
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
          onChange: () => (regist(), formChanged()),
          announce,
        });
        grounding = h('div', { class: 'grounding' }, h('h4', {}, 'Grounding boxes'), e.editor.element);
      } else {
        e.editor = null;
      }

      let reference: HTMLElement | null = null;
      if (info.conditions.reference_image && f.reference) {
        const ref = f.reference;
        const status = h('p', { class: 'hint', attrs: { role: 'status' } }, e.referenceStatus ?? 'No image chosen yet.');
        const preview = h('img', { class: 'ref-preview', attrs: { alt: e.referenceName ? `reference image ${e.referenceName}` : '', hidden: !e.preview, src: e.preview ?? undefined } });
        const file = h('input', { attrs: { type: 'file', accept: 'image/png,image/jpeg' } });
        file.addEventListener('change', () => void uploadReference(e, file, status, preview).then(() => (regist(), formChanged())));
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

      const promptField = field('Prompt', prompt, { apiField: `${path}.prompt` });
      tokenCount(prompt, promptField, `${path}.prompt`, info.id);
      const negativeField = field('Negative prompt', negative, { apiField: `${path}.negative_prompt` });
      tokenCount(negative, negativeField, `${path}.negative_prompt`, info.id);

      const role = i === 0 ? 'Base' : 'Auxiliary';
      // a <details> per model, so a job of three models can be read at a glance and edited one at a time
      const card = h(
        'details',
        { class: 'model-card', props: { open: e.open }, on: { toggle: () => (e.open = card.open) } },
        h('summary', {}, h('span', { class: 'role' }, role), ` ${info.id} `, summaryGist),
        h(
          'fieldset',
          { attrs: { 'data-field': path } },
          h('legend', { class: 'visually-hidden' }, `${role} ${info.id}`),
          info.description ? h('p', { class: 'hint' }, info.description) : null,
          promptField,
          negativeField,
          h(
            'div',
            { class: 'row' },
            field('Guidance scale', guidance, { apiField: `${path}.guidance_scale` }),
            field('p (deviation distance)', p, { apiField: `${path}.p`, hint: 'latent units; blank: the official default, scaled to the size' }),
            weightField,
          ),
          grounding,
          reference,
        ),
      );
      return card;
    }),
  );
  syncWeightMode();
  formChanged();
  warnings.replace();
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
    e.form.reference.data = null;
    e.referenceName = chosen.name;
    e.referenceStatus = `Uploaded ${chosen.name}.`;
    setPreview(e, URL.createObjectURL(chosen));
    preview.src = e.preview!;
    preview.alt = `reference image ${chosen.name}`;
    preview.hidden = false;
    status.textContent = e.referenceStatus;
  } catch (err) {
    e.form.reference.uploadId = null;
    e.form.reference.data = null;
    e.referenceName = null;
    e.referenceStatus = null;
    setPreview(e, null);
    preview.hidden = true;
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
  schedule: h('textarea', { attrs: { rows: '3', spellcheck: 'false', placeholder: 'none: the official algorithm' } }),
  steps: numberInput({ min: UI_LIMITS.minSteps, max: UI_LIMITS.maxSteps, integer: true, placeholder: String(UI_DEFAULTS.steps) }),
  seed: numberInput({ min: 0, max: UI_LIMITS.maxSeed, integer: true, placeholder: 'random' }),
  width: numberInput({ integer: true }),
  height: numberInput({ integer: true }),
  scheduler: h('select', {}, h('option', { attrs: { value: 'ddim' } }, 'DDIM'), h('option', { attrs: { value: 'euler' } }, 'Euler')),
  images: numberInput({ min: 1, max: UI_LIMITS.maxImages, integer: true, placeholder: '1' }),
  perModel: h('input', { attrs: { type: 'checkbox' }, props: { checked: true } }),
  solo: h('input', { attrs: { type: 'checkbox' } }),
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
  field('Per-step schedule (extension, JSON)', sampling.schedule, {
    apiField: 'aggregation.schedule',
    hint: '{"weights": [[a weight per model, base first] per window step], "p": [[…]]}, used as given; replaces ω or the weights (and p) of the models',
  }),
);
const weightNote = h('p', { class: 'hint' });
const perModelField = h(
  'div',
  { class: 'check' },
  h('label', {}, sampling.perModel, ' Also show each model’s own latent inside the aggregated run'),
  h('p', { class: 'hint' }, 'outputs.per_model: every model keeps running to the last step, so each one’s own trajectory is decoded too. During the window each is pulled toward the others: these are not the models run alone.'),
);

const soloCost = h('p', { class: 'hint', id: uid('hint') });
sampling.solo.setAttribute('aria-describedby', soloCost.id);
const soloField = h(
  'div',
  { class: 'check', attrs: { 'data-field': 'outputs.solo' } },
  h('label', {}, sampling.solo, ' Also run each model alone, to set beside the aggregated image'),
  soloCost,
);

/** What outputs.solo costs with the form as it is: the server's formula, in UNet evaluations. */
function syncSoloCost(): void {
  const est = estimateUnetEvals({ ...formState(), solo: true });
  const what = 'outputs.solo: each model also runs by itself from the same initial noise, without the others';
  soloCost.textContent = est ? `${what}: ${est.solo} more UNet evaluations, ${est.total} for the whole job.` : `${what}; it costs more UNet evaluations.`;
}

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
  // a job of one model is already the model alone
  soloField.hidden = n === 1;
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
          formChanged();
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
      soloField,
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
    solo: sampling.solo.checked,
    schedule: sampling.schedule.value,
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
  warnings.clear();
  if (els.key.value.trim() === '') {
    errors.show('The job was not sent', [{ field: 'header Authorization', message: 'enter an API key' }]);
    return;
  }
  if (selected().length === 0) {
    errors.show('The job was not sent', [], 'Load the models first: enter an API key.');
    return;
  }
  const { request, errors: local } = buildRequest(formState());
  formChanged();
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
  announce('Job submitted.');
  void loadHistory();
  await track(job);
}

/** Show a job's progress and follow it to its end; then its result, and the history again. */
async function track(job: JobRecord): Promise<void> {
  const abort = new AbortController();
  running = { id: job.id, abort };
  els.submit.disabled = true;
  els.cancel.disabled = false;
  els.result.hidden = true;
  els.jobId.textContent = `Job ${job.id}`;
  previews.clear();
  renderPreview(job);
  renderProgress(job);
  try {
    const done = await client().follow(job.id, {
      signal: abort.signal,
      onUpdate: (j) => renderProgress(j),
      onPreview: (p) => {
        if (previews.add(p)) renderPreview(job);
      },
    });
    renderProgress(done);
    renderResult(done);
  } catch (err) {
    if ((err as Error).name !== 'AbortError') showError(err, 'Lost track of the job');
  } finally {
    running = null;
    els.cancel.disabled = true;
    els.submit.disabled = false;
    void loadHistory();
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
    if (job.status === 'running') els.progressText.textContent = `Running: ${steps} · ${p ? phaseLabel(p) : 'starting'}${image}`;
    else if (job.status === 'succeeded') els.progressText.textContent = `Succeeded: ${steps}${job.timings.run_ms !== null ? ` in ${Math.round(job.timings.run_ms)} ms` : ''}`;
    else if (job.status === 'canceled') els.progressText.textContent = `Canceled${p ? ` at step ${p.step} of ${p.total}` : ' before it started'}.`;
    else els.progressText.textContent = `Failed: ${job.error ? describeProblem(job.error) : 'no reason given'}`;
  }
  els.progress.setAttribute('aria-valuetext', els.progressText.textContent ?? '');
  const key = `${job.status}|${p?.phase ?? ''}|${p?.model ?? ''}`;
  if (key !== lastStatus) {
    lastStatus = key;
    if (isTerminalStatus(job.status) || job.status === 'queued') announce(els.progressText.textContent ?? '');
    else announce(`Running: ${p ? phaseLabel(p) : 'starting'}`);
  }
  // the 202 has shaping's warnings; the runner adds its own (a prompt cut) as the job runs
  warnings.show(job.warnings ?? []);
}

// ---- 4b. live previews --------------------------------------------------------------

const previews = new PreviewFrames();
/** the side, in CSS pixels, preview pictures are scaled up to at most */
const PREVIEW_PX = 96;
/** one <img> per place a picture shows, reused from frame to frame, so a new frame never flashes blank while it decodes */
const previewImages = new Map<string, HTMLImageElement>();

function previewImage(key: string, p: PreviewPicture, scale: number, alt: string): HTMLImageElement {
  let img = previewImages.get(key);
  if (!img) previewImages.set(key, (img = h('img')));
  if (img.getAttribute('src') !== p.png) img.src = p.png;
  img.width = p.width * scale;
  img.height = p.height * scale;
  img.alt = alt;
  return img;
}

function renderPreview(job: JobRecord): void {
  if (previews.empty) {
    els.preview.hidden = true;
    els.preview.replaceChildren();
    previewImages.clear();
    return;
  }
  const order = job.spec.models.map((m) => m.id);
  const picture = (key: string, p: PreviewPicture, alt: string, caption: string): HTMLElement => {
    const scale = Math.max(1, Math.floor(PREVIEW_PX / Math.max(p.width, p.height)));
    return h('figure', { class: 'output' }, h('div', { class: 'frame' }, previewImage(key, p, scale, alt)), h('figcaption', {}, caption));
  };
  const row = (title: string, pictures: HTMLElement[]) => (pictures.length === 0 ? null : h('div', { class: 'output-row' }, h('h4', {}, title), h('div', { class: 'images' }, ...pictures)));
  const end = previews.windowEnd;
  els.preview.replaceChildren();
  append(els.preview, [
    h('h3', {}, `Live preview${previews.images > 1 ? ` · image ${previews.image} of ${previews.images}` : ''}`),
    h('p', { class: 'hint' }, PREVIEW_METHODS[previews.method] ?? `Pictures made by ${previews.method}.`),
    row('In the aggregated run', previews.aggregatedSinceWindowEnd(order).map((p) => picture(`now:${p.id}`, p, `Preview: ${pictureLabel(p)}`, `${p.id} · step ${p.step} of ${p.total}`))),
    end ? row(`End of the window: pulled together (step ${end.step} of ${end.total})`, end.pictures.map((p) => picture(`end:${p.id}`, p, `Preview at the end of the window: ${pictureLabel(p)}`, p.id))) : null,
    row('Each model alone', previews.pictures('solo', order).map((p) => picture(`solo:${p.id}`, p, `Preview: ${pictureLabel(p)}`, `${p.id} alone · step ${p.step} of ${p.total}`))),
  ]);
  els.preview.hidden = false;
}

// ---- 5. result ----------------------------------------------------------------------

els.showBoxes.addEventListener('change', () => els.images.classList.toggle('hide-boxes', !els.showBoxes.checked));

function renderResult(job: JobRecord): void {
  if (job.status !== 'succeeded') return;
  const spec = job.spec;
  const { width, height } = spec.sampler;
  const allBoxes = spec.models.flatMap((m) => m.grounding);
  const figure = (o: Output, label: string, caption: string, cssPx: number): HTMLElement => {
    // 32x32 images are tiny: scale up by whole pixels, as large as fits in the row's size
    const scale = Math.max(1, Math.floor(cssPx / Math.max(width, height)));
    // the aggregated image drew on every model's boxes; a model's own image (alone or inside the run) on its own
    const own = spec.models.find((m) => m.id === outputModel(o, job));
    const boxes = o.source === 'aggregated' ? allBoxes : (own?.grounding ?? []);
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
    const name = downloadName(job, o);
    const figcaption = h('figcaption', {}, caption, spec.outputs.images > 1 ? ` · image ${o.index + 1}` : '', ' · ', h('a', { attrs: { href: o.url, download: name } }, 'Download PNG'));
    // no wider than its image, so a row of three models alone stays one row
    figcaption.style.maxWidth = `${Math.max(width * scale, 128)}px`;
    return h('figure', { class: 'output' }, h('div', { class: 'frame' }, img, overlay), figcaption);
  };
  els.images.replaceChildren(
    ...outputRows(job).map(({ row, outputs }) =>
      h('div', { class: 'output-row' }, h('h3', {}, row.title), row.hint ? h('p', { class: 'hint' }, row.hint) : null, h('div', { class: 'images' }, ...outputs.map((o) => figure(o, row.label(o, job), row.caption(o, job), row.cssPx)))),
    ),
  );
  const t = job.timings;
  const ms = (v: number | null) => (v === null ? '–' : `${Math.round(v)} ms`);
  const rows: [string, string][] = [
    ['Seed', String(spec.sampler.seed)],
    ['Size', `${width}×${height}, ${spec.sampler.steps} steps, ${spec.sampler.scheduler}`],
    ...(spec.models.length > 1
      ? ([
          ['Weights', spec.models.map((m) => `${m.id} ${m.weight.toFixed(3)} (p ${m.p.toFixed(1)})`).join(', ') + ` · ${spec.aggregation.weights}`],
          ['Window', `steps ${spec.aggregation.window[0]} to ${spec.aggregation.window[1]}`],
        ] as [string, string][])
      : []),
    ['Time', `queued ${ms(t.queued_ms)}, ran ${ms(t.run_ms)} (${ms(t.onnx_ms)} in onnxruntime, ${ms(t.outside_onnx_ms)} outside)`],
    ['Usage', job.usage ? `${job.usage.unet_evals} UNet evaluations, ${job.usage.images} image${job.usage.images === 1 ? '' : 's'}, ${ms(job.usage.runner_ms)} runner time` : '–'],
    ...(spec.estimate.solo_unet_evals
      ? ([['Each model alone', `${spec.estimate.solo_unet_evals} of the ${spec.estimate.unet_evals} UNet evaluations estimated for the job`]] as [string, string][])
      : []),
    ['Links expire', new Date(job.outputs[0]?.expires_at ?? Date.now()).toLocaleTimeString()],
  ];
  els.details.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  els.result.hidden = false;
}

// ---- 6. the request, as JSON and as snippets ----------------------------------------

const snippetKinds = [...els.form.querySelectorAll<HTMLInputElement>('input[name="snippet-kind"]')];

/** The form changed: the request and its snippets follow. */
function formChanged(): void {
  if (selected().length === 0) {
    els.snippet.textContent = 'Load the models first: enter an API key.';
    return;
  }
  syncSoloCost();
  // shown even while some field is wrong: the server's answer to it is what Generate would get
  const { request } = buildRequest(formState());
  const kind = snippetKinds.find((r) => r.checked)?.value ?? 'json';
  els.snippet.textContent = kind === 'curl' ? curlSnippet(API_BASE, request) : kind === 'fetch' ? fetchSnippet(API_BASE, request) : prettyJson(request);
  els.copyStatus.textContent = '';
}

// every edit bubbles up to the form; canvas drags and loads call formChanged themselves
els.form.addEventListener('input', () => formChanged());
els.form.addEventListener('change', () => formChanged());

els.copy.addEventListener('click', async () => {
  const text = els.snippet.textContent ?? '';
  try {
    await navigator.clipboard.writeText(text);
    els.copyStatus.textContent = 'Copied.';
  } catch {
    // no clipboard (a plain-http page that is not localhost): select it for Ctrl+C
    getSelection()?.selectAllChildren(els.snippet);
    els.snippet.focus();
    els.copyStatus.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
  }
});

// ---- 7. presets and loading a whole job into the form ------------------------------

function describePreset(request: JobRequestInput): string {
  const boxes = request.models.reduce((n, m) => n + (m.grounding?.length ?? 0), 0);
  const images = request.models.filter((m) => m.reference_image).length;
  const extras = [boxes > 0 ? `${boxes} box${boxes === 1 ? '' : 'es'}` : '', images > 0 ? 'a reference image' : ''].filter(Boolean);
  return `${request.models.map((m) => m.id).join(' + ')}${extras.length > 0 ? `; ${extras.join(', ')}` : ''}`;
}

function renderPresets(): void {
  els.presets.replaceChildren(
    ...PRESETS.map((p) => {
      const hintId = uid('preset-hint');
      const check = catalog.length > 0 ? formFromRequest(p.request, catalog) : null;
      const why = catalog.length === 0 ? 'load the models first' : check && !check.ok ? check.message : describePreset(p.request);
      const button = h(
        'button',
        {
          class: 'preset',
          attrs: { type: 'button', 'aria-describedby': hintId, disabled: !check?.ok },
          on: { click: () => loadPreset(p.name, p.request) },
        },
        p.name,
      );
      return h('li', {}, button, h('p', { class: 'hint', id: hintId }, why));
    }),
  );
}

/** Show what a load left out, or clear the note. */
function noteLoad(title: string, notes: string[] = []): void {
  els.loadNote.replaceChildren(h('p', {}, title));
  if (notes.length > 0) els.loadNote.append(h('ul', {}, ...notes.map((n) => h('li', {}, n))));
}

function loadPreset(name: string, request: JobRequestInput): void {
  const loaded = formFromRequest(request, catalog);
  applyForm(loaded, `examples/${name}.json`, () => ({ name: `from examples/${name}.json`, status: `The image from examples/${name}.json.` }));
}

/**
 * Put a whole job into the form: models, boxes, reference images, sampling. Cards start
 * collapsed (their summaries say what they hold), so a job of three models fits on a screen.
 */
function applyForm(loaded: LoadResult, what: string, referenceOf: (m: FormModel) => { name: string; status: string }): boolean {
  errors.clear();
  if (!loaded.ok) {
    noteLoad(`Could not load ${what}: it ${loaded.message}.`);
    return false;
  }
  const state = loaded.state;
  baseId = state.models[0]!.id;
  auxIds.splice(0, auxIds.length, ...state.models.slice(1).map((m) => m.id));
  for (const m of state.models) {
    const e = entry(m.id, m.role);
    e.boxes = m.grounding ? m.grounding.map((g) => ({ phrase: g.phrase, box: [...g.box] })) : [];
    e.form = { ...m, grounding: null };
    const ref = m.reference;
    if (ref && (ref.uploadId !== null || ref.data !== null)) {
      const { name, status } = referenceOf(m);
      e.referenceName = name;
      e.referenceStatus = status;
      setPreview(e, ref.data !== null ? objectUrlOfBase64(ref.data) : null);
    } else {
      e.referenceName = null;
      e.referenceStatus = null;
      setPreview(e, null);
    }
    e.open = false;
  }
  sampling.weightMode = state.weightMode;
  for (const r of weightRadios) r.checked = r.value === state.weightMode;
  sampling.omega.value = state.omega;
  sampling.omega2.value = state.omega2;
  sampling.windowStart.value = state.windowStart;
  sampling.windowEnd.value = state.windowEnd;
  sampling.clamp.checked = state.clamp;
  sampling.steps.value = state.steps;
  sampling.seed.value = state.seed;
  sampling.width.value = state.width;
  sampling.height.value = state.height;
  sampling.scheduler.value = state.scheduler;
  sampling.images.value = state.images;
  sampling.perModel.checked = state.perModel;
  sampling.solo.checked = state.solo;
  sampling.schedule.value = state.schedule;
  warnings.clear();
  renderPicker();
  renderCards();
  renderSampling();
  noteLoad(`Loaded ${what}.`, loaded.notes);
  announce(`Loaded ${what}.`);
  return true;
}

function setPreview(e: ModelEntry, url: string | null): void {
  if (e.preview) URL.revokeObjectURL(e.preview);
  e.preview = url;
}

/** An inline image as an object URL: its bytes once, rather than a long data: string kept in the DOM. */
function objectUrlOfBase64(base64: string): string | null {
  try {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return URL.createObjectURL(new Blob([bytes], { type: bytes[0] === 0xff ? 'image/jpeg' : 'image/png' }));
  } catch {
    return null; // not base64: the server will say so when the job is sent
  }
}

// ---- 8. history ---------------------------------------------------------------------

const shortTime = (iso: string): string => new Date(iso).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });

let historyLoad = 0;
async function loadHistory(): Promise<void> {
  if (els.key.value.trim() === '') return;
  const mine = ++historyLoad;
  let jobs: JobRecord[];
  try {
    jobs = (await client().list({ limit: HISTORY_LIMIT })).data;
  } catch (err) {
    if (mine === historyLoad) els.historyStatus.textContent = `Could not load the recent jobs: ${err instanceof ApiError ? describeProblem(err.problem) : (err as Error).message}`;
    return;
  }
  // a slower, older answer must not overwrite a newer one
  if (mine !== historyLoad) return;
  els.historyStatus.textContent = jobs.length === 0 ? 'No jobs yet: the jobs this key submits show here.' : jobs.length === 1 ? 'The one job of this key.' : `The ${jobs.length} most recent jobs of this key, newest first.`;
  els.historyList.replaceChildren(...jobs.map(historyItem));
}

function historyItem(job: JobRecord): HTMLElement {
  const thumb = job.outputs.find((o) => o.source === 'aggregated' && o.kind === 'image');
  const models = job.spec.models.map((m) => m.id).join(' + ');
  const button = h(
    'button',
    { class: 'history-item', attrs: { type: 'button', 'data-job': job.id }, on: { click: () => void openJob(job.id) } },
    thumb ? h('img', { attrs: { src: thumb.url, alt: '', width: 48, height: 48 } }) : h('span', { class: `no-thumb status-${job.status}`, attrs: { 'aria-hidden': 'true' } }, job.status === 'succeeded' ? '' : job.status.slice(0, 1).toUpperCase()),
    h(
      'span',
      { class: 'history-text' },
      h('span', { class: 'history-title' }, `${job.status} · ${shortTime(job.created_at)}`),
      h('span', { class: 'history-models' }, models),
      h('span', { class: 'history-prompt' }, job.spec.models[0]!.prompt),
      h('span', { class: 'visually-hidden' }, ` ${job.id}`),
    ),
  );
  return h('li', {}, button);
}

/** Fill the form with a past job, and show where it stands (unless another job is being followed). */
async function openJob(id: string): Promise<void> {
  let job: JobRecord;
  try {
    // read again: the list's signed URLs may have expired, and the job may have moved on
    job = await client().job(id);
  } catch (err) {
    showError(err, `Could not open job ${id}`);
    return;
  }
  const loaded = formFromSpec(job.spec, catalog);
  const ok = applyForm(loaded, `job ${job.id}`, (m) => ({ name: `from job ${job.id}`, status: `The image job ${job.id} used (upload ${m.reference?.uploadId ?? 'inline'}); sent again by its id.` }));
  if (!ok || running) return;
  if (isTerminalStatus(job.status)) {
    els.jobId.textContent = `Job ${job.id}`;
    els.cancel.disabled = true;
    // its previews went by while it ran; another job's must not stay
    previews.clear();
    renderPreview(job);
    renderProgress(job);
    els.result.hidden = true;
    renderResult(job);
  } else {
    void track(job);
  }
}

els.historyRefresh.addEventListener('click', () => void loadHistory());

// ---- start --------------------------------------------------------------------------

renderPresets();

renderPicker();
void offerLocalKey().then(loadModels);
