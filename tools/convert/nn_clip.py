"""CLIP's two towers (Radford et al. 2021) as transformers lays them out: the text encoder
Stable Diffusion conditions on (CLIPTextModel, keys text_model.*) and the image encoder
IP-Adapter reads (CLIPVisionModelWithProjection, keys vision_model.* and
visual_projection). Pre-LayerNorm transformer layers; causal mask for text.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def activation(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return F.gelu
    if name == "gelu_new":
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    raise ValueError(name)


class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, d = x.shape
        h = self.heads
        q = self.q_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.k_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, inner, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, dim)
        self.act = activation(act)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.self_attn = SelfAttention(d, cfg["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
        self.mlp = Mlp(d, cfg["intermediate_size"], cfg["hidden_act"])
        self.layer_norm2 = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class TextEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embedding = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])

    def forward(self, input_ids):
        n = input_ids.shape[1]
        return self.token_embedding(input_ids) + self.position_embedding.weight[:n][None]


class TextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.eos_token_id = cfg["eos_token_id"]
        self.embeddings = TextEmbeddings(cfg)
        self.encoder = Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, input_ids):
        n = input_ids.shape[1]
        pos = torch.arange(n, device=input_ids.device)
        # a large negative number, not -inf: the mask survives a cast to float16
        causal = (pos[None, :] > pos[:, None]).to(torch.float32) * -1e4
        x = self.final_layer_norm(self.encoder(self.embeddings(input_ids), causal[None, None]))
        # the pooled output is the hidden state at the end-of-text token: transformers
        # finds it as argmax(input_ids) when eos_token_id is the legacy 2 (EOS has the
        # highest id in CLIP's vocabulary), else as the first position holding eos_token_id
        if self.eos_token_id == 2:
            where = input_ids.to(torch.float32).argmax(dim=-1)
        else:
            where = (input_ids == self.eos_token_id).to(torch.float32).argmax(dim=-1)
        pooled = torch.gather(x, 1, where[:, None, None].expand(x.shape[0], 1, x.shape[2]))[:, 0]
        return x, pooled


class ClipTextModel(nn.Module):
    """input_ids [B, L] (int64) -> (last_hidden_state [B, L, D], pooler_output [B, D])."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.text_model = TextTransformer(cfg)

    def forward(self, input_ids):
        return self.text_model(input_ids)


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["hidden_size"], cfg["patch_size"]
        self.class_embedding = nn.Parameter(torch.zeros(d))
        self.patch_embedding = nn.Conv2d(cfg["num_channels"], d, p, stride=p, bias=False)
        self.position_embedding = nn.Embedding((cfg["image_size"] // p) ** 2 + 1, d)

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding[None, None].expand(pixel_values.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight[None]


class VisionTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.embeddings = VisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])  # sic: the published name
        self.encoder = Encoder(cfg)
        self.post_layernorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])

    def forward(self, pixel_values):
        x = self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))
        return self.post_layernorm(x[:, 0])


class ClipVisionModelWithProjection(nn.Module):
    """pixel_values [B, 3, S, S] (CLIP-normalized) -> image_embeds [B, projection_dim]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.vision_model = VisionTransformer(cfg)
        self.visual_projection = nn.Linear(cfg["hidden_size"], cfg["projection_dim"], bias=False)

    def forward(self, pixel_values):
        return self.visual_projection(self.vision_model(pixel_values))
