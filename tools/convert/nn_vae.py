"""The KL autoencoder of Stable Diffusion (Rombach et al. 2022) as diffusers'
AutoencoderKL lays it out: one module holding encoder, decoder and the two 1x1 "quant"
convs, so one checkpoint maps onto one module; the ONNX export wraps each half.
"""
import torch
import torch.nn.functional as F
from torch import nn

from nn_layers import Attention, Downsample, ResnetBlock, Upsample

EPS = 1e-6


class SpatialSelfAttention(Attention):
    """One-head self-attention over the H*W positions, GroupNorm first, residual after
    (the VAE's mid-block attention; q/k/v have biases)."""

    def __init__(self, ch, groups):
        super().__init__(ch, heads=1, dim_head=ch, bias=True)
        self.group_norm = nn.GroupNorm(groups, ch, eps=EPS)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        t = super().forward(t)
        return x + t.transpose(1, 2).reshape(b, c, h, w)


class VaeMidBlock(nn.Module):
    def __init__(self, ch, groups):
        super().__init__()
        self.attentions = nn.ModuleList([SpatialSelfAttention(ch, groups)])
        self.resnets = nn.ModuleList([ResnetBlock(ch, ch, None, groups, EPS), ResnetBlock(ch, ch, None, groups, EPS)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class EncoderBlock(nn.Module):
    def __init__(self, in_ch, out_ch, layers, groups, downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(in_ch if i == 0 else out_ch, out_ch, None, groups, EPS) for i in range(layers)])
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample(out_ch, padding=0)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
        return x


class DecoderBlock(nn.Module):
    def __init__(self, in_ch, out_ch, layers, groups, upsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(in_ch if i == 0 else out_ch, out_ch, None, groups, EPS) for i in range(layers)])
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample(out_ch)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, n = cfg["block_out_channels"], cfg["norm_num_groups"], len(cfg["block_out_channels"])
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            [EncoderBlock(ch[i - 1] if i else ch[0], ch[i], cfg["layers_per_block"], g, downsample=i < n - 1) for i in range(n)])
        self.mid_block = VaeMidBlock(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=EPS)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, n = list(reversed(cfg["block_out_channels"])), cfg["norm_num_groups"], len(cfg["block_out_channels"])
        self.conv_in = nn.Conv2d(cfg["latent_channels"], ch[0], 3, padding=1)
        self.mid_block = VaeMidBlock(ch[0], g)
        self.up_blocks = nn.ModuleList(
            [DecoderBlock(ch[i - 1] if i else ch[0], ch[i], cfg["layers_per_block"] + 1, g, upsample=i < n - 1) for i in range(n)])
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=EPS)
        self.conv_out = nn.Conv2d(ch[-1], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        lc = cfg["latent_channels"]
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, image):
        """[B, 3, H, W] in [-1, 1] -> [B, 2*latent, H/f, W/f]: mean and log-variance."""
        return self.quant_conv(self.encoder(image))

    def decode(self, latent):
        """Unscaled latent (already divided by scaling_factor) -> image in about [-1, 1]."""
        return self.decoder(self.post_quant_conv(latent))

    def forward(self, image):
        mean, _ = torch.chunk(self.encode(image), 2, dim=1)
        return self.decode(mean)
