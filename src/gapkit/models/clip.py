"""Contrastive image-text models: two-tower CLIP and SharedCLIP (AlignCLIP's architecture).

Both return from forward(images, tokens):
    {"image_features": (B, E) L2-normalised, "text_features": (B, E) L2-normalised,
     "logit_scale": scalar s = exp(min(t, ln 100))}          t = the learnable log-scale
The log-scale starts at ln(1/0.07) and is clamped to ln 100 (CLIP's settings).

Optional Procrustes amendment (Liang et al. 2022, Sec. 4.4): a fixed orthogonal (E, E) matrix W
stored as the buffer `text_rotation`; encode_text then returns y W^T (rows), i.e. W y.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Transformer
from .towers import ConvNet, PatchEmbedder, TextTransformer, TokenEmbedder, VisionTransformer, eot_pool, heads_of

LOGIT_SCALE_MAX = math.log(100.0)


class ContrastiveModel(nn.Module):
    """Shared behaviour: logit scale, normalisation, optional text rotation, forward()."""

    def __init__(self, init_logit_scale: float = 1 / 0.07) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        self.register_buffer("text_rotation", None)  # set by set_text_rotation (Procrustes init)
        self.config: dict[str, Any] = {}

    # Subclasses implement the raw towers.
    def _image(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, C, H, W) float pixels -> (B, E)."""
        x = self._image(images)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, L) token ids -> (B, E), rotated by `text_rotation` when the model is amended."""
        y = self._text(tokens)
        if self.text_rotation is not None:
            y = y @ self.text_rotation.T
        return F.normalize(y, dim=-1) if normalize else y

    def scale(self) -> torch.Tensor:
        """s = exp(t) with t clamped to ln 100 (the gradient stops at the clamp)."""
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()

    def set_text_rotation(self, w: torch.Tensor | None) -> None:
        """Install (or remove, with None) the fixed orthogonal text map; saved in state_dict."""
        if w is None:
            self._buffers["text_rotation"] = None
            return
        self.register_buffer("text_rotation", w.detach().clone().to(self.logit_scale.dtype))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "image_features": self.encode_image(images, normalize=True),
            "text_features": self.encode_text(tokens, normalize=True),
            "logit_scale": self.scale(),
        }


class CLIP(ContrastiveModel):
    """Two towers: a ViT or CNN image tower and a causal text transformer, each with a projection."""

    def __init__(self, embed_dim: int, vision_cfg: dict[str, Any], text_cfg: dict[str, Any],
                 init_logit_scale: float = 1 / 0.07) -> None:
        super().__init__(init_logit_scale)
        v, t = vision_cfg, text_cfg
        if v.get("type", "vit") == "cnn":
            self.visual: nn.Module = ConvNet(embed_dim, list(v["widths"]), v.get("in_channels", 3))
        else:
            self.visual = VisionTransformer(embed_dim, v["image_size"], v["patch_size"], v["width"], v["layers"],
                                            heads_of(v), v.get("mlp_ratio", 4.0), v.get("in_channels", 3))
        self.text = TextTransformer(embed_dim, t["vocab_size"], t["context_length"], t["width"], t["layers"],
                                    heads_of(t), t.get("mlp_ratio", 4.0))

    def _image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def _text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)


class SharedCLIP(ContrastiveModel):
    """One transformer, one final LayerNorm, one projection and one logit scale for both modalities.

    Only the input embedders differ: images go through a bias-free patch conv + CLS + positions +
    ln_pre, texts through token + position embeddings and a causal mask. Images pool at CLS,
    texts at EOT (Eslami & de Melo, "Mitigate the Gap", SharedCLIP).
    """

    def __init__(self, embed_dim: int, width: int, layers: int, heads: int, vision_cfg: dict[str, Any],
                 text_cfg: dict[str, Any], mlp_ratio: float = 4.0, init_logit_scale: float = 1 / 0.07) -> None:
        super().__init__(init_logit_scale)
        v, t = vision_cfg, text_cfg
        self.image_embed = PatchEmbedder(v["image_size"], v["patch_size"], width, v.get("in_channels", 3))
        self.text_embed = TokenEmbedder(t["vocab_size"], t["context_length"], width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio)
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Parameter((width ** -0.5) * torch.randn(width, embed_dim))

    def _image(self, images: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.image_embed(images))
        return self.ln_final(x[:, 0]) @ self.proj

    def _text(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.text_embed(tokens), causal=True)
        return self.ln_final(eot_pool(x, tokens)) @ self.proj
