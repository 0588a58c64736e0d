"""PyTorch reference of AMDM, exactly as ../shared/AMDM.md states it (the official code's
behaviour, quirks included), running the torch modules of the shapes family.

Numbered comments point at the steps of AMDM.md "One step i". This file is the ground
truth that writes the golden fixtures the TypeScript engine must match; it favours
plainness over speed and runs every model for every step, as the official code does.
"""
import math
import torch

# ------------------------------------------------------------------ DDIM (diffusers)
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012


class DDIMSchedule:
    """scaled_linear betas, 'leading' spacing, steps_offset 1, set_alpha_to_one False; eta 0
    unless a step is given eta and its variance noise (diffusers' DDIMScheduler.step)."""

    def __init__(self):
        # float32, as diffusers computes them
        self.betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_TIMESTEPS,
                                    dtype=torch.float32) ** 2
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.final_alpha_cumprod = self.alphas_cumprod[0]     # set_alpha_to_one = False

    def timesteps(self, steps):
        ratio = NUM_TRAIN_TIMESTEPS // steps
        return [int(i * ratio) + 1 for i in reversed(range(steps))], ratio

    def step(self, eps, t, x, ratio, eta=0.0, variance_noise=None):
        """x_t -> x_{t - ratio}. Returns (prev_sample, pred_original_sample). With eta > 0,
        sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) and
        variance_noise (diffusers draws it after the model call) is added times sigma_t."""
        prev_t = t - ratio
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        a_t, a_prev = float(a_t), float(a_prev)
        x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        if eta == 0:
            prev = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps
            return prev, x0
        std = eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        prev = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev - std ** 2) * eps + std * variance_noise
        return prev, x0


# -------------------------------------------------------------------------- models
class Conditioned:
    """One model with its conditions, giving the classifier-free-guided noise prediction
    from one batched UNet call: [unconditional, conditional]. Works on a batch of B
    independent samples (the table batches its images; the fixtures use B = 1)."""

    def __init__(self, unet, ehs_uncond, ehs_cond, guidance, extra=None):
        self.unet = unet
        self.ehs = torch.cat([ehs_uncond, ehs_cond], dim=0)     # [2B, L, D]
        self.guidance = guidance
        self.extra = extra or {}                                 # already [2B, ...] (uncond first)

    @torch.no_grad()
    def eps(self, x, t):
        latent = torch.cat([x, x], dim=0)
        timestep = torch.full((latent.shape[0],), t, dtype=torch.int64)
        out = self.unet(latent, timestep, self.ehs, **self.extra)
        eps_uncond, eps_text = out.chunk(2, dim=0)
        return eps_uncond + self.guidance * (eps_text - eps_uncond)


# ------------------------------------------------------------------------------ AMDM
def official_weights(n, omega=None, omega1=None, omega2=None):
    """Aggregation weights in the official parameterization (AMDM.md step 3)."""
    if n == 1:
        return [1.0]
    if n == 2:
        return [omega, math.sqrt(1.0 - omega ** 2)]
    if n == 3:
        s1 = math.sqrt(1.0 - omega1 ** 2)
        return [omega1 * omega2, s1 * omega2, s1 * math.sqrt(1.0 - omega2 ** 2)]
    raise ValueError("the official parameterization covers 1 to 3 models")


def amdm(models, noises, weights, p, window, steps, clamp=False, record=(), base_only_after_window=False,
         observe=None, schedule=None, eta=0.0, generator=None, draw_order=None):
    """models[0] is the base. noises: one [B,4,h,w] tensor per model. window: (start, end)
    inclusive. Every model runs every step (the official schedule). Returns the final
    latent of every model and the base latent after each step listed in `record`.
    The deviation norm is taken over each sample's whole latent, as the official code
    does for its single sample.

    eta > 0: every step draws each running model's variance noise from `generator`, models in
    `draw_order` (indices into models; default their order); after the window with
    base_only_after_window, the base's alone.

    base_only_after_window: stop the auxiliaries once the window has ended, as the engine
    does; the base latent is bit-identical (its arithmetic never reads theirs after the
    window) and the table's grid runs several times faster. The auxiliaries' returned
    latents are then those at the window's end.
    observe(i, t, eps, y, xbar, mu, x): called after every step, for measurements
    (analysis.py); mu is None outside the window, and only the base's eps is given after it
    when the auxiliaries have stopped.

    schedule: the documented extension (off by default), per-step weights and p inside the
    window: {"weights": [[w_k] per window step] or None, "p": [[p_k] per window step] or
    None}, entry j for step start + j. Weights in a schedule are used as given."""
    sched = DDIMSchedule()
    timesteps, ratio = sched.timesteps(steps)
    x = [n.clone() for n in noises]
    eps_prev = [None] * len(models)
    recorded = {}
    start, end = window
    for i, t in enumerate(timesteps):
        if base_only_after_window and len(models) > 1 and i > end:
            eps = models[0].eps(x[0], t)
            if eta == 0:
                x = [sched.step(eps, t, x[0], ratio)[0]] + x[1:]
            else:
                x = [sched.step(eps, t, x[0], ratio, eta, torch.randn(x[0].shape, generator=generator))[0]] + x[1:]
            if observe:
                observe(i, t, [eps], None, None, None, x)
            if i in record:
                recorded[i] = x[0].clone()
            continue
        # 1. guided noise prediction of every model at its own latent
        eps = [m.eps(xk, t) for m, xk in zip(models, x)]
        # 2. DDIM step of every model
        if eta == 0:
            y = [sched.step(e, t, xk, ratio)[0] for e, xk in zip(eps, x)]
        else:
            z = [None] * len(models)
            for k in (draw_order or range(len(models))):
                z[k] = torch.randn(x[k].shape, generator=generator)
            y = [sched.step(e, t, xk, ratio, eta, zk)[0] for e, xk, zk in zip(eps, x, z)]
        inside = len(models) > 1 and i > 0 and start <= i <= end
        w_i, p_i = weights, p
        if inside and schedule:
            w_i = (schedule.get("weights") or [weights] * (i - start + 1))[i - start]
            p_i = (schedule.get("p") or [p] * (i - start + 1))[i - start]
        # 3. spherical aggregation (computed every step, used only in the window)
        xbar = sum(w * yk for w, yk in zip(w_i, y))
        # 4. deviation optimization toward xbar, from the stale mu of the previous step
        if inside:
            s = t + ratio
            alpha_s = float(sched.alphas[s])
            abar_s = float(sched.alphas_cumprod[s])
            new_x, mus = [], []
            for k in range(len(models)):
                mu = (x[k] - ((1.0 - alpha_s) / math.sqrt(1.0 - abar_s)) * eps_prev[k]) / math.sqrt(alpha_s)
                mus.append(mu)
                d = xbar - mu
                norm = d.flatten(1).norm(dim=1)[:, None, None, None]
                pull = torch.clamp(norm, max=p_i[k]) if clamp else p_i[k]
                new_x.append(xbar - pull * d / norm)
            x = new_x
        else:
            x, mus = y, None
        if observe:
            observe(i, t, eps, y, xbar, mus, x)
        eps_prev = eps
        if i in record:
            recorded[i] = x[0].clone()
    return x, recorded
