"""Shift along the gap vector (Liang et al. 2022, Sec. 4.2).

    g     = mean_i x_i - mean_j y_j                 gap vector of the calibration set, (D,)
    d     = g / ||g||   (unit=True) or g            direction of the shift
    both  : x' = normalise(x - (lam/2) d),  y' = normalise(y + (lam/2) d)
    image : x' = normalise(x - lam d),      y' = y
    text  : x' = x,                         y' = normalise(y + lam d)

lam > 0 moves the two clouds towards each other, lam < 0 apart. lam="close" picks the lam at which
the remaining gap's component along g is zero on the calibration set (bisection on a subsample);
re-normalisation leaves a small residual orthogonal to g (about 1 % of the gap on CLIP).
The signed remaining gap is ||mean x' - mean y'|| times the sign of <mean x' - mean y', g>, so
it turns negative once the clouds have crossed ("back to back").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ._stream import mean_of_normalized, normalize_rows, unit_preimage
from .base import Fixer

SIDES = ("both", "image", "text")


def shift_offsets(direction: np.ndarray, lam: float, side: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """Offsets (v_image, v_text) so that x' = normalise(x - v_image), y' = normalise(y - v_text)."""
    if side not in SIDES:
        raise GapkitError(f"side must be one of {', '.join(SIDES)}, got '{side}'")
    d = np.asarray(direction, dtype=np.float64)
    if side == "both":
        return (lam / 2) * d, -(lam / 2) * d
    if side == "image":
        return lam * d, np.zeros_like(d)
    return np.zeros_like(d), -lam * d


def shift_pair(image: np.ndarray, text: np.ndarray, direction: np.ndarray, lam: float,
               side: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """In-memory shift of unit rows: returns (normalise(x - v_image), normalise(y - v_text))."""
    vi, vt = shift_offsets(direction, lam, side)
    return normalize_rows(np.asarray(image, np.float64) - vi), normalize_rows(np.asarray(text, np.float64) - vt)


def signed_gap(image: np.ndarray, text: np.ndarray, reference: np.ndarray) -> float:
    """||mean x - mean y|| with the sign of <mean x - mean y, reference> (rows are unit)."""
    g = np.asarray(image).mean(axis=0) - np.asarray(text).mean(axis=0)
    n = float(np.linalg.norm(g))
    return n if float(g @ reference) >= 0 else -n


def _subsample(x: np.ndarray, n_max: int, seed: int = 0) -> np.ndarray:
    if x.shape[0] <= n_max:
        rows = np.asarray(x, dtype=np.float64)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], n_max, replace=False))
        rows = np.asarray(x[idx], dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def closing_lambda(image: np.ndarray, text: np.ndarray, direction: np.ndarray, side: str = "both",
                   n_max: int = 20_000, tol: float = 1e-6) -> float:
    """The lam >= 0 at which the signed remaining gap of the (subsampled) pairs crosses zero."""
    x, y = _subsample(image, n_max), _subsample(text, n_max, seed=1)
    g = x.mean(axis=0) - y.mean(axis=0)

    def remaining(lam: float) -> float:
        return signed_gap(*shift_pair(x, y, direction, lam, side), reference=g)

    lo, hi = 0.0, 1.0
    while remaining(hi) > 0:
        lo, hi = hi, hi * 2
        if hi > 64:
            raise GapkitError("could not find a shift that closes the gap (gap direction degenerate?)")
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if remaining(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


class GapShift(Fixer):
    """Shift both modalities (or one) along the gap vector and re-normalise.

    Parameters: lam (float or "close"), side ("both" | "image" | "text"), unit (shift along the
    unit direction g/||g||, as Liang's released code does; False shifts by multiples of g itself).
    Fitted: gap_ (D,), gap_distance_, direction_ (D,), lam_.
    """

    name = "shift"

    def __init__(self, lam: float | str = "close", side: str = "both", unit: bool = True) -> None:
        self.lam = lam
        self.side = side
        self.unit = unit

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        if self.side not in SIDES:
            raise GapkitError(f"shift: side must be one of {', '.join(SIDES)}, got '{self.side}'")
        self._set_gap(mean_of_normalized(image, "image embeddings") - mean_of_normalized(text, "text embeddings"))
        self.lam_ = float(_parse_lam(self.lam, image, text, self.direction_, self.side))

    @property
    def fits_from_stats(self) -> bool:
        return not isinstance(self.lam, str)  # lam="close" searches over the calibration rows

    def _fit_stats(self, stats: Any) -> None:
        if self.side not in SIDES:
            raise GapkitError(f"shift: side must be one of {', '.join(SIDES)}, got '{self.side}'")
        self._set_gap(stats.image.mean - stats.text.mean)
        self.lam_ = float(_parse_lam(self.lam, None, None, self.direction_, self.side))

    def _set_gap(self, gap: np.ndarray) -> None:
        self.gap_ = gap
        self.gap_distance_ = float(np.linalg.norm(self.gap_))
        if self.gap_distance_ == 0:
            raise GapkitError("shift: the calibration set has no gap (identical centroids)")
        self.direction_ = self.gap_ / self.gap_distance_ if self.unit else self.gap_.copy()

    def _offset(self, modality: str) -> np.ndarray:
        vi, vt = shift_offsets(self.direction_, self.lam_, self.side)
        return vi if modality == "image" else vt

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        return normalize_rows(u - self._offset(modality))

    def _inverse(self, u: np.ndarray, modality: str) -> np.ndarray:
        return unit_preimage(u, self._offset(modality))


def _parse_lam(lam: Any, image: np.ndarray, text: np.ndarray, direction: np.ndarray, side: str) -> float:
    if isinstance(lam, str):
        if lam != "close":
            raise GapkitError(f"shift: lam must be a number or 'close', got '{lam}'")
        return closing_lambda(image, text, direction, side)
    try:
        val = float(lam)
    except (TypeError, ValueError):
        raise GapkitError(f"shift: lam must be a number or 'close', got {lam!r}") from None
    if not np.isfinite(val):
        raise GapkitError("shift: lam must be finite")
    return val
