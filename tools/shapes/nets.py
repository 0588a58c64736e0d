"""Torch modules of the "shapes" model family.

One ecosystem, as Stable Diffusion 1.5 and its derivatives: a VAE (32x32 RGB <-> 4x8x8
latent), a CLIP-like text encoder (token ids -> hidden states + pooled output), and
UNets that share them. `shapes-layout` adds GLIGEN/MIGC-like grounding inputs, and
`shapes-style` IP-Adapter-like decoupled cross-attention on image tokens appended to
the text tokens. Every module is exported to ONNX by export.py and read back by the
PyTorch reference (reference.py) from those same ONNX initializers.
"""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(c):
    return nn.GroupNorm(8, c)


# ----------------------------------------------------------------------------- VAE
class VaeRes(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.n1, self.c1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class VaeEncoder(nn.Module):
    """32x32 RGB in [-1, 1] -> mean and log-variance of a 4x8x8 latent."""

    def __init__(self, ch=(32, 48, 64), latent_channels=4):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.d0 = nn.Conv2d(ch[0], ch[1], 3, stride=2, padding=1)
        self.r1 = VaeRes(ch[1], ch[1])
        self.d1 = nn.Conv2d(ch[1], ch[2], 3, stride=2, padding=1)
        self.r2 = VaeRes(ch[2], ch[2])
        self.r3 = VaeRes(ch[2], ch[2])
        self.norm_out = group_norm(ch[2])
        self.conv_out = nn.Conv2d(ch[2], 2 * latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.r1(self.d0(F.silu(self.conv_in(x))))
        h = self.r3(self.r2(self.d1(h)))
        mean, logvar = self.conv_out(F.silu(self.norm_out(h))).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class VaeDecoder(nn.Module):
    """4x8x8 latent -> 32x32 RGB in [-1, 1]."""

    def __init__(self, ch=(64, 48, 32), latent_channels=4):
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, ch[0], 3, padding=1)
        self.r0 = VaeRes(ch[0], ch[0])
        self.r1 = VaeRes(ch[0], ch[0])
        self.u0 = nn.Conv2d(ch[0], ch[1], 3, padding=1)
        self.r2 = VaeRes(ch[1], ch[1])
        self.u1 = nn.Conv2d(ch[1], ch[2], 3, padding=1)
        self.norm_out = group_norm(ch[2])
        self.conv_out = nn.Conv2d(ch[2], 3, 3, padding=1)

    def forward(self, z):
        h = self.r1(self.r0(self.conv_in(z)))
        h = self.r2(self.u0(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        h = self.u1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------- text encoder
class TextEncoder(nn.Module):
    """CLIP-like: causal transformer; pooled output is the final hidden state at the
    first end-of-text token (the largest id, found with argmax as CLIP does)."""

    def __init__(self, vocab_size, max_length=16, dim=64, layers=2, heads=4):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.zeros(max_length, dim))
        nn.init.normal_(self.position_embedding, std=0.02)
        self.layers = nn.ModuleList(
            [nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                        batch_first=True, norm_first=True) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(dim)
        mask = torch.full((max_length, max_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, input_ids):
        L = input_ids.shape[1]
        h = self.token_embedding(input_ids) + self.position_embedding[:L]
        for layer in self.layers:
            h = layer(h, src_mask=self.causal_mask[:L, :L])
        h = self.final_layer_norm(h)
        eos = input_ids.to(torch.int64).argmax(dim=-1)
        pooled = h[torch.arange(h.shape[0]), eos]
        return h, pooled


# ------------------------------------------------------------------------------- UNet
def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim):
        super().__init__()
        self.n1, self.c1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2, self.c2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x))) + self.t(F.silu(temb))[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, dim, ctx_dim, heads=2):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(ctx_dim, dim, bias=False)
        self.v = nn.Linear(ctx_dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def attend(self, q, k, v):
        B, N, C = q.shape
        h = self.heads
        q = q.reshape(B, N, h, C // h).transpose(1, 2)
        k = k.reshape(B, k.shape[1], h, C // h).transpose(1, 2)
        v = v.reshape(B, v.shape[1], h, C // h).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // h), dim=-1)
        return (w @ v).transpose(1, 2).reshape(B, N, C)

    def forward(self, x, ctx):
        return self.out(self.attend(self.q(x), self.k(ctx), self.v(ctx)))


class IpAttention(Attention):
    """Decoupled cross-attention (IP-Adapter): text tokens and image tokens get separate
    key/value projections; the image branch is scaled by ip_scale."""

    def __init__(self, dim, ctx_dim, heads=2, image_tokens=4):
        super().__init__(dim, ctx_dim, heads)
        self.image_tokens = image_tokens
        self.k_ip = nn.Linear(ctx_dim, dim, bias=False)
        self.v_ip = nn.Linear(ctx_dim, dim, bias=False)

    def forward(self, x, ctx, ip_scale):
        text, image = ctx[:, :-self.image_tokens], ctx[:, -self.image_tokens:]
        q = self.q(x)
        h = self.attend(q, self.k(text), self.v(text))
        h = h + ip_scale * self.attend(q, self.k_ip(image), self.v_ip(image))
        return self.out(h)


class TransformerBlock(nn.Module):
    def __init__(self, ch, ctx_dim, ip=False):
        super().__init__()
        self.norm = group_norm(ch)
        self.proj_in = nn.Linear(ch, ch)
        self.ln1, self.attn1 = nn.LayerNorm(ch), Attention(ch, ch)
        self.ln2 = nn.LayerNorm(ch)
        self.attn2 = IpAttention(ch, ctx_dim) if ip else Attention(ch, ctx_dim)
        self.ln3 = nn.LayerNorm(ch)
        self.ff = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))
        self.proj_out = nn.Linear(ch, ch)

    def forward(self, x, ctx, ip_scale=None):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        n = self.ln1(h)
        h = h + self.attn1(n, n)
        n = self.ln2(h)
        h = h + (self.attn2(n, ctx, ip_scale) if ip_scale is not None else self.attn2(n, ctx))
        h = h + self.ff(self.ln3(h))
        return x + self.proj_out(h).transpose(1, 2).reshape(B, C, H, W)


class Grounding(nn.Module):
    """GLIGEN/MIGC-like grounding for a latent grid: each object's phrase embedding is
    turned into a feature and painted into its box (a soft mask at latent resolution);
    the result enters the UNet through a zero-initialized convolution."""

    def __init__(self, phrase_dim, ch):
        super().__init__()
        self.phrase = nn.Sequential(nn.Linear(phrase_dim, ch), nn.SiLU(), nn.Linear(ch, ch))
        self.null = nn.Parameter(torch.zeros(ch))
        self.conv = nn.Conv2d(ch + 1, ch, 3, padding=1)
        self.zero = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.zero.weight)
        nn.init.zeros_(self.zero.bias)

    def forward(self, boxes, phrase_embeds, mask, H, W):
        # cell centres in normalized coordinates; sharpness ~ one latent cell
        ys = (torch.arange(H, dtype=torch.float32) + 0.5) / H
        xs = (torch.arange(W, dtype=torch.float32) + 0.5) / W
        x0, y0, x1, y1 = [boxes[..., i, None, None] for i in range(4)]  # [B,K,1,1]
        tau = 2.0 * W
        mx = torch.sigmoid((xs[None, None, None, :] - x0) * tau) * torch.sigmoid((x1 - xs[None, None, None, :]) * tau)
        my = torch.sigmoid((ys[None, None, :, None] - y0) * tau) * torch.sigmoid((y1 - ys[None, None, :, None]) * tau)
        m = mx * my * mask[..., None, None]  # [B,K,H,W]
        f = self.phrase(phrase_embeds)  # [B,K,C]
        g = torch.einsum("bkhw,bkc->bchw", m, f)
        occ = m.sum(dim=1, keepdim=True)
        g = g + (1.0 - occ.clamp(max=1.0)) * self.null[None, :, None, None]
        return self.zero(F.silu(self.conv(torch.cat([g, occ], dim=1))))


class UNet(nn.Module):
    def __init__(self, ctx_dim=64, ch=(48, 96), latent_channels=4, kind="base", phrase_dim=64):
        super().__init__()
        self.kind = kind
        c0, c1 = ch
        tdim = 4 * c0
        self.tdim = c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        ip = kind == "style"
        self.conv_in = nn.Conv2d(latent_channels, c0, 3, padding=1)
        self.grounding = Grounding(phrase_dim, c0) if kind == "layout" else None
        # attention runs at the 4x4 level only: on 2 CPU cores it dominates training time
        # at 8x8, and objects span one or two 4x4 cells, enough to bind words to places
        self.down_res = ResBlock(c0, c0, tdim)
        self.downsample = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.down2_res = ResBlock(c0, c1, tdim)
        self.down2_attn = TransformerBlock(c1, ctx_dim, ip)
        self.mid_res1 = ResBlock(c1, c1, tdim)
        self.mid_attn = TransformerBlock(c1, ctx_dim, ip)
        self.mid_res2 = ResBlock(c1, c1, tdim)
        self.up2_res = ResBlock(c1 + c1, c1, tdim)
        self.up2_attn = TransformerBlock(c1, ctx_dim, ip)
        self.upsample = nn.Conv2d(c1, c1, 3, padding=1)
        self.up_res = ResBlock(c1 + c0, c0, tdim)
        self.norm_out = group_norm(c0)
        self.conv_out = nn.Conv2d(c0, latent_channels, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states, boxes=None, phrase_embeds=None,
                mask=None, ip_scale=None):
        ctx = encoder_hidden_states
        temb = self.time_mlp(timestep_embedding(timestep.reshape(-1).expand(sample.shape[0]), self.tdim))
        h = self.conv_in(sample)
        if self.grounding is not None:
            h = h + self.grounding(boxes, phrase_embeds, mask, sample.shape[2], sample.shape[3])
        s0 = self.down_res(h, temb)
        h = self.downsample(s0)
        s1 = self.down2_attn(self.down2_res(h, temb), ctx, ip_scale)
        h = self.mid_res2(self.mid_attn(self.mid_res1(s1, temb), ctx, ip_scale), temb)
        h = self.up2_attn(self.up2_res(torch.cat([h, s1], 1), temb), ctx, ip_scale)
        h = self.upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up_res(torch.cat([h, s0], 1), temb)
        return self.conv_out(F.silu(self.norm_out(h)))


# ------------------------------------------------------------------- style image encoder
class ImageEncoder(nn.Module):
    """Small CNN standing in for IP-Adapter's CLIP image encoder: 32x32 RGB in [-1,1] ->
    image_embeds [B, E]."""

    def __init__(self, embed_dim=64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(96, 96, 3, padding=1), nn.SiLU())
        self.head = nn.Linear(96 * 2, embed_dim)

    def forward(self, pixel_values):
        h = self.net(pixel_values)
        # mean and std pooling: style lives in texture statistics
        stats = torch.cat([h.mean(dim=(2, 3)), (h.var(dim=(2, 3)) + 1e-5).sqrt()], dim=1)
        return self.head(stats)


class ImageProjection(nn.Module):
    """IP-Adapter's projection: image_embeds [B,E] -> image tokens [B, T, D]."""

    def __init__(self, embed_dim=64, ctx_dim=64, tokens=4):
        super().__init__()
        self.tokens, self.ctx_dim = tokens, ctx_dim
        self.proj = nn.Linear(embed_dim, tokens * ctx_dim)
        self.norm = nn.LayerNorm(ctx_dim)

    def forward(self, image_embeds):
        return self.norm(self.proj(image_embeds).reshape(-1, self.tokens, self.ctx_dim))
