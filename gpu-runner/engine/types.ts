/**
 * The engine's public face, as the runner, the CLI and the benchmarks use it. The
 * implementation (pipeline.ts) runs AMDM over ONNX model packages; the runner hosts it in
 * a worker thread because onnxruntime-node's run() blocks the event loop.
 */
import type { JobSpec, ModelInfo } from '../../shared/contract/index.ts';

export type EnginePhase = 'aggregating' | 'base_only' | 'decoding';

export interface EngineProgress {
  /** 1-based image number and count */
  image: number;
  images: number;
  /** steps finished for this image, and the total */
  step: number;
  total: number;
  phase: EnginePhase;
}

export interface EngineOutput {
  /** 'aggregated' for the base model's final image, or a model id for that model's own image */
  source: string;
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
}

export interface EngineResult {
  outputs: EngineOutput[];
  /** CFG-batched UNet calls actually run */
  unetEvals: number;
  timings: EngineTimings;
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
