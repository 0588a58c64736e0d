/**
 * The engine's public face, as the runner, the CLI and the benchmarks use it. The
 * implementation (pipeline.ts) runs AMDM over ONNX model packages; the runner hosts it in
 * a worker thread because onnxruntime-node's run() blocks the event loop.
 */
import type { JobSpec, JobWarning, ModelInfo } from '../../shared/contract/index.ts';

export type EnginePhase = 'aggregating' | 'base_only' | 'decoding' | 'solo';

export interface EngineProgress {
  /** 1-based image number and count */
  image: number;
  images: number;
  /** steps finished for this image, and the total */
  step: number;
  total: number;
  phase: EnginePhase;
  /** the model running alone, in phase 'solo' */
  model?: string;
  /** UNet calls run so far by this generate (what a canceled job is billed) */
  unetEvals?: number;
}

/**
 * A small picture of every model's current state, for live previews. The image is the
 * model's current latent denoised to an estimate of the final latent with its latest noise
 * prediction (x0 = (x - sqrt(1 - ᾱ) eps) / sqrt(ᾱ), at the noise level the latent is at), then
 * decoded by the VAE: during the window it shows the models being pulled together.
 */
export interface PreviewFrame {
  image: number;
  images: number;
  /** steps finished (of this image, or of the model's solo run) */
  step: number;
  total: number;
  phase: EnginePhase;
  /** how the picture was made (see above) */
  method: 'vae_decode_x0';
  /** the frame of the window's last step: every model just pulled toward the aggregate */
  windowEnd: boolean;
  models: { id: string; run: 'aggregated' | 'solo'; width: number; height: number; png: Uint8Array }[];
}

export interface PreviewOptions {
  /** at most one frame per this many ms (plus the first step and the window's end) */
  everyMs: number;
  onFrame: (f: PreviewFrame) => void;
}

export interface EngineOutput {
  /**
   * 'aggregated' for the base model's final image; a model id for that model's own
   * trajectory inside the aggregated run (outputs.per_model); 'solo' for a model run alone
   */
  source: string;
  /** the model the image comes from */
  model?: string;
  index: number;
  kind: 'image' | 'latent';
  contentType: 'image/png' | 'application/octet-stream';
  bytes: Uint8Array;
  width?: number;
  height?: number;
}

export interface EngineTimings {
  /** building sessions for models not loaded yet (0 once they are cached) */
  loadMs: number;
  /** sampling wall time after loading: conditioning, denoising, decoding, PNG */
  totalMs: number;
  /** wall time inside onnxruntime session.run() calls */
  onnxMs: number;
  outsideOnnxMs: number;
  /** of onnxMs, inside the UNet's run() calls (unetMs / unetEvals: ms per UNet evaluation) */
  unetMs?: number;
}

export interface EngineResult {
  outputs: EngineOutput[];
  /** CFG-batched UNet calls actually run, solo runs included */
  unetEvals: number;
  timings: EngineTimings;
  /** what the engine changed in the job (a prompt cut to the token limit) */
  warnings?: JobWarning[];
}

export interface GenerateOptions {
  onProgress?: (p: EngineProgress) => void;
  /** checked between steps; aborting rejects with an AbortError */
  signal?: AbortSignal;
  /**
   * Reference image bytes (PNG or JPEG) per spec.models index, for models whose
   * reference_image is given by store key. Inline `data` needs no entry.
   */
  referenceImages?: (Uint8Array | null)[];
  /**
   * Initial latents per image and per spec.models index, replacing the seeded noise (as
   * diffusers' `latents=` argument). The golden-fixture tests feed the reference's noise.
   */
  initialLatents?: Float32Array[][];
  /**
   * Run every model for every step, as the official code does, even when no per-model
   * image was asked for (benchmarks compare against this schedule).
   */
  officialSchedule?: boolean;
  /** called after every step with every model's current latent (null for stopped models) */
  onStepLatents?: (image: number, step: number, latents: (Float32Array | null)[]) => void;
  /** called as soon as the engine changes something in the job (also in the result) */
  onWarning?: (w: JobWarning) => void;
  /** live previews; none when absent, or when the latent is too large to decode cheaply */
  preview?: PreviewOptions;
}

export interface Engine {
  /** the installed models, as GET /v1/models shows them */
  catalog(): Promise<ModelInfo[]>;
  generate(spec: JobSpec, opts?: GenerateOptions): Promise<EngineResult>;
  dispose(): Promise<void>;
}

/**
 * A request the engine can never run (unknown model, undecodable image, a size the graph
 * rejects): the runner fails such a job at once instead of retrying it.
 */
export class EngineInputError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'EngineInputError';
  }
}
