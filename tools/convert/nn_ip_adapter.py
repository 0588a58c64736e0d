"""IP-Adapter (Ye et al. 2023), written from the published architecture: an image
projection that turns one CLIP image embedding into a few extra context tokens, and a
decoupled cross-attention in each of the UNet's cross-attention layers that attends to
those tokens with its own key/value projections and adds the result, weighted by a scale,
to the text cross-attention.

The image tokens ride at the end of encoder_hidden_states ([text tokens, image tokens]),
as the reference pipeline passes them; the layer splits them off by count.
"""
from torch import nn

from nn_layers import Attention


class ImageProjection(nn.Module):
    """[B, E] image embedding -> [B, tokens, D]: one linear layer, then LayerNorm per token."""

    def __init__(self, image_embed_dim, cross_attention_dim, tokens):
        super().__init__()
        self.tokens = tokens
        self.dim = cross_attention_dim
        self.proj = nn.Linear(image_embed_dim, tokens * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, image_embeds):
        return self.norm(self.proj(image_embeds).reshape(-1, self.tokens, self.dim))


class DecoupledCrossAttention(Attention):
    """Cross-attention to the text tokens plus scale * attention to the image tokens; both
    share the query and the output projection (keys to_k_ip, to_v_ip have no bias)."""

    def __init__(self, query_dim, heads, dim_head, context_dim, tokens):
        super().__init__(query_dim, heads, dim_head, context_dim=context_dim)
        inner = heads * dim_head
        self.tokens = tokens
        self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
        self.to_v_ip = nn.Linear(context_dim, inner, bias=False)

    def forward(self, x, context=None, ip_scale=None):
        split = context.shape[1] - self.tokens
        text, image = context[:, :split], context[:, split:]
        q = self.to_q(x)
        out = self.attend(q, self.to_k(text), self.to_v(text))
        out = out + ip_scale * self.attend(q, self.to_k_ip(image), self.to_v_ip(image))
        return self.to_out[0](out)
