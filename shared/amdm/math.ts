/**
 * The AMDM math, in one place: the official constants and defaults, the aggregation
 * weights, the deviation distances p, the cost in UNet evaluations, and steps 3 and 4 of
 * "One step i" in AMDM.md (Yue et al., arXiv 2410.01262, as its official code runs it).
 * Request shaping (shared/contract/job-spec.ts) and the engine's pipeline
 * (gpu-runner/engine/pipeline.ts) both import it, so it imports nothing: the edge bundle
 * carries it without any engine code. Latents are flat Float32Arrays of one sample.
 *
 *   3. spherical aggregation    xbar = Σ_k w_k · y_k
 *        two models            w = (ω, sqrt(1 - ω²))
 *        three models          w = (ω1·ω2, sqrt(1 - ω1²)·ω2, sqrt(1 - ω1²)·sqrt(1 - ω2²))
 *   4. deviation optimization   mu_k = (x_k - ((1 - α_s) / sqrt(1 - ᾱ_s)) · eps_k_prev) / sqrt(α_s)
 *                               x_k ← xbar - p_k · (xbar - mu_k) / ||xbar - mu_k||₂
 *      only when i > 0 and start ≤ i ≤ end; s = t_i + Δ; α_s is the per-step alpha
 *      (1 - β_s) of the training schedule, ᾱ_s its cumulative product; x_k is the latent
 *      that entered step i and eps_k_prev the model's guided prediction from step i - 1.
 */

/**
 * Official defaults (AMDM.md): omega for 2 models, (omega1, omega2) for 3, the deviation
 * distances p of the base and the auxiliaries, and the norm of the 4×64×64 latent those
 * distances were chosen for.
 */
export const OFFICIAL = { omega: 0.5, omega1: 0.47, omega2: 0.5, pBase: 55, pAux: 45, latentNorm: 128 } as const;

/**
 * 3. Aggregation weights in the official parameterization. The three-model weights are
 * kept exactly as the official code has them, not unit-norm. omega defaults to the
 * official omega (two models) or omega1 (three).
 */
export function officialWeights(n: number, omega: number = n === 2 ? OFFICIAL.omega : OFFICIAL.omega1, omega2?: number): number[] {
  if (n === 1) return [1];
  if (n === 2) return [omega, Math.sqrt(1 - omega * omega)];
  if (n === 3) {
    const s1 = Math.sqrt(1 - omega * omega);
    const w2 = omega2 ?? OFFICIAL.omega2;
    return [omega * w2, s1 * w2, s1 * Math.sqrt(1 - w2 * w2)];
  }
  throw new Error('the official parameterization covers one to three models');
}

/** The smallest normal float64: a sum of squares below it has lost its precision. */
const MIN_NORMAL = 2 ** -1022;

/**
 * 3. Explicit weights scaled to unit L2 norm, so independent Gaussian latents keep unit
 * variance. Any finite weights do: squares of 1e200 overflow and squares of 1e-200
 * underflow, so such weights are first divided by their largest. Only then: dividing
 * ordinary weights by the largest first changes the last bit of about three in four
 * results, and the golden fixtures and stored jobs hold the plain quotients.
 */
export function unitNormWeights(w: readonly number[]): number[] {
  if (!w.every((v) => Number.isFinite(v) && v >= 0) || !w.some((v) => v > 0)) {
    throw new Error(`weights must be finite, >= 0 and not all zero; got [${w.join(', ')}]`);
  }
  const sumOfSquares = w.reduce((s, v) => s + v * v, 0);
  if (sumOfSquares < Infinity && sumOfSquares >= MIN_NORMAL) {
    const norm = Math.sqrt(sumOfSquares);
    return w.map((v) => v / norm);
  }
  const max = Math.max(...w);
  const scaled = w.map((v) => v / max);
  // the largest scaled weight is 1, so this norm lies in [1, sqrt(n)]
  const norm = Math.sqrt(scaled.reduce((s, v) => s + v * v, 0));
  return scaled.map((v) => v / norm);
}

/**
 * 4. The default deviation distance p of a model: the official distances (base 55,
 * auxiliaries 45, for a 4×64×64 latent whose norm is about 128) scaled to this latent's
 * expected norm sqrt(C·h·w), since p is an absolute distance in latent units.
 */
export function officialP(role: 'base' | 'auxiliary', latent: { channels: number; width: number; height: number }): number {
  const latentNorm = Math.sqrt(latent.channels * latent.width * latent.height);
  return (role === 'base' ? OFFICIAL.pBase : OFFICIAL.pAux) * (latentNorm / OFFICIAL.latentNorm);
}

/**
 * The documented extension (off by default; not in the paper): per-step weights and p
 * inside the window, entry j for step start + j, one value per model (base first). Weights
 * in a schedule are used as given, not normalized: once the pull has merged the models'
 * latents they are no longer independent, and unit-L2 weights then inflate the aggregate's
 * norm by up to Σw at every step (docs/control-table.md), so a schedule may, for example,
 * use unit-L2 weights at the window's first step and weights summing to 1 after it.
 */
export interface StepSchedule {
  weights?: readonly (readonly number[])[];
  p?: readonly (readonly number[])[];
}

/** The weights and p of window step i: the schedule's entry if it has one, else the constants. */
export function scheduledAt(
  i: number,
  window: readonly [number, number],
  constant: { weights: readonly number[]; p: readonly number[] },
  schedule?: StepSchedule,
): { weights: readonly number[]; p: readonly number[] } {
  const j = i - window[0];
  return { weights: schedule?.weights?.[j] ?? constant.weights, p: schedule?.p?.[j] ?? constant.p };
}

/** Is step i (0-based) inside the inclusive deviation window? Step 0 never is. */
export function inWindow(i: number, window: readonly [number, number]): boolean {
  return i > 0 && window[0] <= i && i <= window[1];
}

/** The last step at which any auxiliary model can still influence the base model. */
export function lastInfluentialStep(steps: number, window: readonly [number, number]): number {
  return Math.min(window[1], steps - 1);
}

/**
 * UNet evaluations (one CFG-batched call each) per image. Once the window ends the
 * auxiliary models can no longer influence the base, so they stop, N·(end+1) + (S-end-1)
 * calls instead of N·S, unless every model's own image was asked for.
 */
export function unetEvalsPerImage(nModels: number, steps: number, windowEnd: number, perModel: boolean): number {
  if (nModels === 1 || perModel) return nModels * steps;
  const aggregated = Math.min(windowEnd + 1, steps);
  return nModels * aggregated + (steps - aggregated);
}

/**
 * The first step at which aggregation can change a latent (the window's start; step 0 never
 * is). Before it every model follows its own trajectory, exactly as if it ran alone, so a
 * run of the model alone (outputs.solo) shares those steps and forks there.
 */
export function firstAggregatedStep(steps: number, window: readonly [number, number]): number {
  return Math.min(Math.max(window[0], 1), steps);
}

/** UNet evaluations per image of running every model alone after the fork (outputs.solo). */
export function soloUnetEvalsPerImage(nModels: number, steps: number, window: readonly [number, number]): number {
  if (nModels === 1) return 0;
  return nModels * (steps - firstAggregatedStep(steps, window));
}

/** 3. xbar = Σ_k w_k · y_k */
export function aggregate(y: readonly Float32Array[], weights: readonly number[]): Float32Array {
  const n = y[0]!.length;
  const xbar = new Float32Array(n);
  for (let k = 0; k < y.length; k++) {
    const w = weights[k]!;
    const yk = y[k]!;
    for (let j = 0; j < n; j++) xbar[j] = xbar[j]! + w * yk[j]!;
  }
  return xbar;
}

/** 4a. mu_k from the latent that entered step i and the previous step's guided prediction. */
export function deviationMu(x: Float32Array, epsPrev: Float32Array, alphaS: number, alphaBarS: number): Float32Array {
  const c = (1 - alphaS) / Math.sqrt(1 - alphaBarS);
  const inv = 1 / Math.sqrt(alphaS);
  const mu = new Float32Array(x.length);
  for (let j = 0; j < x.length; j++) mu[j] = (x[j]! - c * epsPrev[j]!) * inv;
  return mu;
}

/**
 * 4b. Move p (absolute latent units, norm over the whole latent) from xbar toward mu.
 * The official code does not clamp, so it overshoots mu when ||xbar - mu|| < p;
 * `clamp` stops at mu instead. If xbar equals mu there is no direction and xbar is kept
 * (the official code would divide by zero).
 */
export function pullToward(xbar: Float32Array, mu: Float32Array, p: number, clamp: boolean): Float32Array {
  const n = xbar.length;
  const d = new Float32Array(n);
  let sq = 0;
  for (let j = 0; j < n; j++) {
    const v = xbar[j]! - mu[j]!;
    d[j] = v;
    sq += v * v;
  }
  const norm = Math.sqrt(sq);
  const out = new Float32Array(n);
  if (norm === 0) {
    out.set(xbar);
    return out;
  }
  const step = (clamp ? Math.min(p, norm) : p) / norm;
  for (let j = 0; j < n; j++) out[j] = xbar[j]! - step * d[j]!;
  return out;
}

/** Classifier-free guidance: eps = eps_uncond + g · (eps_cond - eps_uncond), halves of one batched call. */
export function guide(batched: Float32Array, guidance: number): Float32Array {
  const n = batched.length / 2;
  const eps = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const u = batched[j]!;
    eps[j] = u + guidance * (batched[n + j]! - u);
  }
  return eps;
}
