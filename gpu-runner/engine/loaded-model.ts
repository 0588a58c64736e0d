/**
 * A model package with its onnxruntime sessions built and checked against the package:
 * the UNet's graph inputs must be exactly the standard three plus what the manifest
 * declares (names, dtypes, ranks, static dims), and every component must expose the
 * standard input/output names. Components shared between packages (one text encoder and
 * VAE for a whole ecosystem) get one session, through the SessionCache.
 */
import { ClipTokenizer } from './tokenizer.ts';
import { OnnxModel, type InputInfo, type OrtOptions } from './onnx.ts';
import { ModelPackageError, type ModelPackage } from './model-package.ts';
import { textEncoderOutputs } from './conditions/index.ts';

const STANDARD_UNET_INPUTS = ['sample', 'timestep', 'encoder_hidden_states'];

/** One session per ONNX file and one tokenizer per folder, shared by every model. */
export class SessionCache {
  private readonly sessions = new Map<string, Promise<OnnxModel>>();
  private readonly tokenizers = new Map<string, Promise<ClipTokenizer>>();

  constructor(private readonly ortOptions: OrtOptions) {}

  session(path: string): Promise<OnnxModel> {
    let s = this.sessions.get(path);
    if (!s) {
      s = OnnxModel.load(path, this.ortOptions);
      s.catch(() => this.sessions.delete(path)); // a failed build can be retried
      this.sessions.set(path, s);
    }
    return s;
  }

  tokenizer(dir: string, maxLength: number | undefined): Promise<ClipTokenizer> {
    const key = `${dir}#${maxLength ?? ''}`;
    let t = this.tokenizers.get(key);
    if (!t) {
      t = ClipTokenizer.fromDir(dir, maxLength);
      t.catch(() => this.tokenizers.delete(key));
      this.tokenizers.set(key, t);
    }
    return t;
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.tokenizers.clear();
    const results = await Promise.allSettled(all.map(async (s) => (await s).dispose()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

export class LoadedModel {
  private constructor(
    readonly pkg: ModelPackage,
    readonly unet: OnnxModel,
    readonly textEncoder: OnnxModel,
    readonly vaeDecoder: OnnxModel,
    readonly tokenizer: ClipTokenizer,
    readonly imageEncoder: OnnxModel | null,
    readonly imageProj: OnnxModel | null,
  ) {}

  get timestepInput(): InputInfo {
    return this.unet.input('timestep');
  }

  /** Builds (or reuses) every session concurrently, then checks the graphs. */
  static async load(pkg: ModelPackage, cache: SessionCache): Promise<LoadedModel> {
    const c = pkg.components;
    const [unet, textEncoder, vaeDecoder, tokenizer, imageEncoder, imageProj] = await Promise.all([
      cache.session(pkg.unet.file),
      cache.session(pkg.text.file),
      cache.session(pkg.vae.decoderFile),
      cache.tokenizer(c.tokenizer!, pkg.text.maxLength),
      c.image_encoder ? cache.session(`${c.image_encoder}/model.onnx`) : Promise.resolve(null),
      c.image_proj ? cache.session(`${c.image_proj}/model.onnx`) : Promise.resolve(null),
    ]);
    const m = new LoadedModel(pkg, unet, textEncoder, vaeDecoder, tokenizer, imageEncoder, imageProj);
    m.validate();
    return m;
  }

  private validate(): void {
    const pkg = this.pkg;
    const where = pkg.manifestPath ?? pkg.unet.file;
    for (const name of STANDARD_UNET_INPUTS) {
      if (!this.unet.inputs.has(name)) throw new ModelPackageError(pkg.unet.file, null, `the UNet graph has no input "${name}"`);
    }
    const declared = new Map(pkg.extraInputs.map((e) => [e.name, e]));
    for (const [name, info] of this.unet.inputs) {
      if (STANDARD_UNET_INPUTS.includes(name)) continue;
      const d = declared.get(name);
      if (!d) {
        throw new ModelPackageError(
          where,
          pkg.manifestPath ? 'unet_inputs' : null,
          `the UNet graph input "${name}" is not declared${pkg.manifestPath ? '' : '; a UNet with extra inputs needs an amdm.json manifest that declares them'}`,
        );
      }
      if (d.dtype !== info.type) throw new ModelPackageError(where, `unet_inputs.${name}.dtype`, `is ${d.dtype} but the graph (${pkg.unet.file}) has ${info.type}`);
      if (info.shape.length !== d.shape.length) {
        throw new ModelPackageError(where, `unet_inputs.${name}.shape`, `has rank ${d.shape.length} but the graph has [${info.shape.join(', ')}]`);
      }
      d.shape.forEach((dim, i) => {
        const g = info.shape[i];
        if (typeof dim === 'number' && typeof g === 'number' && dim !== g) {
          throw new ModelPackageError(where, `unet_inputs.${name}.shape`, `is [${d.shape.join(', ')}] but the graph has [${info.shape.join(', ')}]`);
        }
      });
    }
    for (const d of pkg.extraInputs) {
      if (!this.unet.inputs.has(d.name)) throw new ModelPackageError(where, 'unet_inputs', `declares "${d.name}", which the UNet graph (${pkg.unet.file}) does not have`);
    }
    const need = (model: OnnxModel, inputs: string[], outputs: string[]) => {
      for (const i of inputs) if (!model.inputs.has(i)) throw new ModelPackageError(model.path, null, `the graph has no input "${i}"`);
      for (const o of outputs) if (!model.outputNames.includes(o)) throw new ModelPackageError(model.path, null, `the graph has no output "${o}"`);
    };
    need(this.unet, [], ['out_sample']);
    need(this.textEncoder, ['input_ids'], textEncoderOutputs(pkg.conditions));
    need(this.vaeDecoder, ['latent_sample'], ['sample']);
    if (this.imageEncoder) need(this.imageEncoder, ['pixel_values'], ['image_embeds']);
    if (this.imageProj) need(this.imageProj, ['image_embeds'], ['image_prompt_embeds']);
    const ids = this.textEncoder.input('input_ids');
    if (ids.type !== 'int32' && ids.type !== 'int64') throw new ModelPackageError(pkg.text.file, null, `input_ids is ${ids.type}; expected int32 or int64`);
    const ts = this.timestepInput;
    if (!['int64', 'int32', 'float32', 'float16', 'float64'].includes(ts.type) || ts.shape.length > 1) {
      throw new ModelPackageError(pkg.unet.file, null, `timestep is ${ts.type} [${ts.shape.join(', ')}]; expected an integer or float scalar or [batch]`);
    }
  }
}
