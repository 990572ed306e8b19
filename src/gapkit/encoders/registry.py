"""Encoder registry: "prefix[:argument]" -> factory(argument, checkpoint=..., **kw) -> Encoder.

Built-in prefixes (see `list_encoders()` / `gapkit encoders --list`):
    towers[:heads]      EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, heads random|pca|identity|PATH
    open_clip:ARCH      an open_clip architecture or a JSON config path; --checkpoint = local weights
    hf:DIR              a HF transformers CLIPModel / SiglipModel directory (offline)
    sbert:NAME|DIR      a sentence-transformers model, text side only ("minilm" = the bundled one)
    gapkit:NAME         gapkit's own models; the train branch registers the loader (see gapkit_models)
Factories are imported lazily so `import gapkit.encoders` stays light.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import GapkitError


@dataclass
class EncoderEntry:
    factory: Callable[..., Any] | str  # a callable, or "module:function" imported on first use
    help: str
    example: str


_REGISTRY: dict[str, EncoderEntry] = {
    "towers": EncoderEntry("gapkit.encoders.towers:create_towers",
                           "pretrained EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2 towers with projection heads "
                           "(random | pca | identity | PATH to trained heads)", "towers:random"),
    "open_clip": EncoderEntry("gapkit.encoders.open_clip_adapter:create_open_clip",
                              "open_clip architecture (random init, or --checkpoint local weights); arg may be a JSON config",
                              "open_clip:ViT-B-32"),
    "hf": EncoderEntry("gapkit.encoders.hf:create_hf", "HF transformers CLIPModel/SiglipModel saved in a local directory",
                       "hf:/models/clip-vit-base-patch32"),
    "sbert": EncoderEntry("gapkit.encoders.sbert:create_sbert",
                          "sentence-transformers text encoder (text side only); 'minilm' = bundled all-MiniLM-L6-v2",
                          "sbert:minilm"),
    "gapkit": EncoderEntry("gapkit.encoders.gapkit_models:create_gapkit_model",
                           "gapkit's own models (from gapkit.models / train checkpoints)", "gapkit:tiny-vit"),
}


def register_encoder(prefix: str, factory: Callable[..., Any] | str, help: str = "", example: str = "",
                     overwrite: bool = False) -> None:
    """Register `factory(arg, checkpoint=None, **kw) -> Encoder` under `prefix`."""
    if ":" in prefix or not prefix:
        raise GapkitError(f"encoder prefix must be a non-empty name without ':', got {prefix!r}")
    if prefix in _REGISTRY and not overwrite:
        raise GapkitError(f"encoder prefix {prefix!r} is already registered (pass overwrite=True)")
    _REGISTRY[prefix] = EncoderEntry(factory, help or prefix, example or prefix)


def list_encoders() -> dict[str, EncoderEntry]:
    return dict(_REGISTRY)


def _resolve(factory: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(factory):
        return factory
    module, func = factory.split(":")
    return getattr(importlib.import_module(module), func)


def get_encoder(name: str, checkpoint: str | os.PathLike | None = None, **kw: Any) -> Any:
    """Build the encoder `name` ("prefix" or "prefix:arg"), loading `checkpoint` where given."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never spend ~50 s retrying a hub that cannot be reached
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    prefix, _, arg = str(name).partition(":")
    if prefix not in _REGISTRY:
        raise GapkitError(f"unknown encoder {name!r}; known prefixes: {', '.join(sorted(_REGISTRY))} "
                          "(see `gapkit encoders --list`)")
    return _resolve(_REGISTRY[prefix].factory)(arg or None, checkpoint=checkpoint, **kw)
