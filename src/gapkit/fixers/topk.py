"""Removal of the top-k gap dimensions (Schrodi et al. 2025).

    delta_d = |mean_i x_id - mean_j y_jd|        per-dimension gap contribution, (D,)
    K       = the k dimensions with the largest delta_d
    x'      = normalise(x with coordinates K set to 0)   (same for y)

A handful of coordinates carry most of the centroid gap in CLIP models; zeroing them closes much
of the gap while keeping the rest of the geometry. Not invertible (the removed coordinates are lost).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ._stream import mean_of_normalized
from .base import Fixer


class TopKGapRemoval(Fixer):
    """Fitted: gap_per_dim_ (D,) = |mean x - mean y| per coordinate, dims_ (k,) removed, sorted
    by decreasing contribution."""

    name = "topk"

    def __init__(self, k: int = 10, renormalize: bool = True) -> None:
        self.k = k
        self.renormalize = renormalize

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        k = int(self.k)
        if not 0 < k < image.shape[1]:
            raise GapkitError(f"topk: k must be in [1, {image.shape[1] - 1}], got {self.k}")
        self._set_gap(mean_of_normalized(image, "image embeddings") - mean_of_normalized(text, "text embeddings"))

    def _fit_stats(self, stats: Any) -> None:
        if not 0 < int(self.k) < stats.dim:
            raise GapkitError(f"topk: k must be in [1, {stats.dim - 1}], got {self.k}")
        self._set_gap(stats.image.mean - stats.text.mean)

    def _set_gap(self, gap: np.ndarray) -> None:
        self.gap_per_dim_ = np.abs(gap)
        self.dims_ = np.argsort(-self.gap_per_dim_, kind="stable")[: int(self.k)].astype(np.int64)

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        u[:, self.dims_] = 0.0  # u is a private float64 chunk, safe to modify in place
        if not self.renormalize:
            return u
        norms = np.linalg.norm(u, axis=1, keepdims=True)
        # A row living entirely in the removed coordinates has nothing left: keep it at zero.
        return np.divide(u, norms, out=np.zeros_like(u), where=norms > 0)
