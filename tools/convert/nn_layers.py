"""Layers shared by the UNet, the VAE and the grounding fusers, written from the public
architecture of Stable Diffusion 1.x as diffusers lays it out. Parameter names follow
diffusers' (to_q, to_out.0, conv_shortcut, ff.net.0.proj, ...), because diffusers' layout
is the published form most checkpoints ship in: the diffusers key map is then the
identity, and the other layouts (single-file LDM, IP-Adapter) map onto these names.

Everything is written to trace into a plain ONNX graph (opset 17): attention is
matmul + softmax, shapes come from the tensors (dynamic batch, height, width).
"""
import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def no_init():
    """Build modules without random initialization: every parameter is about to be
    overwritten by a checkpoint, and initializing 860M parameters costs seconds."""
    names = ["kaiming_uniform_", "kaiming_normal_", "uniform_", "normal_", "trunc_normal_", "zeros_", "ones_",
             "xavier_uniform_", "xavier_normal_", "constant_"]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda t, *a, **k: t)
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


class Attention(nn.Module):
    """Multi-head attention: self-attention when `context` is None, else cross-attention.
    `bias` is for to_q/to_k/to_v (off in the UNet, on in the VAE); to_out always has one."""

    def __init__(self, query_dim, heads, dim_head, context_dim=None, bias=False):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Identity()])  # [1] is diffusers' dropout

    def attend(self, q, k, v):
        """softmax(q k^T / sqrt(d)) v over heads; q [B, N, inner], k/v [B, M, inner]."""
        b, n, inner = q.shape
        h = self.heads
        q = q.reshape(b, n, h, inner // h).transpose(1, 2)
        k = k.reshape(b, k.shape[1], h, inner // h).transpose(1, 2)
        v = v.reshape(b, v.shape[1], h, inner // h).transpose(1, 2)
        w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        return torch.matmul(w, v).transpose(1, 2).reshape(b, n, inner)

    def forward(self, x, context=None):
        ctx = x if context is None else context
        out = self.attend(self.to_q(x), self.to_k(ctx), self.to_v(ctx))
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, inner width 4x (keys ff.net.0.proj, ff.net.2)."""

    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between (when the block
    has one: the UNet's do, the VAE's do not), 1x1 shortcut when the width changes."""

    def __init__(self, in_ch, out_ch, temb_ch, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_ch, out_ch) if temb_ch else None
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv. padding=0 is the VAE's form: pad right and bottom by one first."""

    def __init__(self, ch, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            # a zero row and column by concatenation: F.pad's ONNX export needs the
            # exporter's shape inference, which export.py turns off
            x = torch.cat([x, torch.zeros_like(x[:, :, :1, :])], dim=2)
            x = torch.cat([x, torch.zeros_like(x[:, :, :, :1])], dim=3)
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x (or to the skip connection's size, for sides that were odd on
    the way down), then a 3x3 conv."""

    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, size=None):
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


def timestep_embedding(timesteps, dim, flip_sin_to_cos, freq_shift, max_period=10000):
    """The sinusoidal embedding of DDPM timesteps, computed in float32 (as diffusers does:
    at t ~ 1000 half precision would lose the phase)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / (half - freq_shift)
    args = timesteps.to(torch.float32)[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))
