"""Extension point for gapkit's own models (gapkit.models / train checkpoints).

The train branch plugs in with either
    gapkit.encoders.gapkit_models.set_model_loader(fn)   # fn(name, checkpoint=None, **kw) -> Encoder
or by providing `gapkit.models.load_encoder(name, checkpoint=None, **kw)`. `ModuleEncoder` wraps
any torch module that has encode_image(images) and encode_text(tokens), with its tokenizer and
image transform, so a loader is a few lines.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch

from ..errors import GapkitError
from .base import Encoder, as_float_cpu

_LOADER: Callable[..., Encoder] | None = None


def set_model_loader(fn: Callable[..., Encoder] | None) -> None:
    """Install (or with None, remove) the loader used for "gapkit:NAME" encoders."""
    global _LOADER
    _LOADER = fn


class ModuleEncoder(Encoder):
    """Wrap a module with encode_image(x) / encode_text(tokens) as an Encoder."""

    def __init__(self, model: torch.nn.Module, tokenize: Callable[[list[str]], torch.Tensor],
                 preprocess: Callable[[Any], torch.Tensor], name: str, embed_dim: int,
                 preprocessing: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.model, self.tokenize, self.preprocess = model.eval(), tokenize, preprocess
        self.name, self.embed_dim, self.device = name, int(embed_dim), device
        self.preprocessing = preprocessing or {"image": repr(preprocess)}

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @torch.inference_mode()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return as_float_cpu(self.model.encode_image(images.to(self.device)))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return as_float_cpu(self.model.encode_text(self.tokenize(list(texts)).to(self.device)))


def create_gapkit_model(name: str | None, checkpoint: str | os.PathLike | None = None, **kw: Any) -> Encoder:
    if _LOADER is not None:
        return _LOADER(name, checkpoint=checkpoint, **kw)
    try:
        from ..models import load_encoder  # provided by the train branch
    except ImportError:
        raise GapkitError("gapkit's own models are not available in this build: gapkit.models.load_encoder is "
                          "missing (or install a loader with gapkit.encoders.gapkit_models.set_model_loader)") from None
    return load_encoder(name, checkpoint=checkpoint, **kw)
