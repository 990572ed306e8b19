"""The pre-LayerNorm transformer shared by every gapkit tower (as in CLIP / open_clip).

    x <- x + Attn(LN1(x))          multi-head self-attention, optional causal mask
    x <- x + MLP(LN2(x))           Linear(W, r W) -> GELU -> Linear(r W, W)

Shapes: (B, L, W) in, (B, L, W) out. Attention runs through F.scaled_dot_product_attention,
which picks the fused kernel of the device (no (L, L) mask tensor is built for causal text).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, w = x.shape
        # (B, L, 3W) -> 3 x (B, H, L, W/H)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """One residual block: attention then MLP, each behind its own LayerNorm."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of `layers` blocks; `causal=True` lets token t attend only to tokens <= t."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.width = width
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio) for _ in range(layers)])
        # CLIP's initialisation: attention/MLP output layers scaled down with depth so the
        # residual stream does not grow with the number of layers.
        proj_std = (width ** -0.5) * ((2 * max(layers, 1)) ** -0.5)
        for blk in self.blocks:
            nn.init.normal_(blk.attn.qkv.weight, std=width ** -0.5)
            nn.init.normal_(blk.attn.out.weight, std=proj_std)
            nn.init.normal_(blk.mlp[0].weight, std=(2 * width) ** -0.5)
            nn.init.normal_(blk.mlp[2].weight, std=proj_std)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, causal=causal)
        return x
