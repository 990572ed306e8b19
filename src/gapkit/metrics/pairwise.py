"""Uniformity (Wang & Isola 2020; Fahim et al. 2024) and the cone minimum: truly pairwise.

    uniformity(U)     = log mean_{i != k} exp(-2 ||u_i - u_k||^2)         within one modality
    uniformity(X, Y)  = log mean_{(i, j): i != t(j)} exp(-2 ||x_i - y_j||^2)  across, unpaired
    cone_cosine_min   = min_{i != k} <u_i, u_k>

For unit rows ||u - v||^2 = 2 - 2 <u, v>, so the kernel is exp(4 <u, v> - 4). Exact values run
in tiles (bounded memory, half the matrix within a modality by symmetry). Above EXACT_LIMIT rows
(unless exact=True) uniformity is estimated from `n_samples` pairs drawn uniformly with
replacement among the admissible pairs: the sample mean of the kernel is an unbiased estimate of
the exact mean kernel; its log is reported with a 95 % CI from the normal approximation of the
mean (log(mu +- 1.96 se)). The minimum has no unbiased estimator and is only computed exactly.
Multi-caption data: across-modality pairs exclude every (image, one of its own captions) pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._prep import ROW_CHUNK, prepare, unit_rows
from ._tiles import EXACT_LIMIT, Z95, iter_tiles, tile_rows, use_exact

DEFAULT_SAMPLES = 200_000


@dataclass(frozen=True)
class PairStat:
    """A pairwise statistic: value, 95 % CI (equal to value when exact), pairs used."""

    value: float
    ci_low: float
    ci_high: float
    n_pairs: int
    exact: bool

    def as_dict(self, key: str) -> dict[str, float]:
        out = {key: self.value}
        if not self.exact:
            out.update({f"{key}_ci_low": self.ci_low, f"{key}_ci_high": self.ci_high,
                        f"{key}_n_sampled": float(self.n_pairs)})
        return out


def _kernel(cos: np.ndarray) -> np.ndarray:
    return np.exp(4.0 * cos - 4.0)


def within_exact(u: np.ndarray) -> tuple[float, float, int]:
    """(sum of kernels over ordered pairs i != k, min off-diagonal cosine, n (n - 1)) in tiles.

    Each strip holds rows [s, s + r) against columns [s, N): the strictly upper part of the
    diagonal block plus everything to its right; off-diagonal sums are doubled by symmetry.
    """
    n = u.shape[0]
    rows = tile_rows(n, u.dtype.itemsize)
    total, lo = 0.0, np.inf
    for s in range(0, n, rows):
        blk = u[s : s + rows]
        g = blk @ u[s:].T
        r = blk.shape[0]
        iu = np.triu_indices(r, k=1)
        diag = g[:, :r][iu]
        rest = g[:, r:]
        total += float(_kernel(diag).sum(dtype=np.float64)) + float(_kernel(rest).sum(dtype=np.float64))
        for part in (diag, rest):
            if part.size:
                lo = min(lo, float(part.min()))
    return 2.0 * total, lo, n * (n - 1)


def cross_exact(p) -> tuple[float, int]:
    """(sum of kernels over unpaired (image, text) pairs, their count) in tiles."""
    total = 0.0
    paired = 0.0
    for s, g in iter_tiles(p.image, p.text):
        total += float(_kernel(g).sum(dtype=np.float64))
        js = np.flatnonzero((p.mapping >= s) & (p.mapping < s + g.shape[0]))
        paired += float(_kernel(g[p.mapping[js] - s, js]).sum(dtype=np.float64))
    return total - paired, p.n_image * p.n_text - p.n_text


def _dot_pairs(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    out = np.empty(ia.shape[0], dtype=np.float64)
    for s in range(0, ia.shape[0], ROW_CHUNK):
        sl = slice(s, s + ROW_CHUNK)
        out[sl] = np.einsum("ij,ij->i", a[ia[sl]], b[ib[sl]], dtype=np.float64)
    return out


def _log_mean_ci(k: np.ndarray) -> tuple[float, float, float]:
    mu = float(k.mean())
    se = float(k.std(ddof=1)) / np.sqrt(k.size)
    lo = np.log(mu - Z95 * se) if mu - Z95 * se > 0 else -np.inf
    return float(np.log(mu)), float(lo), float(np.log(mu + Z95 * se))


def within_sampled(u: np.ndarray, n_samples: int, seed: int) -> PairStat:
    """Unbiased pair-sampling estimate of the within-modality mean kernel (log reported)."""
    n = u.shape[0]
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_samples)
    k = rng.integers(0, n - 1, n_samples)
    k += k >= i  # uniform over k != i
    val, lo, hi = _log_mean_ci(_kernel(_dot_pairs(u, i, u, k)))
    return PairStat(val, lo, hi, n_samples, False)


def cross_sampled(p, n_samples: int, seed: int) -> PairStat:
    """Unbiased pair-sampling estimate over unpaired (image, text) pairs (own captions redrawn)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, p.n_image, n_samples)
    j = rng.integers(0, p.n_text, n_samples)
    bad = p.mapping[j] == i
    while bad.any():  # rejection keeps the draw uniform over admissible pairs
        i[bad] = rng.integers(0, p.n_image, int(bad.sum()))
        j[bad] = rng.integers(0, p.n_text, int(bad.sum()))
        bad = p.mapping[j] == i
    val, lo, hi = _log_mean_ci(_kernel(_dot_pairs(p.image, i, p.text, j)))
    return PairStat(val, lo, hi, n_samples, False)


def within_stat(u: np.ndarray, exact: bool | None = None, n_samples: int = DEFAULT_SAMPLES,
                seed: int = 0, exact_limit: int = EXACT_LIMIT) -> tuple[PairStat, float | None]:
    """Uniformity of one prepared modality and its cone minimum (None when not exact)."""
    n = u.shape[0]
    if n < 2:
        return PairStat(float("nan"), float("nan"), float("nan"), 0, True), None
    if use_exact(exact, n, limit=exact_limit):
        total, lo, count = within_exact(u)
        v = float(np.log(total / count))
        return PairStat(v, v, v, count, True), lo
    return within_sampled(u, n_samples, seed), None


def cross_stat(p, exact: bool | None = None, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
               exact_limit: int = EXACT_LIMIT) -> PairStat:
    """Cross-modal uniformity of prepared pairs (exact or sampled, see the module doc)."""
    if p.n_image < 2:
        return PairStat(float("nan"), float("nan"), float("nan"), 0, True)
    if use_exact(exact, p.n_image, p.n_text, limit=exact_limit):
        total, count = cross_exact(p)
        v = float(np.log(total / count))
        return PairStat(v, v, v, count, True)
    return cross_sampled(p, n_samples, seed)


def uniformity(x: Any, y: Any = None, text_to_image: Any = None, *, exact: bool | None = None,
               n_samples: int = DEFAULT_SAMPLES, seed: int = 0) -> float:
    """Uniformity of one modality (`y` None) or across two (x images, y texts); see module doc."""
    if y is None:
        return within_stat(unit_rows(x), exact, n_samples, seed)[0].value
    return cross_stat(prepare(x, y, text_to_image), exact, n_samples, seed).value


def cone_cosine_min(x: Any) -> float:
    """Minimum off-diagonal cosine of one modality, exact, in bounded-memory tiles."""
    u = unit_rows(x)
    if u.shape[0] < 2:
        return float("nan")
    return within_exact(u)[1]
