"""Contrastive losses by name: `create_loss(name, **kw)`.

Every loss is an nn.Module called as loss(image_features, text_features, logit_scale, **extra)
and returns a dict of named terms whose keys end in "_loss"; the trainer sums those keys.
Features are (B, D) and L2-normalised; logit_scale is the exponentiated scale s = 1/tau.
Under torch.distributed every loss all-gathers the global batch itself (gather=True, the default;
see gapkit.losses._base and gapkit.distributed for the gradient convention). Formulas, defaults and
the paper-vs-code choices: docs/losses.md.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import GapkitError
from ..typecheck import check_kwargs

# name -> "module:Class", imported on use so `import gapkit.losses` does not import torch.
_LOSSES: dict[str, str] = {
    "clip": "gapkit.losses.clip:ClipLoss",
    "clip_chunked": "gapkit.losses.clip:ChunkedClipLoss",
    "clip_shi_eq7": "gapkit.losses.clip:ShiEq7ClipLoss",
    "siglip": "gapkit.losses.siglip:SigLipLoss",
    "imsep": "gapkit.losses.imsep:ImSepLoss",
    "simclr": "gapkit.losses.simclr:SimClrLoss",
    "slip": "gapkit.losses.simclr:SlipLoss",
    "cyclip": "gapkit.losses.cyclip:CyClipLoss",
    "uniformity": "gapkit.losses.uniformity:UniformityLoss",
    "alignment": "gapkit.losses.uniformity:AlignmentLoss",
    "cua": "gapkit.losses.uniformity:CuaLoss",
    "cuaxu": "gapkit.losses.uniformity:CuaxuLoss",
    "dual_ce": "gapkit.losses.dual_ce:DualCeLoss",
}


def register_loss(name: str, target: str) -> None:
    """Register `name` -> "module:Class" (for losses defined outside gapkit)."""
    _LOSSES[name] = target


def available_losses() -> list[str]:
    return sorted(_LOSSES)


def _resolve(target: str) -> Callable[..., Any]:
    import importlib

    mod, _, attr = target.partition(":")
    return getattr(importlib.import_module(mod), attr)


def create_loss(name: str, **kwargs: Any) -> Any:
    """Build the loss registered under `name` with keyword parameters."""
    import inspect

    if name not in _LOSSES:
        raise GapkitError(f"unknown loss '{name}'; known: {', '.join(available_losses())}")
    cls = _resolve(_LOSSES[name])
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:  # a misspelt parameter: say which loss and what it takes
        params = ", ".join(inspect.signature(cls).parameters)
        raise GapkitError(f"loss '{name}': {exc}; parameters: {params}") from None
    # values checked against the constructor's annotations: `beta="abc"` is one line, not a traceback
    return cls(**check_kwargs(cls, kwargs, f"loss '{name}'"))
