"""Mergeable fit statistics: what most fixers need from a calibration set, shard by shard.

For the L2-normalised rows u_i of one modality (i = 1..n), `Moments` holds
    n, mean = (1/n) sum_i u_i (D,), m2 = sum_i (u_i - mean)^2 (D,)      (per dimension)
and `FitStats` holds the moments of both modalities plus, where a fixer needs it, the cross sum
    cross = sum_i y_i^T x_i (D, D)                                       (1:1 pairs)
Two shards' statistics merge exactly (Chan, Golub & LeVeque 1979, the pairwise update):
    n = na + nb, delta = mean_b - mean_a, mean = mean_a + delta nb / n,
    m2 = m2_a + m2_b + delta^2 na nb / n
so fitting from merged statistics equals fitting on all rows at once, to float64 rounding.
and, where a fixer needs it, the moments of the fused pairs normalise(w x_i + (1 - w) y_i).
Fixers that can fit this way implement `_fit_stats(stats)` (center, role-center, shift with a
numeric lam, standardize, topk, procrustes, noise); the other two need the rows themselves: shift
with lam="close" searches lam over the calibration pairs, and calibrated fits a logistic model to
matched and unmatched pair cosines.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GapkitError
from ._stream import DEFAULT_CHUNK, normalized_chunks


@dataclass
class Moments:
    """n, per-dimension mean (D,) and centred sum of squares m2 (D,) of unit rows, float64."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, name: str, chunk: int = DEFAULT_CHUNK) -> "Moments":
        """One streaming pass over x (N, D); chunks merged with the same update as shards."""
        out: Moments | None = None
        for _, _, u in normalized_chunks(x, name, chunk):
            mu = u.mean(axis=0)
            part = Moments(u.shape[0], mu, ((u - mu) ** 2).sum(axis=0))
            out = part if out is None else out.merge(part)
        if out is None:
            raise GapkitError(f"{name}: no rows")
        return out

    def merge(self, o: "Moments") -> "Moments":
        if o.mean.shape != self.mean.shape:
            raise GapkitError(f"cannot merge rows of dim {o.mean.shape[0]} into rows of dim {self.mean.shape[0]} "
                              "(mixed dimensions across shards)")
        n = self.n + o.n
        delta = o.mean - self.mean
        return Moments(n, self.mean + delta * (o.n / n), self.m2 + o.m2 + delta**2 * (self.n * o.n / n))

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per dimension, (D,)."""
        return np.sqrt(np.maximum(self.m2 / self.n, 0.0))


@dataclass
class FitStats:
    """Moments of both modalities and (optional) the (D, D) cross sum of 1:1 pairs and the moments
    of their fused rows (with the weight they were fused with)."""

    image: Moments
    text: Moments
    cross: np.ndarray | None = None
    fused: Moments | None = None
    fuse_weight: float | None = None

    @property
    def dim(self) -> int:
        return int(self.image.mean.shape[0])

    def merge(self, o: "FitStats") -> "FitStats":
        cross = None if self.cross is None or o.cross is None else self.cross + o.cross
        fused = None
        if self.fused is not None and o.fused is not None:
            if self.fuse_weight != o.fuse_weight:
                raise GapkitError("cannot merge fused statistics made with different fuse weights")
            fused = self.fused.merge(o.fused)
        return FitStats(self.image.merge(o.image), self.text.merge(o.text), cross, fused,
                        self.fuse_weight if fused is not None else None)


def fused_moments(image: np.ndarray, text: np.ndarray, weight: float, chunk: int = DEFAULT_CHUNK) -> Moments:
    """Moments of the fused rows normalise(w x_i + (1 - w) y_i) of 1:1 pairs, chunk by chunk."""
    from .centering import fuse

    out: Moments | None = None
    for s in range(0, image.shape[0], chunk):
        part = Moments.of(fuse(image[s:s + chunk], text[s:s + chunk], weight), "fused embeddings", chunk)
        out = part if out is None else out.merge(part)
    if out is None:
        raise GapkitError("fused statistics need at least one pair")
    return out


def fit_stats(image: np.ndarray, text: np.ndarray, cross: bool = False, chunk: int = DEFAULT_CHUNK,
              fuse_weight: float | None = None) -> FitStats:
    """FitStats of 1:1 pairs image (n, D), text (n, D); `cross` adds sum_i y_i^T x_i and
    `fuse_weight` the moments of the fused pairs."""
    c = None
    if cross:
        from .procrustes import cross_covariance

        c = cross_covariance(image, text, None, chunk)
    fused = None if fuse_weight is None else fused_moments(image, text, float(fuse_weight), chunk)
    return FitStats(Moments.of(image, "image embeddings", chunk), Moments.of(text, "text embeddings", chunk), c,
                    fused, None if fuse_weight is None else float(fuse_weight))


def merge_fit_stats(a: FitStats, b: FitStats) -> FitStats:
    """a.merge(b): the reduction the engines run in a tree."""
    return a.merge(b)
