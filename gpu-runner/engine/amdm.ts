/**
 * The AMDM math, in one place: steps 3 and 4 of "One step i" in ../shared/AMDM.md
 * (Yue et al., arXiv 2410.01262, as its official code runs it). Latents are flat
 * Float32Arrays of one sample; the pipeline (pipeline.ts) calls these between UNet calls.
 *
 *   3. spherical aggregation    xbar = Σ_k w_k · y_k
 *   4. deviation optimization   mu_k = (x_k - ((1 - α_s) / sqrt(1 - ᾱ_s)) · eps_k_prev) / sqrt(α_s)
 *                               x_k ← xbar - p_k · (xbar - mu_k) / ||xbar - mu_k||₂
 *      only when i > 0 and start ≤ i ≤ end; s = t_i + Δ; α_s is the per-step alpha
 *      (1 - β_s) of the training schedule, ᾱ_s its cumulative product; x_k is the latent
 *      that entered step i and eps_k_prev the model's guided prediction from step i - 1.
 *
 * The weights come from shared/contract/job-spec.ts (officialWeights, unitNormWeights).
 */

/** Is step i (0-based) inside the inclusive deviation window? Step 0 never is. */
export function inWindow(i: number, window: readonly [number, number]): boolean {
  return i > 0 && window[0] <= i && i <= window[1];
}

/** The last step at which any auxiliary model can still influence the base model. */
export function lastInfluentialStep(steps: number, window: readonly [number, number]): number {
  return Math.min(window[1], steps - 1);
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
