"""Per-dimension standardisation per modality.

    mu_m, sd_m = per-dimension mean and standard deviation of modality m's unit rows, (D,) each
    x'         = normalise((x - mu_m) / sd_m)     (renormalize=True)   or   (x - mu_m) / sd_m

Beyond centring, this equalises the spread of every coordinate, so a few high-variance
dimensions (where the modalities differ most) no longer dominate cosine similarities.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._stream import moments_of_normalized, normalize_rows, unit_preimage
from .base import Fixer


class Standardize(Fixer):
    """Fitted: image_mean_, image_std_, text_mean_, text_std_ (each (D,)). std is floored at
    `eps` so constant coordinates do not divide by zero."""

    name = "standardize"

    def __init__(self, renormalize: bool = True, eps: float = 1e-6) -> None:
        self.renormalize = renormalize
        self.eps = eps

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        self.image_mean_, sd_i = moments_of_normalized(image, "image embeddings")
        self.text_mean_, sd_t = moments_of_normalized(text, "text embeddings")
        self.image_std_ = np.maximum(sd_i, self.eps)
        self.text_std_ = np.maximum(sd_t, self.eps)

    def _fit_stats(self, stats: Any) -> None:
        self.image_mean_, self.text_mean_ = stats.image.mean.copy(), stats.text.mean.copy()
        self.image_std_ = np.maximum(stats.image.std, self.eps)
        self.text_std_ = np.maximum(stats.text.std, self.eps)

    def _stats(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        if modality == "image":
            return self.image_mean_, self.image_std_
        return self.text_mean_, self.text_std_

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        mu, sd = self._stats(modality)
        z = (u - mu) / sd
        return normalize_rows(z) if self.renormalize else z

    def _inverse(self, u: np.ndarray, modality: str) -> np.ndarray:
        # x' = normalise((x - mu) / sd)  =>  x = b (sd * x') + mu with b > 0 and ||x|| = 1.
        mu, sd = self._stats(modality)
        return unit_preimage(u * sd, mu) if self.renormalize else u * sd + mu
