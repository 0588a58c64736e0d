"""Grounding: GLIGEN's gated self-attention fuser and the two position nets that turn
boxes and phrases into grounding tokens (GLIGEN's text+box net; InteractDiffusion's
subject/action/object net). Written from the published architectures (GLIGEN, Li et al.
2023; InteractDiffusion, Hoe et al. 2024) as diffusers and InteractDiffusion's diffusers
port lay them out; parameter names are theirs.

The fuser takes a `gate` in addition to the tokens: 1 runs it, 0 makes it the identity
exactly (x + 0 * f(x) = x). Pipelines switch the fusers off after the first
beta * steps steps ("scheduled sampling"); a gate input lets one ONNX graph do both.
"""
import torch
from torch import nn

from nn_layers import Attention, FeedForward


class GatedSelfAttentionDense(nn.Module):
    """x <- x + tanh(alpha_attn) * SelfAttn(LN([x, W objs]))[:n_visual]
       x <- x + tanh(alpha_dense) * FF(LN(x))"""

    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        self.linear = nn.Linear(context_dim, query_dim)
        self.attn = Attention(query_dim, heads, dim_head)
        self.ff = FeedForward(query_dim)
        self.norm1 = nn.LayerNorm(query_dim)
        self.norm2 = nn.LayerNorm(query_dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, objs, gate):
        n_visual = x.shape[1]
        both = self.norm1(torch.cat([x, self.linear(objs)], dim=1))
        x = x + gate * torch.tanh(self.alpha_attn) * self.attn(both)[:, :n_visual, :]
        return x + gate * torch.tanh(self.alpha_dense) * self.ff(self.norm2(x))


def fourier_box_embedding(boxes, freqs):
    """[B, N, 4] xyxy boxes -> [B, N, freqs*2*4]: sin and cos of each coordinate at
    frequencies 100^(k/freqs), laid out frequency-major (f0 sin xyxy, f0 cos xyxy, f1 ...)."""
    b, n = boxes.shape[0], boxes.shape[1]
    k = torch.arange(freqs, dtype=boxes.dtype, device=boxes.device)
    scale = torch.pow(torch.tensor(100.0, dtype=boxes.dtype), k / freqs)
    args = boxes[:, :, :, None] * scale  # [B, N, 4, F]
    emb = torch.stack([torch.sin(args), torch.cos(args)], dim=-1)  # [B, N, 4, F, 2]
    return emb.permute(0, 1, 3, 4, 2).reshape(b, n, freqs * 2 * 4)


def _mlp(in_dim, out_dim):
    # keys linears.0, linears.2, linears.4 (SiLU at 1 and 3)
    return nn.Sequential(nn.Linear(in_dim, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, out_dim))


class TextBoxPositionNet(nn.Module):
    """GLIGEN (text + box): one token per object from its phrase embedding (CLIP pooled)
    and its box; padded objects (mask 0) use learned null features instead."""

    def __init__(self, positive_len, out_dim, freqs=8):
        super().__init__()
        self.freqs = freqs
        position_dim = freqs * 2 * 4
        self.linears = _mlp(positive_len + position_dim, out_dim)
        self.null_positive_feature = nn.Parameter(torch.zeros(positive_len))
        self.null_position_feature = nn.Parameter(torch.zeros(position_dim))

    def forward(self, boxes, phrase_embeds, mask):
        m = mask[:, :, None]
        xyxy = fourier_box_embedding(boxes, self.freqs) * m + (1 - m) * self.null_position_feature[None, None]
        text = phrase_embeds * m + (1 - m) * self.null_positive_feature[None, None]
        return self.linears(torch.cat([text, xyxy], dim=-1))


def between_box(a, b):
    """InteractDiffusion's action box: the region between subject and object boxes, i.e.
    the 2nd and 3rd smallest of the four x coordinates, likewise for y."""
    xs = torch.sort(torch.cat([a[:, :, 0::2], b[:, :, 0::2]], dim=-1), dim=-1).values
    ys = torch.sort(torch.cat([a[:, :, 1::2], b[:, :, 1::2]], dim=-1), dim=-1).values
    return torch.stack([xs[:, :, 1], ys[:, :, 1], xs[:, :, 2], ys[:, :, 2]], dim=2)


class LearnedEmbedding(nn.Module):
    """A table of learned vectors (key `emb.weight`)."""

    def __init__(self, count, dim):
        super().__init__()
        self.emb = nn.Embedding(count, dim)


class InteractionPositionNet(nn.Module):
    """InteractDiffusion: three tokens per interaction (subject, action, object). Subject
    and object share one MLP over (phrase, box); the action has its own MLP over (action
    phrase, between-box). Each token gets a learned per-slot embedding ("interaction
    embedding", slot i of the N) and a learned role embedding (0 subject, 1 object,
    2 action). Tokens are returned as [subjects, actions, objects]."""

    def __init__(self, in_dim, out_dim, freqs=8, max_slots=32):
        super().__init__()
        self.freqs = freqs
        position_dim = freqs * 2 * 4
        self.interaction_embedding = LearnedEmbedding(max_slots, out_dim)
        self.position_embedding = LearnedEmbedding(3, out_dim)
        self.linears = _mlp(in_dim + position_dim, out_dim)
        self.linear_action = _mlp(in_dim + position_dim, out_dim)
        self.null_positive_feature = nn.Parameter(torch.zeros(in_dim))
        self.null_action_feature = nn.Parameter(torch.zeros(in_dim))
        self.null_position_feature = nn.Parameter(torch.zeros(position_dim))

    def forward(self, subject_boxes, object_boxes, subject_phrase_embeds, object_phrase_embeds, action_phrase_embeds, mask):
        m = mask[:, :, None]
        null_xyxy = self.null_position_feature[None, None]

        def place(boxes):
            return fourier_box_embedding(boxes, self.freqs) * m + (1 - m) * null_xyxy

        def phrase(e, null):
            return e * m + (1 - m) * null[None, None]

        subj = self.linears(torch.cat([phrase(subject_phrase_embeds, self.null_positive_feature), place(subject_boxes)], dim=-1))
        obj = self.linears(torch.cat([phrase(object_phrase_embeds, self.null_positive_feature), place(object_boxes)], dim=-1))
        action_boxes = between_box(subject_boxes, object_boxes)
        act = self.linear_action(torch.cat([phrase(action_phrase_embeds, self.null_action_feature), place(action_boxes)], dim=-1))

        n = subj.shape[1]
        slots = self.interaction_embedding.emb.weight[:n][None]
        roles = self.position_embedding.emb.weight
        subj = subj + slots + roles[0]
        obj = obj + slots + roles[1]
        act = act + slots + roles[2]
        return torch.cat([subj, act, obj], dim=1)
