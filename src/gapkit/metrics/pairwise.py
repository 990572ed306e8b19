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
Exact values get a CI on request (rows as an iid sample): the variance of a degree-2
U-statistic, 4 zeta_1 / n, with zeta_1 estimated from the per-row kernel means of the same tiles.
Multi-caption data: across-modality pairs exclude every (image, one of its own captions) pair.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._prep import ROW_CHUNK, Pairs, prepare, unit_rows
from ._tiles import EXACT_LIMIT, Z95, iter_tiles, tile_rows, use_exact

DEFAULT_SAMPLES = 200_000


@dataclass(frozen=True)
class PairStat:
    """A pairwise statistic: value, 95 % CI (nan when not computed), how it was obtained.

    `n_sampled` is the number of sampled pairs (pair-sampling estimator) or of sampled rows
    (exact value on a random subset of rows, as in streaming); 0 for the exact full value.
    """

    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_sampled: int = 0

    def as_dict(self, key: str) -> dict[str, float]:
        out = {key: self.value}
        if np.isfinite(self.ci_low) or np.isfinite(self.ci_high):
            out.update({f"{key}_ci_low": self.ci_low, f"{key}_ci_high": self.ci_high})
        if self.n_sampled:
            out[f"{key}_n_sampled"] = float(self.n_sampled)
        return out


def _kernel(cos: np.ndarray) -> np.ndarray:
    return np.exp(4.0 * cos - 4.0)


def within_exact(u: np.ndarray, kernel: bool = True) -> tuple[float, float, np.ndarray]:
    """Over ordered pairs i != k: (sum of kernels, min cosine, per-row kernel sums (N,)), tiled.

    Each strip holds rows [s, s + r) against columns [s, N); the diagonal block's lower triangle
    (with the diagonal) is masked, so every unordered pair is seen once and counted twice.
    kernel=False skips the kernel (sums are then 0) when only the minimum is wanted.
    """
    n = u.shape[0]
    rows = tile_rows(n, u.dtype.itemsize)
    row_sums = np.zeros(n)
    total, lo = 0.0, np.inf
    for s in range(0, n, rows):
        g = u[s : s + rows] @ u[s:].T
        r = g.shape[0]
        lower = np.tril_indices(r)
        if kernel:
            k = _kernel(g)
            k[lower] = 0.0
            total += float(k.sum(dtype=np.float64))
            row_sums[s : s + r] += k.sum(1, dtype=np.float64)
            row_sums[s:] += k.sum(0, dtype=np.float64)
        g[lower] = np.inf
        lo = min(lo, float(g.min()))
    return 2.0 * total, lo, row_sums


def cross_exact(p: Pairs) -> tuple[float, np.ndarray, np.ndarray]:
    """Over unpaired (image i, text j): (sum of kernels, per-image sums (N,), per-text sums (M,))."""
    total = 0.0
    rows, cols = np.zeros(p.n_image), np.zeros(p.n_text)
    for s, g in iter_tiles(p.image, p.text):
        k = _kernel(g)
        js = np.flatnonzero((p.mapping >= s) & (p.mapping < s + g.shape[0]))
        k[p.mapping[js] - s, js] = 0.0
        total += float(k.sum(dtype=np.float64))
        rows[s : s + g.shape[0]] = k.sum(1, dtype=np.float64)
        cols += k.sum(0, dtype=np.float64)
    return total, rows, cols


def _log_ci(mu: float, se: float) -> tuple[float, float]:
    """95 % CI of log(mu) from a CI of mu (mu +- 1.96 se), lower end -inf if it reaches 0."""
    lo = mu - Z95 * se
    return (float(np.log(lo)) if lo > 0 else -np.inf), float(np.log(mu + Z95 * se))


def _ustat(mean_kernel: float, h1: np.ndarray, n_sampled: int, ci: bool) -> PairStat:
    """log of a degree-2 U-statistic; CI from its variance 4 zeta_1 / n (Hoeffding), with zeta_1
    estimated by the variance of the per-row means h1 (rows treated as an iid sample)."""
    value = float(np.log(mean_kernel))
    if not ci or h1.size < 3:
        return PairStat(value, n_sampled=n_sampled)
    se = float(np.sqrt(4.0 * h1.var(ddof=1) / h1.size))
    return PairStat(value, *_log_ci(mean_kernel, se), n_sampled=n_sampled)


def _dot_pairs(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    out = np.empty(ia.shape[0], dtype=np.float64)
    for s in range(0, ia.shape[0], ROW_CHUNK):
        sl = slice(s, s + ROW_CHUNK)
        out[sl] = np.einsum("ij,ij->i", a[ia[sl]], b[ib[sl]], dtype=np.float64)
    return out


def _log_mean_ci(k: np.ndarray) -> tuple[float, float, float]:
    mu = float(k.mean())
    return (float(np.log(mu)), *_log_ci(mu, float(k.std(ddof=1)) / np.sqrt(k.size)))


def within_sampled(u: np.ndarray, n_samples: int, seed: int) -> PairStat:
    """Unbiased pair-sampling estimate of the within-modality mean kernel (log reported)."""
    n = u.shape[0]
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_samples)
    k = rng.integers(0, n - 1, n_samples)
    k += k >= i  # uniform over k != i
    val, lo, hi = _log_mean_ci(_kernel(_dot_pairs(u, i, u, k)))
    return PairStat(val, lo, hi, n_samples)


def cross_sampled(p: Pairs, n_samples: int, seed: int) -> PairStat:
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
    return PairStat(val, lo, hi, n_samples)


def within_stat(u: np.ndarray, exact: bool | None = None, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
                exact_limit: int = EXACT_LIMIT, ci: bool = False, subset_of: int = 0) -> tuple[PairStat, float | None]:
    """Uniformity of one prepared modality and its cone minimum (None when not computed exactly).

    Exact values get a CI when `ci`; `subset_of` > 0 says u is a random subset of rows (reported
    as n_sampled, always with a CI since the value is then an estimate).
    """
    n = u.shape[0]
    if n < 2:
        return PairStat(float("nan")), None
    if use_exact(exact, n, limit=exact_limit):
        total, lo, row_sums = within_exact(u)
        stat = _ustat(total / (n * (n - 1)), row_sums / (n - 1), n if subset_of else 0, ci or bool(subset_of))
        return stat, lo
    return within_sampled(u, n_samples, seed), None


def cross_stat(p: Pairs, exact: bool | None = None, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
               exact_limit: int = EXACT_LIMIT, ci: bool = False, subset_of: int = 0) -> PairStat:
    """Cross-modal uniformity of prepared pairs (exact or sampled, see the module doc).

    The CI of the exact value treats images (with their captions) as the iid units: the
    per-image mean of the symmetrised kernel, (row sum + sum over its captions' columns) / 2.
    """
    if p.n_image < 2:
        return PairStat(float("nan"))
    if use_exact(exact, p.n_image, p.n_text, limit=exact_limit):
        total, rows, cols = cross_exact(p)
        count = p.n_image * p.n_text - p.n_text
        per_image = (rows + np.bincount(p.mapping, weights=cols, minlength=p.n_image)) / 2.0
        h1 = per_image / (count / p.n_image)
        return _ustat(total / count, h1, p.n_image if subset_of else 0, ci or bool(subset_of))
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
    return within_exact(u, kernel=False)[1]
