"""Post-hoc gap fixers with the scikit-learn contract (fit on a calibration set, transform new rows).

    >>> from gapkit.fixers import create_fixer, load_fixer
    >>> fx = create_fixer("center").fit(image, text)              # doctest: +SKIP
    >>> fx.transform(new_text, modality="text")                    # doctest: +SKIP
    >>> fx.save("center-fixer"); load_fixer("center-fixer")        # doctest: +SKIP

Fixers (docs/fixers.md gives each formula): shift, center, role-center, standardize, topk,
procrustes, noise, calibrated, chain, isoclip (projector weights), chowers.
"""
from __future__ import annotations

from .base import Fixer, load_fixer
from .calibrate import CalibratedScores
from .centering import ROLES, MeanCentering, RoleCentering, fuse
from .chain import FixerChain
from .complement import ComplementShift
from .isoclip import IsoCLIP
from .noise import GaussianNoise
from .procrustes import ProcrustesMap
from .registry import FIXERS, available_fixers, create_fixer, fixer_params
from .shift import GapShift, closing_lambda, shift_offsets, shift_pair, signed_gap
from .standardize import Standardize
from .topk import TopKGapRemoval

__all__ = [
    "Fixer", "load_fixer", "create_fixer", "available_fixers", "fixer_params", "FIXERS",
    "GapShift", "MeanCentering", "RoleCentering", "Standardize", "TopKGapRemoval", "ProcrustesMap",
    "GaussianNoise", "CalibratedScores", "FixerChain", "ROLES", "fuse", "shift_pair", "shift_offsets", "signed_gap",
    "closing_lambda", "IsoCLIP", "ComplementShift",
]
