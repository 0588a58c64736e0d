/**
 * The AMDM pipeline over ONNX model packages, orchestrated in the open as diffusers'
 * pipelines are: 1. check inputs, 2. encode conditions, 3. timesteps, 4. latents,
 * 5. denoising loop (AMDM math from shared/amdm/math.ts), 6. decode. One designated base model
 * (spec.models[0]) and any number of auxiliaries of the same ecosystem.
 *
 * Once the deviation window has ended the auxiliary models can no longer influence the
 * base, so they stop there (N·(end+1) + (S-end-1) UNet calls instead of N·S), unless the
 * request asked for every model's own image. The base output is bit-identical either way
 * (tested), because the base's arithmetic never reads an auxiliary's state after the window.
 *
 * outputs.solo runs every model alone as well, from the noise it started from in the
 * aggregated run. Before the window's first step every trajectory is the model's own, so
 * the solo runs fork there and reuse those steps (N·(S - first) extra UNet calls); the
 * aggregated arithmetic never reads them, so its images do not change.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AGGREGATING_SCHEDULERS, type JobSpec, type JobWarning, type ModelInfo, type SpecModel } from '../../shared/contract/index.ts';
import { aggregate, deviationMu, firstAggregatedStep, guide, inWindow, lastInfluentialStep, pullToward, scheduledAt } from '../../shared/amdm/math.ts';
import { encodeConditions } from './conditions/index.ts';
import { encodePng, modelToRgb } from './image.ts';
import { LoadedModel, SessionCache } from './loaded-model.ts';
import { checkOneEcosystem, isModelPackage, modelInfo, readModelPackage, type ModelPackage } from './model-package.ts';
import { jobNoise } from './job-noise.ts';
import { OrtClock, type Feed, type OrtOptions, type PreparedFeed } from './onnx.ts';
import { SCHEDULER_REGISTRY, type SchedulerRegistry } from './schedulers/index.ts';
import { EngineInputError, type Engine, type EngineOutput, type EngineResult, type GenerateOptions, type PreviewFrame } from './types.ts';
import type { Scheduler } from './schedulers/scheduler.ts';

/**
 * Previews decode with the VAE, which for small images costs a fraction of a UNet call
 * (bench:engine measures it). Above this side (pixels) a decode costs as much as several
 * UNet calls and the picture would bloat the event stream, so larger jobs (SD 1.5 at 512)
 * get no previews.
 */
export const PREVIEW_MAX_SIDE = 64;

export interface EngineOptions extends OrtOptions {
  /** folders holding model packages (each subfolder with amdm.json or model_index.json) */
  modelsDirs: string[];
  /**
   * Scheduler implementations by name; the registry (schedulers/index.ts) unless given.
   * Requests can only name the contract's SCHEDULER_NAMES, so an extra one here is for
   * callers that build a JobSpec themselves.
   */
  schedulers?: SchedulerRegistry;
}

/** What a model needs at every UNet call, computed and converted to tensors once per job. */
interface Conditions {
  /** encoder_hidden_states [2, L, D] (unconditional half first) and the extra inputs */
  feeds: Record<string, PreparedFeed>;
  /** inputs that change with the step index (scheduled sampling's gate), by UNet input name */
  stepFeeds: [name: string, at: (step: number) => Feed][];
  guidance: number;
}

export async function createEngine(options: EngineOptions): Promise<AmdmEngine> {
  if (!options.modelsDirs?.length) throw new Error('createEngine: modelsDirs must name at least one folder of model packages');
  return new AmdmEngine(options);
}

export class AmdmEngine implements Engine {
  private readonly cache: SessionCache;
  private packages: Promise<Map<string, ModelPackage>> | null = null;
  private readonly loaded = new Map<string, Promise<LoadedModel>>();
  private readonly schedulers: SchedulerRegistry;
  private disposed = false;

  constructor(private readonly options: EngineOptions) {
    this.cache = new SessionCache(options);
    this.schedulers = options.schedulers ?? SCHEDULER_REGISTRY;
  }

  /** Model packages by id, read once. */
  private scan(): Promise<Map<string, ModelPackage>> {
    this.packages ??= (async () => {
      const found = new Map<string, ModelPackage>();
      for (const root of this.options.modelsDirs) {
        const entries = await readdir(root, { withFileTypes: true });
        for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
          const dir = join(root, e.name);
          if (!e.isDirectory() || !(await isModelPackage(dir))) continue;
          const pkg = await readModelPackage(dir);
          if (found.has(pkg.id)) throw new Error(`two model packages have the id "${pkg.id}": ${found.get(pkg.id)!.dir} and ${dir}`);
          found.set(pkg.id, pkg);
        }
      }
      return found;
    })();
    return this.packages;
  }

  async catalog(): Promise<ModelInfo[]> {
    const pkgs = await this.scan();
    return [...pkgs.values()].map((p) => modelInfo(p, (p.text.maxLength ?? 77) - 2));
  }

  /** Sessions of a model, built once and kept across jobs. */
  async model(id: string, field = 'models[0].id'): Promise<LoadedModel> {
    if (this.disposed) throw new Error('the engine was disposed');
    let m = this.loaded.get(id);
    if (!m) {
      const pkg = (await this.scan()).get(id);
      if (!pkg) throw new EngineInputError(`unknown model "${id}"; installed: ${[...(await this.scan()).keys()].join(', ')}`, field);
      m = LoadedModel.load(pkg, this.cache);
      m.catch(() => this.loaded.delete(id));
      this.loaded.set(id, m);
    }
    return m;
  }

  /**
   * Build every installed model's sessions now (the runner does this at start), one model
   * after another: a full-size model's session build briefly takes about twice its weights,
   * and two at once could take more memory than the machine has.
   */
  async warmUp(): Promise<void> {
    for (const id of (await this.scan()).keys()) await this.model(id);
  }

  async generate(spec: JobSpec, opts: GenerateOptions = {}): Promise<EngineResult> {
    const tLoad = performance.now();
    const clock = new OrtClock();

    // 1. check inputs
    // one at a time, as warmUp does
    const models: LoadedModel[] = [];
    for (const [k, m] of spec.models.entries()) models.push(await this.model(m.id, `models[${k}].id`));
    const t0 = performance.now();
    const loadMs = t0 - tLoad;
    try {
      checkOneEcosystem(models.map((m) => m.pkg));
    } catch (err) {
      throw new EngineInputError((err as Error).message, 'models');
    }
    const base = models[0]!;
    const N = models.length;
    const { steps, width, height, scheduler: schedulerName } = spec.sampler;
    const [start, end] = spec.aggregation.window;
    const f = base.pkg.vae.scaleFactor;
    if (width % f !== 0 || height % f !== 0) {
      throw new EngineInputError(`width and height must be multiples of ${f} for "${base.pkg.id}" (got ${width}x${height})`, 'sampler.width');
    }
    const createScheduler = Object.hasOwn(this.schedulers, schedulerName) ? this.schedulers[schedulerName] : undefined;
    if (!createScheduler) throw new EngineInputError(`unknown scheduler "${schedulerName}"; allowed: ${Object.keys(this.schedulers).join(', ')}`, 'sampler.scheduler');
    if (N > 1 && !(AGGREGATING_SCHEDULERS as readonly string[]).includes(schedulerName)) {
      throw new EngineInputError(`aggregation needs the ${AGGREGATING_SCHEDULERS.join(' or ')} scheduler`, 'sampler.scheduler');
    }
    if (N > 1 && !(start >= 0 && start <= end && end < steps)) {
      throw new EngineInputError(`window must satisfy 0 <= start <= end < steps (got [${start}, ${end}], steps ${steps})`, 'aggregation.window');
    }
    const sch = spec.aggregation.schedule;
    for (const field of ['weights', 'p'] as const) {
      const table = sch?.[field];
      if (table && !(N > 1 && start >= 1 && table.length === end - start + 1 && table.every((row) => row.length === N && row.every(Number.isFinite)))) {
        throw new EngineInputError(`schedule.${field} needs ${end - start + 1} rows of ${N} finite numbers for window [${start}, ${end}] (the window starting at 1 or later)`, `aggregation.schedule.${field}`);
      }
    }
    const C = base.pkg.vae.latentChannels;
    const h = height / f;
    const w = width / f;
    const latentSize = C * h * w;

    // 2. encode conditions, once for all images
    const warnings: JobWarning[] = [];
    const warn = (w: JobWarning) => {
      warnings.push(w);
      opts.onWarning?.(w);
    };
    const conds: Conditions[] = [];
    for (let k = 0; k < N; k++) {
      this.promptWarnings(models[k]!, spec.models[k]!, k, warn);
      conds.push(await this.conditions(models[k]!, spec.models[k]!, k, opts.referenceImages?.[k] ?? null, steps, clock));
    }

    // 3. timesteps
    const scheduler = createScheduler(base.pkg.scheduler);
    const timesteps = scheduler.setTimesteps(steps);
    const delta = Math.floor(base.pkg.scheduler.num_train_timesteps / steps);
    const last = lastInfluentialStep(steps, spec.aggregation.window);
    const keepAll = spec.outputs.per_model || opts.officialSchedule === true || N === 1;
    const constants = { weights: spec.models.map((m) => m.weight), p: spec.models.map((m) => m.p) };
    const solo = spec.outputs.solo === true && N > 1;
    const fork = firstAggregatedStep(steps, spec.aggregation.window);
    const preview = opts.preview && width <= PREVIEW_MAX_SIDE && height <= PREVIEW_MAX_SIDE ? opts.preview : null;
    let lastFrame = -Infinity;
    const alphaBarAt = (t: number) => (t >= 0 ? scheduler.schedule.alphasCumprod[t]! : scheduler.config.set_alpha_to_one ? 1 : scheduler.schedule.alphasCumprod[0]!);
    const frame = async (f: Omit<PreviewFrame, 'models' | 'method'>, latents: { id: string; run: 'aggregated' | 'solo'; x: Float32Array; eps: Float32Array; t: number; step: { predOriginalSample: Float32Array } | null }[]) => {
      const pictures: PreviewFrame['models'] = [];
      for (const l of latents) {
        const x0 = this.previewLatent(scheduler, l.x, l.eps, l.t - delta, alphaBarAt, l.step);
        const rgb = await this.decodeRgb(base, x0, [C, h, w], width, height, clock);
        pictures.push({ id: l.id, run: l.run, width, height, png: encodePng(rgb) });
      }
      lastFrame = performance.now();
      preview!.onFrame({ ...f, method: 'vae_decode_x0', models: pictures });
    };

    const outputs: EngineOutput[] = [];
    let unetEvals = 0;
    const unetClock = new OrtClock();
    const noise = jobNoise(spec, [C, h, w]);
    const images = spec.outputs.images;
    for (let j = 0; j < images; j++) {
      // 4. latents: every model from its own seeded noise (drawn even when given, so the
      // eta noise that follows is the same either way)
      const drawn = noise.initial(j);
      let x: (Float32Array | null)[] = models.map((_, k) => {
        const given = opts.initialLatents?.[j]?.[k];
        if (given) {
          if (given.length !== latentSize) throw new EngineInputError(`initial latent ${k} has ${given.length} values; expected ${latentSize}`, 'latents');
          return Float32Array.from(given);
        }
        const z = Float32Array.from(drawn[k]!);
        const sigma = scheduler.initNoiseSigma;
        for (let i = 0; i < z.length; i++) z[i] = z[i]! * sigma;
        return z;
      });
      let epsPrev: (Float32Array | null)[] = models.map(() => null);
      // where the solo runs start: every model's latent entering step `fork`, its own until then
      let forked: Float32Array[] | null = null;

      // 5. denoising loop
      for (let i = 0; i < timesteps.length; i++) {
        if (opts.signal?.aborted) throw abortError(opts.signal);
        const t = timesteps[i]!;
        const active = keepAll || i <= last ? models.map((_, k) => k) : [0];
        const eps: (Float32Array | null)[] = models.map(() => null);
        const y: (Float32Array | null)[] = models.map(() => null);
        const stepped: ({ predOriginalSample: Float32Array } | null)[] = models.map(() => null);
        for (const k of active) {
          // 5.1 guided noise prediction of model k at its own latent (one batched CFG call)
          const input = scheduler.scaleModelInput(x[k]!, i);
          eps[k] = await this.predict(models[k]!, conds[k]!, input, t, i, [C, h, w], clock, unetClock);
          unetEvals++;
          // 5.2 scheduler step (the eta-noise stream is drawn only by a scheduler that adds noise)
          const out = scheduler.step(eps[k]!, i, x[k]!, { eta: spec.sampler.eta, noise: () => noise.eta(j, i, k) });
          y[k] = out.prevSample;
          stepped[k] = out;
        }
        if (N > 1 && inWindow(i, spec.aggregation.window)) {
          // 5.3 spherical aggregation, 5.4 deviation optimization from the stale mu
          // (the weights and p of this step: the models' own, or the schedule's if the job has one)
          const at = scheduledAt(i, spec.aggregation.window, constants, spec.aggregation.schedule);
          const xbar = aggregate(y as Float32Array[], at.weights);
          const s = t + delta;
          if (s >= base.pkg.scheduler.num_train_timesteps) throw new Error(`deviation step needs timestep ${s}, outside the schedule`);
          const alphaS = scheduler.schedule.alphas[s]!;
          const alphaBarS = scheduler.schedule.alphasCumprod[s]!;
          x = models.map((_, k) => pullToward(xbar, deviationMu(x[k]!, epsPrev[k]!, alphaS, alphaBarS), at.p[k]!, spec.aggregation.clamp));
        } else {
          x = y; // models that stopped after the window stay null
        }
        epsPrev = eps;
        if (solo && i === fork - 1) forked = x.map((v) => Float32Array.from(v!));
        opts.onStepLatents?.(j, i, x);
        const phase = N > 1 && i <= last ? 'aggregating' : 'base_only';
        opts.onProgress?.({ image: j + 1, images, step: i + 1, total: steps, phase, unetEvals });
        const windowEnd = N > 1 && i === spec.aggregation.window[1] && inWindow(i, spec.aggregation.window);
        if (preview && i < steps - 1 && (i === 0 || windowEnd || performance.now() - lastFrame >= preview.everyMs)) {
          await frame(
            { image: j + 1, images, step: i + 1, total: steps, phase, windowEnd },
            active.map((k) => ({ id: spec.models[k]!.id, run: 'aggregated' as const, x: x[k]!, eps: eps[k]!, t, step: inWindow(i, spec.aggregation.window) ? null : stepped[k]! })),
          );
        }
      }

      // 6. decode
      opts.onProgress?.({ image: j + 1, images, step: steps, total: steps, phase: 'decoding', unetEvals });
      outputs.push({ ...(await this.decode(base, x[0]!, [C, h, w], width, height, 'aggregated', j, clock)), model: spec.models[0]!.id });
      if (spec.outputs.per_model) {
        for (let k = 1; k < N; k++) outputs.push({ ...(await this.decode(base, x[k]!, [C, h, w], width, height, spec.models[k]!.id, j, clock)), model: spec.models[k]!.id });
      }

      // 7. solo: every model alone from the fork, as if the others were not there
      if (solo) {
        for (let k = 0; k < N; k++) {
          const id = spec.models[k]!.id;
          let xs = forked![k]!;
          for (let i = fork; i < timesteps.length; i++) {
            if (opts.signal?.aborted) throw abortError(opts.signal);
            const t = timesteps[i]!;
            const eps = await this.predict(models[k]!, conds[k]!, scheduler.scaleModelInput(xs, i), t, i, [C, h, w], clock, unetClock);
            unetEvals++;
            const out = scheduler.step(eps, i, xs, { eta: spec.sampler.eta, noise: () => noise.soloEta(j, i, k) });
            xs = out.prevSample;
            opts.onProgress?.({ image: j + 1, images, step: i + 1, total: steps, phase: 'solo', model: id, unetEvals });
            if (preview && i < steps - 1 && performance.now() - lastFrame >= preview.everyMs) {
              await frame({ image: j + 1, images, step: i + 1, total: steps, phase: 'solo', windowEnd: false }, [{ id, run: 'solo', x: xs, eps, t, step: out }]);
            }
          }
          outputs.push({ ...(await this.decode(base, xs, [C, h, w], width, height, 'solo', j, clock)), model: id });
        }
      }
      if (spec.outputs.latents) {
        const lat = x[0]!;
        outputs.push({ source: 'aggregated', model: spec.models[0]!.id, index: j, kind: 'latent', contentType: 'application/octet-stream', bytes: littleEndianBytes(lat) });
      }
    }
    const totalMs = performance.now() - t0;
    return { outputs, unetEvals, timings: { loadMs, totalMs, onnxMs: clock.ms, outsideOnnxMs: totalMs - clock.ms, unetMs: unetClock.ms }, warnings };
  }

  /** A prompt longer than the model reads is cut: say so, with how much was kept. */
  private promptWarnings(m: LoadedModel, s: SpecModel, k: number, warn: (w: JobWarning) => void): void {
    const room = m.tokenizer.maxLength - 2;
    for (const [field, text, what] of [['prompt', s.prompt, 'prompt'], ['negative_prompt', s.negative_prompt, 'negative prompt']] as const) {
      const e = m.tokenizer.encode(text);
      if (!e.truncated) continue;
      warn({
        code: 'prompt_truncated',
        field: `models[${k}].${field}`,
        message: `the ${what} has ${e.tokenCount} tokens but model "${s.id}" reads ${room}: the first ${room} of ${e.tokenCount} were kept, the last ${e.tokenCount - room} dropped`,
      });
    }
  }

  /**
   * The latent a preview shows: x denoised to an estimate of the final latent with the
   * model's latest noise prediction, at the noise level x is at (timestep prevT). For a
   * latent that just came out of a plain scheduler step this is the step's own prediction,
   * which other prediction types and schedulers (v-prediction, Euler) need.
   */
  private previewLatent(scheduler: Scheduler, x: Float32Array, eps: Float32Array, prevT: number, alphaBarAt: (t: number) => number, step: { predOriginalSample: Float32Array } | null): Float32Array {
    if (step || scheduler.config.prediction_type !== 'epsilon') return step?.predOriginalSample ?? x;
    const a = alphaBarAt(prevT);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    const x0 = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) x0[i] = (x[i]! - sb * eps[i]!) / sa;
    return x0;
  }

  /** One CFG-batched UNet call at step index i: eps = eps_uncond + g (eps_cond - eps_uncond). */
  private async predict(m: LoadedModel, c: Conditions, x: Float32Array, t: number, i: number, chw: number[], clock: OrtClock, unetClock: OrtClock): Promise<Float32Array> {
    const sample = new Float32Array(x.length * 2);
    sample.set(x, 0);
    sample.set(x, x.length);
    const ts = m.timestepInput;
    const timestep: Feed = ts.shape.length === 0 ? { data: [t], dims: [] } : { data: [t, t], dims: [2] };
    const feeds: Record<string, Feed | PreparedFeed> = { sample: { data: sample, dims: [2, ...chw] }, timestep, ...c.feeds };
    for (const [name, at] of c.stepFeeds) feeds[name] = at(i);
    const before = clock.ms;
    const out = await m.unet.run(feeds, clock);
    unetClock.ms += clock.ms - before;
    unetClock.calls++;
    return guide(out.out_sample!.data, c.guidance);
  }

  /** 2. the model's conditions, as UNet feeds converted to tensors once for every step */
  private async conditions(m: LoadedModel, s: SpecModel, k: number, refBytes: Uint8Array | null, steps: number, clock: OrtClock): Promise<Conditions> {
    const { encoderHiddenStates, inputs, stepInputs } = await encodeConditions(m, s, `models[${k}]`, refBytes, steps, clock);
    const feeds: Record<string, PreparedFeed> = { encoder_hidden_states: m.unet.prepare('encoder_hidden_states', encoderHiddenStates) };
    const stepFeeds: Conditions['stepFeeds'] = [];
    // each declared UNet input gets what its source's condition produced (the package was
    // refused if a source's condition section is missing)
    for (const e of m.pkg.extraInputs) {
      const feed = inputs.get(e.source);
      if (feed) feeds[e.name] = m.unet.prepare(e.name, feed);
      const at = stepInputs.get(e.source);
      if (at) stepFeeds.push([e.name, at]);
    }
    return { feeds, stepFeeds, guidance: s.guidance_scale };
  }

  private async decode(base: LoadedModel, latent: Float32Array, chw: number[], width: number, height: number, source: string, index: number, clock: OrtClock): Promise<EngineOutput> {
    const rgb = await this.decodeRgb(base, latent, chw, width, height, clock);
    return { source, index, kind: 'image', contentType: 'image/png', bytes: encodePng(rgb), width, height };
  }

  private async decodeRgb(base: LoadedModel, latent: Float32Array, chw: number[], width: number, height: number, clock: OrtClock) {
    const scaled = new Float32Array(latent.length);
    const inv = 1 / base.pkg.vae.scalingFactor;
    for (let i = 0; i < latent.length; i++) scaled[i] = latent[i]! * inv;
    const out = (await base.vaeDecoder.run({ latent_sample: { data: scaled, dims: [1, ...chw] } }, clock)).sample!;
    return modelToRgb(out.data, width, height);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.loaded.clear();
    await this.cache.dispose();
  }
}

function littleEndianBytes(a: Float32Array): Uint8Array {
  const out = new Uint8Array(a.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < a.length; i++) view.setFloat32(i * 4, a[i]!, true);
  return out;
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return new DOMException(typeof reason === 'string' ? reason : 'the job was canceled', 'AbortError');
}
