"""Fixers by name: `create_fixer(name, **params)`."""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import GapkitError
from .base import Fixer
from .calibrate import CalibratedScores
from .centering import MeanCentering, RoleCentering
from .chain import FixerChain
from .complement import ComplementShift
from .isoclip import IsoCLIP
from .noise import GaussianNoise
from .procrustes import ProcrustesMap
from .shift import GapShift
from .standardize import Standardize
from .topk import TopKGapRemoval

FIXERS: dict[str, type[Fixer]] = {cls.name: cls for cls in (
    GapShift, MeanCentering, RoleCentering, Standardize, TopKGapRemoval, ProcrustesMap, GaussianNoise,
    CalibratedScores, FixerChain, IsoCLIP, ComplementShift,
)}


def available_fixers() -> list[str]:
    return sorted(FIXERS)


def fixer_params(name: str) -> dict[str, Any]:
    """Parameter names of a fixer and their defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[1:]}


def _lookup(name: str) -> type[Fixer]:
    if name not in FIXERS:
        raise GapkitError(f"unknown fixer '{name}'; known: {', '.join(available_fixers())}")
    return FIXERS[name]


def create_fixer(name: str, **params: Any) -> Fixer:
    """Build the fixer registered under `name` with keyword parameters (unknown ones are an error)."""
    cls = _lookup(name)
    allowed = fixer_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise GapkitError(f"fixer '{name}' has no parameter {', '.join(unknown)}; its parameters: "
                          f"{', '.join(allowed) or '(none)'}")
    from ..typecheck import check_kwargs

    # values from the CLI and from saved fixer files are checked against the constructor's annotations
    return cls(**check_kwargs(cls, params, f"fixer '{name}'"))
