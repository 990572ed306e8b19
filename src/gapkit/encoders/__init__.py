"""gapkit.encoders: real models behind one Encoder protocol, and cached embedding extraction.

    >>> from gapkit.encoders import get_encoder, extract
    >>> from gapkit.data import load_dataset
    >>> enc = get_encoder("towers")                                  # doctest: +SKIP
    >>> pe = extract(enc, load_dataset("emoji", "test"))             # doctest: +SKIP

Registry names: "towers[:random|pca|identity]", "open_clip:ARCH", "hf:DIR", "sbert:NAME",
"gapkit:NAME" (see `gapkit encoders --list`). torch is imported when this package is.
"""
from __future__ import annotations

from typing import Any

from .registry import get_encoder, list_encoders, register_encoder


def extract(*args: Any, **kwargs: Any) -> Any:
    """Embed a dataset with an encoder, through the on-disk cache (see gapkit.encoders.extraction)."""
    from .extraction import extract as _extract

    return _extract(*args, **kwargs)


def tower_features(*args: Any, **kwargs: Any) -> Any:
    """Raw (N, 1280) image and (M, 384) text features of the pretrained towers, cached."""
    from .towers import tower_features as _tf

    return _tf(*args, **kwargs)


__all__ = ["get_encoder", "list_encoders", "register_encoder", "extract", "tower_features"]
