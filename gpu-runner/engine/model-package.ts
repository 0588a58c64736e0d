/**
 * Model packages: a folder in the diffusers/optimum ONNX layout (model_index.json,
 * unet/, text_encoder/, vae_decoder/, tokenizer/, scheduler/), plus, for our own models,
 * a manifest `amdm.json` that names the ecosystem, maps components to folders (shared parts
 * may live in another package) and declares any extra UNet inputs and which request field
 * fills them. A plain `optimum-cli export onnx` folder has no manifest and still loads:
 * its ecosystem is inferred from its configs.
 *
 * Everything here reads JSON only; graph-level checks (input names, dtypes, shapes against
 * the manifest) happen when sessions are built (loaded-model.ts).
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { SCHEDULER_NAMES, type ModelInfo } from '../../shared/contract/index.ts';
import { CONDITION_LIST, CONDITION_SOURCES } from './conditions/index.ts';
import { parseSchedulerConfig, type SchedulerConfig } from './schedulers/config.ts';

/** Ecosystems the engine knows: models aggregate only within one. */
export const ECOSYSTEMS: Record<string, { description: string; latentChannels: number; vaeScaleFactor: number; betaSchedule: string; betaStart: number; betaEnd: number }> = {
  'shapes-v1': { description: 'the built-in shapes family (32x32, 4x8x8 latents)', latentChannels: 4, vaeScaleFactor: 4, betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012 },
  sd15: { description: 'Stable Diffusion 1.x and its fine-tunes', latentChannels: 4, vaeScaleFactor: 8, betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012 },
};

const ExtraInput = z
  .object({
    name: z.string().min(1),
    dtype: z.enum(['float32', 'float16', 'int32', 'int64']),
    shape: z.array(z.union([z.number().int().positive(), z.literal('batch')])),
    source: z.enum(CONDITION_SOURCES),
  })
  .strict();
export type ExtraInput = z.output<typeof ExtraInput>;

const COMPONENTS = ['unet', 'text_encoder', 'tokenizer', 'vae_decoder', 'vae_encoder', 'scheduler', 'image_encoder', 'image_proj'] as const;
type Component = (typeof COMPONENTS)[number];

export const Manifest = z
  .object({
    schema: z.literal('amdm.model/v1'),
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
    description: z.string().default(''),
    ecosystem: z.string(),
    components: z
      .object({
        unet: z.string(),
        text_encoder: z.string(),
        tokenizer: z.string(),
        vae_decoder: z.string(),
        scheduler: z.string(),
        vae_encoder: z.string().optional(),
        image_encoder: z.string().optional(),
        image_proj: z.string().optional(),
      })
      .strict(),
    sizes: z
      .object({
        default: z.tuple([z.number().int().positive(), z.number().int().positive()]),
        min: z.number().int().positive(),
        max: z.number().int().positive(),
        multiple: z.number().int().positive(),
        /** sides the model was trained at; default the UNet's sample_size × the VAE's scale factor */
        trained: z.object({ min: z.number().int().positive(), max: z.number().int().positive() }).strict().optional(),
      })
      .strict()
      .optional(),
    unet_inputs: z.array(ExtraInput).default([]),
    // one optional section per condition (conditions/): its presence says the model takes it
    ...Object.fromEntries(CONDITION_LIST.map((c) => [c.name, c.manifest.optional()])),
  })
  .strict();
export type Manifest = z.output<typeof Manifest>;

export interface ModelPackage {
  id: string;
  dir: string;
  /** null for a plain optimum export */
  manifestPath: string | null;
  ecosystem: string;
  description: string;
  /** absolute folder of each component present */
  components: Partial<Record<Component, string>>;
  scheduler: SchedulerConfig;
  vae: { scalingFactor: number; latentChannels: number; scaleFactor: number; decoderFile: string };
  unet: { inChannels: number; sampleSize: number; file: string };
  text: { maxLength: number | undefined; hiddenSize: number | undefined; file: string };
  extraInputs: ExtraInput[];
  /** the manifest's condition sections, by condition name, for the conditions the model takes */
  conditions: Readonly<Record<string, unknown>>;
  sizes: ModelInfo['sizes'];
}

export class ModelPackageError extends Error {
  constructor(
    readonly file: string,
    readonly field: string | null,
    message: string,
  ) {
    super(`${file}${field ? `: field "${field}"` : ''}: ${message}`);
    this.name = 'ModelPackageError';
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new ModelPackageError(path, null, 'missing');
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new ModelPackageError(path, null, `not valid JSON: ${(err as Error).message}`);
  }
}

function num(cfg: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelPackageError(file, key, `is ${JSON.stringify(v)}; expected a number`);
  return v;
}

/** Is `dir` a model package (our manifest or an optimum/diffusers model_index.json)? */
export async function isModelPackage(dir: string): Promise<boolean> {
  return (await exists(join(dir, 'amdm.json'))) || (await exists(join(dir, 'model_index.json')));
}

export async function readModelPackage(dirIn: string): Promise<ModelPackage> {
  const dir = resolve(dirIn);
  const manifestPath = join(dir, 'amdm.json');
  let manifest: Manifest | null = null;
  if (await exists(manifestPath)) {
    const parsed = Manifest.safeParse(await readJson(manifestPath));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ModelPackageError(manifestPath, issue.path.join('.') || null, issue.message);
    }
    manifest = parsed.data;
    if (!ECOSYSTEMS[manifest.ecosystem]) {
      throw new ModelPackageError(manifestPath, 'ecosystem', `unknown ecosystem id "${manifest.ecosystem}"; known: ${Object.keys(ECOSYSTEMS).join(', ')}`);
    }
  } else if (!(await exists(join(dir, 'model_index.json')))) {
    throw new ModelPackageError(dir, null, 'not a model package: neither amdm.json nor model_index.json is there');
  }

  // components: the manifest's map, or optimum's fixed folder names
  const components: Partial<Record<Component, string>> = {};
  const declared: Partial<Record<Component, string>> = manifest
    ? manifest.components
    : { unet: 'unet', text_encoder: 'text_encoder', tokenizer: 'tokenizer', vae_decoder: 'vae_decoder', scheduler: 'scheduler', vae_encoder: 'vae_encoder' };
  for (const c of COMPONENTS) {
    const rel = declared[c];
    if (rel === undefined) continue;
    const abs = resolve(dir, rel);
    if (!(await exists(abs))) {
      if (!manifest && c === 'vae_encoder') continue; // optional in optimum exports
      throw new ModelPackageError(manifest ? manifestPath : dir, manifest ? `components.${c}` : null, `component folder ${abs} is missing`);
    }
    components[c] = abs;
  }
  const file = (c: Component, name = 'model.onnx'): string => join(components[c]!, name);
  for (const c of ['unet', 'text_encoder', 'vae_decoder', 'image_encoder', 'image_proj'] as const) {
    if (components[c] && !(await exists(file(c)))) throw new ModelPackageError(file(c), null, 'missing');
  }

  const schedPath = join(components.scheduler!, 'scheduler_config.json');
  let scheduler: SchedulerConfig;
  try {
    scheduler = parseSchedulerConfig(await readJson(schedPath), schedPath);
  } catch (err) {
    if (err instanceof ModelPackageError) throw err;
    throw new ModelPackageError(schedPath, null, (err as Error).message);
  }
  const vaePath = join(components.vae_decoder!, 'config.json');
  const vaeCfg = await readJson(vaePath);
  const blocks = Array.isArray(vaeCfg.block_out_channels) ? vaeCfg.block_out_channels.length : 4;
  const vae = {
    // diffusers' AutoencoderKL default, for configs written before the field existed
    scalingFactor: num(vaeCfg, 'scaling_factor', vaePath, 0.18215),
    latentChannels: num(vaeCfg, 'latent_channels', vaePath, 4),
    scaleFactor: 2 ** (blocks - 1),
    decoderFile: file('vae_decoder'),
  };
  const unetPath = join(components.unet!, 'config.json');
  const unetCfg = (await exists(unetPath)) ? await readJson(unetPath) : {};
  const unet = { inChannels: num(unetCfg, 'in_channels', unetPath, vae.latentChannels), sampleSize: num(unetCfg, 'sample_size', unetPath, 64), file: file('unet') };
  if (unet.inChannels !== vae.latentChannels) {
    throw new ModelPackageError(unetPath, 'in_channels', `is ${unet.inChannels} but the VAE's latent_channels is ${vae.latentChannels}`);
  }
  const textPath = join(components.text_encoder!, 'config.json');
  const textCfg = (await exists(textPath)) ? await readJson(textPath) : {};
  const text = {
    maxLength: typeof textCfg.max_position_embeddings === 'number' ? textCfg.max_position_embeddings : undefined,
    hiddenSize: typeof textCfg.hidden_size === 'number' ? textCfg.hidden_size : undefined,
    file: file('text_encoder'),
  };

  let ecosystem: string;
  if (manifest) {
    ecosystem = manifest.ecosystem;
    const eco = ECOSYSTEMS[ecosystem]!;
    const checks: [string, string, unknown, unknown][] = [
      [vaePath, 'latent_channels', vae.latentChannels, eco.latentChannels],
      [vaePath, 'block_out_channels', vae.scaleFactor, eco.vaeScaleFactor],
      [schedPath, 'beta_schedule', scheduler.beta_schedule, eco.betaSchedule],
      [schedPath, 'beta_start', scheduler.beta_start, eco.betaStart],
      [schedPath, 'beta_end', scheduler.beta_end, eco.betaEnd],
    ];
    for (const [f, field, got, want] of checks) {
      if (got !== want) throw new ModelPackageError(f, field, `is ${JSON.stringify(got)} but ecosystem "${ecosystem}" (${manifestPath}) has ${JSON.stringify(want)}`);
    }
  } else {
    ecosystem = inferEcosystem(vae.latentChannels, vae.scaleFactor, scheduler);
  }

  // diffusers' convention: the UNet's sample_size is the latent side it was trained at
  const defaultSide = unet.sampleSize * vae.scaleFactor;
  const declaredSizes = manifest?.sizes ?? { default: [defaultSide, defaultSide] as [number, number], min: Math.max(vae.scaleFactor, defaultSide / 2), max: defaultSide * 2, multiple: vae.scaleFactor };
  const sizes = { ...declaredSizes, trained: declaredSizes.trained ?? { min: defaultSide, max: defaultSide } };
  const extraInputs = manifest?.unet_inputs ?? [];
  const conditions: Record<string, unknown> = {};
  for (const c of CONDITION_LIST) {
    const section = (manifest as Record<string, unknown> | null)?.[c.name];
    if (section === undefined) continue;
    conditions[c.name] = section;
    const problem = c.checkPackage(section, { extraInputs, components });
    if (problem) throw new ModelPackageError(manifestPath, problem.field, problem.message);
  }
  // an input whose condition the manifest does not take would never be fed
  for (const e of extraInputs) {
    const owner = CONDITION_LIST.find((c) => (c.sources as readonly string[]).includes(e.source))!;
    if (!(owner.name in conditions)) {
      throw new ModelPackageError(manifestPath, `unet_inputs.${e.name}.source`, `is "${e.source}", but the manifest has no "${owner.name}" section, which says how to fill it`);
    }
  }
  return {
    id: manifest?.id ?? basename(dir),
    dir,
    manifestPath: manifest ? manifestPath : null,
    ecosystem,
    description: manifest?.description ?? `ONNX export in ${dir}`,
    components,
    scheduler,
    vae,
    unet,
    text,
    extraInputs,
    conditions,
    sizes,
  };
}

/** An id for packages without a manifest: equal ids mean aggregation is meaningful. */
export function inferEcosystem(latentChannels: number, vaeScaleFactor: number, s: SchedulerConfig): string {
  for (const [id, e] of Object.entries(ECOSYSTEMS)) {
    if (e.latentChannels === latentChannels && e.vaeScaleFactor === vaeScaleFactor && e.betaSchedule === s.beta_schedule && e.betaStart === s.beta_start && e.betaEnd === s.beta_end) {
      return id;
    }
  }
  return `inferred:${latentChannels}ch-x${vaeScaleFactor}-${s.beta_schedule}-${s.beta_start}-${s.beta_end}-${s.num_train_timesteps}`;
}

/** The public face of a package (GET /v1/models). */
export function modelInfo(pkg: ModelPackage, maxTokens: number): ModelInfo {
  return {
    id: pkg.id,
    description: pkg.description,
    ecosystem: pkg.ecosystem,
    latent: { channels: pkg.vae.latentChannels, vae_scale_factor: pkg.vae.scaleFactor },
    sizes: pkg.sizes,
    conditions: {
      prompt: { max_tokens: maxTokens },
      ...Object.fromEntries(CONDITION_LIST.map((c) => [c.name, c.info(pkg.conditions[c.name])])),
    } as ModelInfo['conditions'],
    schedulers: [...SCHEDULER_NAMES],
  };
}

/**
 * Refuse to aggregate models of different ecosystems: the manifest ids must agree, and so
 * must what they stand for (latent channels, VAE, scheduler betas).
 */
export function checkOneEcosystem(pkgs: readonly ModelPackage[]): void {
  const base = pkgs[0]!;
  for (const p of pkgs.slice(1)) {
    const diffs: string[] = [];
    if (p.ecosystem !== base.ecosystem) diffs.push(`ecosystem "${p.ecosystem}" vs "${base.ecosystem}"`);
    if (p.vae.latentChannels !== base.vae.latentChannels) diffs.push(`latent channels ${p.vae.latentChannels} vs ${base.vae.latentChannels}`);
    if (p.vae.scaleFactor !== base.vae.scaleFactor || p.vae.scalingFactor !== base.vae.scalingFactor) diffs.push('a different VAE');
    const s = p.scheduler;
    const b = base.scheduler;
    if (s.beta_schedule !== b.beta_schedule || s.beta_start !== b.beta_start || s.beta_end !== b.beta_end || s.num_train_timesteps !== b.num_train_timesteps) {
      diffs.push('different scheduler betas');
    }
    if (diffs.length) throw new Error(`models "${p.id}" and "${base.id}" are not of one ecosystem: ${diffs.join('; ')}`);
  }
}
