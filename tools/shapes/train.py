"""Train the shapes family from fixed seeds: VAE (and, independently, the style model's image
encoder), then text encoder + shapes-base, then shapes-layout and shapes-style (both
fine-tuned from shapes-base, as SD1.5 add-ons are).

    /usr/bin/python3 tools/shapes/train.py STAGE [--steps N] [--threads T] [--no-prefetch]

STAGE is vae, image_encoder, base, layout, style or captioned_style (the style model trained
with the full caption, colors included); checkpoints go to tools/shapes/.ckpt/ (not
committed; export.py turns them into the ONNX models under models/). retrain.sh runs the
whole chain and prints the wall time of each stage.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402
from nets import VaeEncoder, VaeDecoder, TextEncoder, UNet, ImageEncoder, ImageProjection  # noqa: E402
from reference import DDIMSchedule  # noqa: E402
from tokenizer import build as build_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT = os.environ.get("AMDM_SHAPES_CKPT", os.path.join(HERE, ".ckpt"))
MAX_LENGTH = 16          # text tokens, BOS and EOS included
CTX_DIM = 64             # text hidden size = cross-attention dim
IMAGE_TOKENS = 4
SEEDS = {"vae": 1, "base": 2, "layout": 3, "style": 4, "image_encoder": 5, "captioned_style": 6}
DEFAULT_STEPS = {"vae": 4000, "base": 4000, "layout": 1000, "style": 600, "image_encoder": 300, "captioned_style": 600}


def tokenizer():
    return build_tokenizer(world.WORDS, MAX_LENGTH)


def log(stage, msg):
    print(f"[{stage} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def lr_at(step, total, peak, warmup=200):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


class Ema:
    """Exponential moving average of the weights with warm-up (diffusers' use_ema_warmup):
    the decay grows as (1 + n) / (10 + n) towards its cap, so the average follows the recent
    weights instead of keeping a share of the initialization: with a flat 0.999, 30% of the
    average after a 1200-step fine-tune is still the initial weights (0.999^1200), which for
    the fine-tunes' freshly initialized modules is noise."""

    def __init__(self, module, decay=0.999):
        self.decay, self.n = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module):
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


def load(name):
    return torch.load(os.path.join(CKPT, name + ".pt"))


def save(name, obj):
    os.makedirs(CKPT, exist_ok=True)
    torch.save(obj, os.path.join(CKPT, name + ".pt"))


# ---------------------------------------------------------------------------- VAE
def train_vae(steps, rng):
    enc, dec = VaeEncoder(), VaeDecoder()
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    B, t0 = 32, time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 2e-3)
        x = world.to_model(world.render([world.sample_scene(rng) for _ in range(B)]))
        mean, logvar = enc(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        rec = dec(z)
        # pixel terms plus an image-gradient term: square corners and stripe edges are
        # what a small decoder blurs first
        grad = lambda im: (im[..., 1:, :] - im[..., :-1, :], im[..., :, 1:] - im[..., :, :-1])
        (gy, gx), (ry, rx) = grad(x), grad(rec)
        l_rec = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 0.5 * (F.l1_loss(ry, gy) + F.l1_loss(rx, gx))
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).mean()
        loss = l_rec + 1e-4 * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            log("vae", f"step {step} rec {l_rec.item():.5f} kl {kl.item():.3f} ({time.time() - t0:.0f}s)")
    # scaling factor: 1 / std of posterior samples, as SD's 0.18215 was chosen
    with torch.no_grad():
        zs = []
        for _ in range(16):
            x = world.to_model(world.render([world.sample_scene(rng) for _ in range(128)]))
            mean, logvar = enc(x)
            zs.append(mean + torch.randn_like(mean) * (0.5 * logvar).exp())
        z = torch.cat(zs)
        scaling = 1.0 / float(z.std())
    log("vae", f"scaling_factor {scaling:.5f}, latent mean {float(z.mean()):.4f}")
    save("vae", {"encoder": enc.state_dict(), "decoder": dec.state_dict(), "scaling_factor": scaling})


def vae_modules():
    ck = load("vae")
    enc, dec = VaeEncoder(), VaeDecoder()
    enc.load_state_dict(ck["encoder"])
    dec.load_state_dict(ck["decoder"])
    enc.eval()
    dec.eval()
    return enc, dec, ck["scaling_factor"]


@torch.no_grad()
def encode_latents(enc, scaling, x):
    mean, logvar = enc(x)
    return (mean + torch.randn_like(mean) * (0.5 * logvar).exp()) * scaling


def ids_tensor(tok, texts):
    return torch.tensor([tok.encode(t) for t in texts], dtype=torch.int64)


# --------------------------------------------------------------------------- UNets
def diffusion_loss(unet, sched, z0, ehs, **extra):
    B = z0.shape[0]
    t = torch.randint(0, 1000, (B,))
    noise = torch.randn_like(z0)
    ab = sched.alphas_cumprod.float()[t][:, None, None, None]
    zt = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
    return F.mse_loss(unet(zt, t, ehs, **extra), noise)


def batches(kind, seed, steps, B=128, colors=False):
    """The training stream of one UNet stage: scenes rendered and encoded to latents, the
    prompts (with classifier-free-guidance drops), the grounding and the style references.
    Everything random about the data is drawn here from `seed`, so the stream is the same
    whether it runs inline or in the prefetch process. (It seeds torch's global generator,
    which inline is also the training step's: a --no-prefetch run draws other timesteps and
    noise. A generator of its own would change the stream the committed models came from.)"""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc, _, scaling = vae_modules()
    for _ in range(steps):
        scenes = [world.sample_scene(rng) for _ in range(B)]
        b = {"z0": encode_latents(enc, scaling, world.to_model(world.render(scenes)))}
        drop = rng.random(B)
        if kind == "base":
            b["texts"] = ["" if drop[i] < 0.1 else world.caption(s, True, rng) for i, s in enumerate(scenes)]
        elif kind == "layout":
            # drop both (10%), caption only (5%), grounding only (5%)
            b["texts"] = ["" if drop[i] < 0.15 else world.caption(s, False, rng) for i, s in enumerate(scenes)]
            K = world.MAX_OBJECTS
            b["boxes"], b["mask"] = torch.zeros(B, K, 4), torch.zeros(B, K)
            b["phrases"] = [[""] * K for _ in range(B)]
            for i, s in enumerate(scenes):
                keep = not (drop[i] < 0.1 or 0.15 <= drop[i] < 0.2)
                for j, oi in enumerate(rng.permutation(len(s["objects"]))):
                    o = s["objects"][oi]
                    b["boxes"][i, j] = torch.tensor(o["box"])
                    b["phrases"][i][j] = o["shape"]
                    b["mask"][i, j] = 1.0 if keep else 0.0
        else:  # style; captioned_style: the same with the full caption, as IP-Adapter trains on captioned images
            b["texts"] = ["" if drop[i] < 0.1 else world.caption(s, colors, rng) for i, s in enumerate(scenes)]
            # the reference shares only the background (same style and parameters)
            refs = [{"objects": world.sample_scene(rng)["objects"], "background": s["background"]}
                    for s in scenes]
            b["reference"] = world.to_model(world.render(refs))
            b["image_drop"] = torch.tensor((drop >= 0.05) & (drop < 0.15), dtype=torch.bool)[:, None]
        yield b


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, kind, seed, steps, colors):
        super().__init__()
        self.kind, self.seed, self.steps, self.colors = kind, seed, steps, colors

    def __iter__(self):
        return batches(self.kind, self.seed, self.steps, colors=self.colors)


def prefetched(kind, seed, steps, colors=False):
    """batches() in a DataLoader worker process, a few batches ahead: rendering and
    VAE-encoding the data is a third of a base step, and on two cores it can run beside the
    UNet's step. One worker, so the order is the stream's; a worker that dies fails the run."""
    return iter(torch.utils.data.DataLoader(_Stream(kind, seed, steps, colors), batch_size=None, num_workers=1,
                                            prefetch_factor=4, multiprocessing_context="spawn"))


def train_image_encoder(steps, B=128):
    """The style model's image encoder, trained first and then frozen, as IP-Adapter uses a
    pretrained CLIP image encoder. Trained end to end through the UNet from scratch, it did
    learn the style (a linear probe read it 87% of the time) but its embeddings shared one
    large common component, so after the projection's LayerNorm the image tokens barely
    varied between references (std 0.1 across images) and the UNet mostly ignored them.
    Here it learns to tell the background's style and its two gray levels from a scene with
    random objects on it; then the head is rescaled so every embedding feature has zero mean
    and unit variance over the data, and a reference moves its tokens as much as the
    projection allows."""
    rng = np.random.default_rng(SEEDS["image_encoder"])
    enc = ImageEncoder(CTX_DIM)
    cls, reg = torch.nn.Linear(CTX_DIM, len(world.STYLES)), torch.nn.Linear(CTX_DIM, 2)
    params = [p_ for m in (enc, cls, reg) for p_ in m.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)

    def batch(n):
        scenes = [world.sample_scene(rng) for _ in range(n)]
        y = torch.tensor([world.STYLES.index(s["background"]["style"]) for s in scenes])
        ab = torch.tensor([[s["background"]["a"], s["background"].get("b", s["background"]["a"])] for s in scenes],
                          dtype=torch.float32)
        return world.to_model(world.render(scenes)), y, ab

    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, 2e-3, warmup=50)
        x, y, ab = batch(B)
        e = enc(x)
        loss = F.cross_entropy(cls(e), y) + 10.0 * F.mse_loss(reg(e), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log("image_encoder", f"step {step} loss {loss.item():.4f}")
    enc.eval()
    with torch.no_grad():
        x, y, ab = batch(1024)
        e = enc(x)
        acc = float((cls(e).argmax(1) == y).float().mean())
        mu, sd = e.mean(0), e.std(0) + 1e-4
        enc.head.weight.div_(sd[:, None])
        enc.head.bias.sub_(mu).div_(sd)
    log("image_encoder", f"style accuracy {acc:.3f} on 1024 fresh scenes; embeddings standardized")
    save("image_encoder", {"image_encoder": enc.state_dict(), "style_accuracy": acc})


def train_unet(stage, steps, kind, init=None, prefetch=True):
    torch.manual_seed(SEEDS[stage])
    tok = tokenizer()
    sched = DDIMSchedule()
    unet = UNet(ctx_dim=CTX_DIM, kind=kind, phrase_dim=CTX_DIM)
    extra_modules = []
    if stage == "base":
        te = TextEncoder(tok.vocab_size, MAX_LENGTH, CTX_DIM)
        extra_modules.append(te)
    else:
        te = TextEncoder(tok.vocab_size, MAX_LENGTH, CTX_DIM)
        te.load_state_dict(load("base")["text_encoder"])
        te.eval()
        for p_ in te.parameters():
            p_.requires_grad_(False)
    if init is not None:
        missing, unexpected = unet.load_state_dict(init, strict=False)
        assert not unexpected, unexpected
        log(stage, f"initialized from shapes-base; new parameters: {len(missing)} tensors")
        if kind == "style":
            for blk in (unet.down2_attn, unet.mid_attn, unet.up2_attn):
                # IP-Adapter: image keys start as copies of the text keys; zero values keep
                # the base model's behaviour at step 0
                blk.attn2.k_ip.weight.data.copy_(blk.attn2.k.weight.data)
                torch.nn.init.zeros_(blk.attn2.v_ip.weight)
    if kind == "style":
        img_enc, img_proj = ImageEncoder(CTX_DIM), ImageProjection(CTX_DIM, CTX_DIM, IMAGE_TOKENS)
        img_enc.load_state_dict(load("image_encoder")["image_encoder"])
        img_enc.eval()
        for p_ in img_enc.parameters():
            p_.requires_grad_(False)
        extra_modules.append(img_proj)
    params = [p_ for m in [unet] + extra_modules for p_ in m.parameters() if p_.requires_grad]
    peak = 1e-3 if init is None else 5e-4
    if kind == "style":
        # The image branch (projection, image keys and values) starts from zero values
        # (v_ip); at the UNet's rate it had barely moved after 1200 steps, so the new
        # parameters learn 10x faster than the ones copied from shapes-base.
        fresh = set(missing) if init is not None else set()
        new_ids = {id(p_) for n_, p_ in unet.named_parameters() if n_ in fresh}
        new_ids |= {id(p_) for m in extra_modules for p_ in m.parameters()}
        groups = [{"params": [p_ for p_ in params if id(p_) not in new_ids], "mult": 1.0},
                  {"params": [p_ for p_ in params if id(p_) in new_ids], "mult": 10.0}]
    else:
        groups = [{"params": params, "mult": 1.0}]
    opt = torch.optim.AdamW(groups, lr=peak, weight_decay=0.01)
    ema = Ema(unet)
    ema_extra = [Ema(m) for m in extra_modules]
    t0, run = time.time(), 0.0
    phrase_cache = {}
    stream = (prefetched if prefetch else batches)(kind, SEEDS[stage] + 100, steps, colors=stage == "captioned_style")
    for step, b in enumerate(stream):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak) * g["mult"]
        z0, extra = b["z0"], {}
        if kind == "base":
            ehs, _ = te(ids_tensor(tok, b["texts"]))
        else:
            with torch.no_grad():
                ehs, _ = te(ids_tensor(tok, b["texts"]))
        if kind == "layout":
            for ph in {p for row in b["phrases"] for p in row} - set(phrase_cache):
                with torch.no_grad():
                    phrase_cache[ph] = te(ids_tensor(tok, [ph]))[1][0] if ph else torch.zeros(CTX_DIM)
            phr = torch.stack([torch.stack([phrase_cache[p] for p in row]) for row in b["phrases"]])
            extra = {"boxes": b["boxes"], "phrase_embeds": phr, "mask": b["mask"]}
        elif kind == "style":
            with torch.no_grad():
                emb = img_enc(b["reference"])
            emb = torch.where(b["image_drop"], torch.zeros_like(emb), emb)
            ehs = torch.cat([ehs, img_proj(emb)], dim=1)
            extra = {"ip_scale": torch.ones(1)}
        loss = diffusion_loss(unet, sched, z0, ehs, **extra)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(unet)
        for e, m in zip(ema_extra, extra_modules):
            e.update(m)
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        if step % 250 == 0 or step == steps - 1:
            log(stage, f"step {step} loss {run:.4f} ({time.time() - t0:.0f}s)")
    out = {"unet": ema.shadow, "kind": kind}
    if stage == "base":
        out["text_encoder"] = ema_extra[0].shadow
    if kind == "style":
        out["image_encoder"] = img_enc.state_dict()
        out["image_proj"] = ema_extra[0].shadow
    save(stage, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["vae", "image_encoder", "base", "layout", "style", "captioned_style"])
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-prefetch", action="store_true", help="render and encode the data inline")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(SEEDS[a.stage])
    rng = np.random.default_rng(SEEDS[a.stage])
    steps = a.steps or DEFAULT_STEPS[a.stage]
    t0 = time.time()
    if a.stage == "vae":
        train_vae(steps, rng)
    elif a.stage == "image_encoder":
        train_image_encoder(steps)
    elif a.stage == "base":
        train_unet("base", steps, "base", prefetch=not a.no_prefetch)
    else:
        kind = "style" if a.stage == "captioned_style" else a.stage
        train_unet(a.stage, steps, kind, init=load("base")["unet"], prefetch=not a.no_prefetch)
    log(a.stage, f"done in {time.time() - t0:.0f}s")
    with open(os.path.join(CKPT, a.stage + ".time.json"), "w") as f:
        json.dump({"stage": a.stage, "steps": steps, "seconds": round(time.time() - t0, 1),
                   "threads": a.threads}, f)


if __name__ == "__main__":
    main()
