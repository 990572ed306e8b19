"""Gaussian noise injection (C3 "corrupt", Zhang et al. 2024) for uni-modal training.

    x' = normalise(x + eps),  eps ~ N(0, std^2 I_D)   (so ||eps|| is about std * sqrt(D): 2.9 for D = 512 at the default)

The default std is C3's and CapDec's: noise variance 0.016, std = sqrt(0.016) = 0.126 (Nukrai et al.
2022, CapDec; Zhang et al. 2024, C3). gapkit's earlier default was 0.02 (variance 4e-4, 40x less
noise); pass std=0.02 for it. C3 adds the noise to the *centred, un-normalised* embedding and then
normalises: the chain `center(renormalize=False) -> noise` (gapkit.fixers.chain) does exactly that.
Training a decoder on noisy text embeddings makes it tolerant to the image-text offset, so it
can later be fed image embeddings. The noise for row r is drawn from a generator keyed by
(seed, modality, r // 4096), so the output does not depend on the chunk size.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import math

from ..errors import GapkitError
from ._stream import normalize_rows
from .base import Fixer

_BLOCK = 4096
_MOD_ID = {"image": 0, "text": 1}
#: C3 / CapDec: noise variance 0.016 on the embedding, i.e. std sqrt(0.016) = 0.1265.
C3_STD = math.sqrt(0.016)


class GaussianNoise(Fixer):
    """Add isotropic Gaussian noise and re-normalise. `apply_to` picks the modalities that get
    noise ("both", "image" or "text"); the other passes through normalised. Fitted: dim_ only.

    Each transform call restarts the generator at the first row, so calling it twice on the same
    rows gives the same noise; pass `seed` to draw fresh noise (e.g. once per training epoch).
    """

    name = "noise"

    def __init__(self, std: float = C3_STD, apply_to: str = "both", seed: int = 0) -> None:
        self.std = std
        self.apply_to = apply_to
        self.seed = seed

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        self._check_params()

    def _fit_stats(self, stats: Any) -> None:
        self._check_params()

    def _check_params(self) -> None:
        if self.apply_to not in ("both", "image", "text"):
            raise GapkitError(f"noise: apply_to must be both, image or text, got '{self.apply_to}'")
        if not float(self.std) >= 0:
            raise GapkitError(f"noise: std must be >= 0, got {self.std}")

    def _noise(self, start: int, n: int, modality: str) -> np.ndarray:
        d = self.dim_
        first, last = start // _BLOCK, (start + n - 1) // _BLOCK
        blocks = [np.random.default_rng([int(self.seed), _MOD_ID[modality], b]).standard_normal((_BLOCK, d))
                  for b in range(first, last + 1)]
        allrows = np.concatenate(blocks)
        off = start - first * _BLOCK
        return allrows[off: off + n]

    def _transform_chunk(self, u: np.ndarray, modality: str, start: int) -> np.ndarray:
        if self.apply_to not in ("both", modality):
            return u
        return normalize_rows(u + float(self.std) * self._noise(start, u.shape[0], modality))
