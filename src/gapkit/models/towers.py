"""Encoder towers and the input embedders they are built from.

Image (ViT):  pixels (B, C, H, W) -> patch conv (no bias) -> [CLS; patches] + positions -> ln_pre
              -> transformer -> ln_post on CLS -> @ proj (W, E)                      -> (B, E)
Image (CNN):  pixels -> [conv3x3 stride 2 -> GroupNorm -> GELU] x stages -> mean pool -> Linear -> (B, E)
Text:         token ids (B, L) -> token + positions -> causal transformer -> ln_final
              -> the hidden state at the EOT token (the argmax id, as CLIP) -> @ proj (W, E) -> (B, E)

The embedders are separate modules because SharedCLIP reuses them in front of one shared
transformer.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .layers import Transformer


def heads_of(cfg: dict[str, Any]) -> int:
    """Number of attention heads: `heads` if given, else width // head_width (open_clip's rule)."""
    return int(cfg.get("heads") or cfg["width"] // cfg.get("head_width", 64))


class PatchEmbedder(nn.Module):
    """Pixels (B, C, H, W) -> (B, 1 + (H/p)^2, W): bias-free patch conv, CLS token, positions, ln_pre."""

    def __init__(self, image_size: int, patch_size: int, width: int, in_channels: int = 3) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        grid = image_size // patch_size
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, G*G, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)


class TokenEmbedder(nn.Module):
    """Token ids (B, L) -> (B, L, W): token embedding + learned positions."""

    def __init__(self, vocab_size: int, context_length: int, width: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]


def eot_pool(hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Hidden state at each sequence's end-of-text token: (B, L, W), (B, L) -> (B, W).

    The EOT id is the largest id in the vocabulary (CLIP BPE: 49407; gapkit's word tokenizer:
    vocab_size - 1), so its position is tokens.argmax(-1). This is CLIP's pooling, not max-pooling.
    """
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), tokens.argmax(dim=-1)]


class VisionTransformer(nn.Module):
    """ViT image tower (CLIP layout); CLS pooling."""

    def __init__(self, embed_dim: int, image_size: int, patch_size: int, width: int, layers: int,
                 heads: int, mlp_ratio: float = 4.0, in_channels: int = 3) -> None:
        super().__init__()
        self.embed = PatchEmbedder(image_size, patch_size, width, in_channels)
        self.transformer = Transformer(width, layers, heads, mlp_ratio)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter((width ** -0.5) * torch.randn(width, embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.embed(images))
        return self.ln_post(x[:, 0]) @ self.proj


class ConvNet(nn.Module):
    """Small CNN image tower: one stride-2 conv stage per entry of `widths`, mean pool, Linear."""

    def __init__(self, embed_dim: int, widths: list[int], in_channels: int = 3, groups: int = 8) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        c = in_channels
        for w in widths:
            stages += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(min(groups, w), w), nn.GELU()]
            c = w
        self.features = nn.Sequential(*stages)
        self.proj = nn.Linear(c, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(images).mean(dim=(2, 3)))


class TextTransformer(nn.Module):
    """Causal text tower (CLIP layout); EOT pooling."""

    def __init__(self, embed_dim: int, vocab_size: int, context_length: int, width: int, layers: int,
                 heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.embed = TokenEmbedder(vocab_size, context_length, width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter((width ** -0.5) * torch.randn(width, embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # LayerNorm acts per token, so pooling first and normalising one row per text is equivalent.
        x = self.transformer(self.embed(tokens), causal=True)
        return self.ln_final(eot_pool(x, tokens)) @ self.text_projection
