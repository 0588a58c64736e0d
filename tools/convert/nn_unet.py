"""The conditional UNet of Stable Diffusion 1.x (Rombach et al. 2022), as diffusers'
UNet2DConditionModel lays it out, with two optional additions that keep the base
weights untouched:

- grounding ("gligen" or "interaction"): a gated self-attention `fuser` in every
  transformer block and a `position_net` that turns boxes and phrases into the tokens
  the fusers attend to (GLIGEN; InteractDiffusion);
- ip_tokens > 0: every cross-attention becomes IP-Adapter's decoupled cross-attention
  over the last `ip_tokens` tokens of encoder_hidden_states.

Block structure (heads per level, which levels attend) comes from the config.json,
checked by configs.unet_config.
"""
import torch
import torch.nn.functional as F
from torch import nn

from nn_grounding import GatedSelfAttentionDense, InteractionPositionNet, TextBoxPositionNet
from nn_ip_adapter import DecoupledCrossAttention
from nn_layers import Attention, Downsample, FeedForward, ResnetBlock, TimestepEmbedding, Upsample, timestep_embedding

GROUNDING_KINDS = (None, "gligen", "interaction")


class Cond:
    """What every transformer block sees besides its input."""

    def __init__(self, context, objs=None, gate=None, ip_scale=None):
        self.context = context
        self.objs = objs
        self.gate = gate
        self.ip_scale = ip_scale


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim, gated, ip_tokens):
        super().__init__()
        dim_head = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        if gated:
            self.fuser = GatedSelfAttentionDense(dim, context_dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        if ip_tokens:
            self.attn2 = DecoupledCrossAttention(dim, heads, dim_head, context_dim, ip_tokens)
        else:
            self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, cond):
        x = x + self.attn1(self.norm1(x))
        if hasattr(self, "fuser"):
            x = self.fuser(x, cond.objs, cond.gate)
        if isinstance(self.attn2, DecoupledCrossAttention):
            x = x + self.attn2(self.norm2(x), cond.context, cond.ip_scale)
        else:
            x = x + self.attn2(self.norm2(x), cond.context)
        return x + self.ff(self.norm3(x))


class Transformer2D(nn.Module):
    """GroupNorm, project in, transformer blocks over the H*W tokens, project out, residual."""

    def __init__(self, channels, heads, context_dim, groups, layers, linear_projection, gated, ip_tokens):
        super().__init__()
        self.linear_projection = linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        proj = (lambda: nn.Linear(channels, channels)) if linear_projection else (lambda: nn.Conv2d(channels, channels, 1))
        self.proj_in = proj()
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(channels, heads, context_dim, gated, ip_tokens) for _ in range(layers)])
        self.proj_out = proj()

    def forward(self, x, cond):
        b, c, h, w = x.shape
        residual = x
        x = self.norm(x)
        if self.linear_projection:
            x = self.proj_in(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
        else:
            x = self.proj_in(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            x = block(x, cond)
        if self.linear_projection:
            x = self.proj_out(x).reshape(b, h, w, c).permute(0, 3, 1, 2)
        else:
            x = self.proj_out(x.reshape(b, h, w, c).permute(0, 3, 1, 2))
        return x + residual


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (attn given) or DownBlock2D: resnets [+ transformers], then
    an optional stride-2 downsample. Returns every intermediate for the skip connections."""

    def __init__(self, in_ch, out_ch, temb_ch, layers, groups, eps, attn, downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(in_ch if i == 0 else out_ch, out_ch, temb_ch, groups, eps) for i in range(layers)])
        if attn is not None:
            self.attentions = nn.ModuleList([attn(out_ch) for _ in range(layers)])
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample(out_ch, padding=1)])

    def forward(self, x, temb, cond):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, cond)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D or UpBlock2D: each resnet takes the previous output concatenated
    with one skip connection (the last resnet the block's widest skip)."""

    def __init__(self, in_ch, prev_ch, out_ch, temb_ch, layers, groups, eps, attn, upsample):
        super().__init__()
        resnets = []
        for i in range(layers):
            skip_ch = in_ch if i == layers - 1 else out_ch
            resnets.append(ResnetBlock((prev_ch if i == 0 else out_ch) + skip_ch, out_ch, temb_ch, groups, eps))
        self.resnets = nn.ModuleList(resnets)
        if attn is not None:
            self.attentions = nn.ModuleList([attn(out_ch) for _ in range(layers)])
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample(out_ch)])

    def forward(self, x, skips, temb, cond, size):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, cond)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x, size)
        return x


class MidBlock(nn.Module):
    def __init__(self, ch, temb_ch, groups, eps, attn):
        super().__init__()
        self.attentions = nn.ModuleList([attn(ch)])
        self.resnets = nn.ModuleList([ResnetBlock(ch, ch, temb_ch, groups, eps), ResnetBlock(ch, ch, temb_ch, groups, eps)])

    def forward(self, x, temb, cond):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, cond)
        return self.resnets[1](x, temb)


class UNet2DCondition(nn.Module):
    def __init__(self, cfg, grounding=None, ip_tokens=0):
        super().__init__()
        if grounding not in GROUNDING_KINDS:
            raise ValueError(f"grounding {grounding!r}; allowed: {GROUNDING_KINDS}")
        if grounding and cfg["attention_type"] != "gated":
            raise ValueError(f"a {grounding} UNet needs attention_type \"gated\" in its config, not {cfg['attention_type']!r}")
        self.cfg = cfg
        self.grounding = grounding
        self.ip_tokens = ip_tokens
        ch = cfg["block_out_channels"]
        heads = cfg["heads"]
        temb_ch = ch[0] * 4
        groups, eps, ctx = cfg["norm_num_groups"], cfg["norm_eps"], cfg["cross_attention_dim"]
        gated = grounding is not None

        def attn(h):
            return lambda c: Transformer2D(c, h, ctx, groups, cfg["transformer_layers"], cfg["use_linear_projection"], gated, ip_tokens)

        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb_ch)
        n = len(ch)
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["down_block_types"]):
            self.down_blocks.append(DownBlock(ch[i - 1] if i else ch[0], ch[i], temb_ch, cfg["layers_per_block"], groups, eps,
                                              attn(heads[i]) if kind == "CrossAttnDownBlock2D" else None, downsample=i < n - 1))
        rch, rheads = list(reversed(ch)), list(reversed(heads))
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg["up_block_types"]):
            self.up_blocks.append(UpBlock(rch[min(i + 1, n - 1)], rch[i - 1] if i else rch[0], rch[i], temb_ch, cfg["layers_per_block"] + 1,
                                          groups, eps, attn(rheads[i]) if kind == "CrossAttnUpBlock2D" else None, upsample=i < n - 1))
        self.mid_block = MidBlock(ch[-1], temb_ch, groups, eps, attn(heads[-1]))
        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)
        if grounding == "gligen":
            self.position_net = TextBoxPositionNet(ctx, ctx)
        elif grounding == "interaction":
            self.position_net = InteractionPositionNet(ctx, ctx)

    def forward(self, sample, timestep, encoder_hidden_states, grounding=None, fuser_gate=None, ip_scale=None):
        cfg = self.cfg
        if timestep.dim() == 0:
            timestep = timestep[None]
        timestep = timestep.expand(sample.shape[0])
        temb = self.time_embedding(timestep_embedding(timestep, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"], cfg["freq_shift"]))
        objs = self.position_net(**grounding) if self.grounding else None
        cond = Cond(encoder_hidden_states, objs, fuser_gate, ip_scale)

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, s = block(x, temb, cond)
            skips += s
        x = self.mid_block(x, temb, cond)
        for block in self.up_blocks:
            n = len(block.resnets)
            mine, skips = skips[-n:], skips[:-n]
            # upsample to the next skip's size: equals 2x unless a side was odd on the way down
            size = skips[-1].shape[-2:] if hasattr(block, "upsamplers") else None
            x = block(x, mine, temb, cond, size)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def cross_attention_paths(cfg):
    """Dotted paths of every cross-attention (attn2), in the order diffusers lists the
    UNet's attention processors: down blocks, then up blocks, then the mid block. That
    order numbers IP-Adapter's published weights."""
    paths = []
    tl = cfg["transformer_layers"]
    for i, kind in enumerate(cfg["down_block_types"]):
        if kind == "CrossAttnDownBlock2D":
            for j in range(cfg["layers_per_block"]):
                paths += [f"down_blocks.{i}.attentions.{j}.transformer_blocks.{k}.attn2" for k in range(tl)]
    for i, kind in enumerate(cfg["up_block_types"]):
        if kind == "CrossAttnUpBlock2D":
            for j in range(cfg["layers_per_block"] + 1):
                paths += [f"up_blocks.{i}.attentions.{j}.transformer_blocks.{k}.attn2" for k in range(tl)]
    paths += [f"mid_block.attentions.0.transformer_blocks.{k}.attn2" for k in range(tl)]
    return paths
