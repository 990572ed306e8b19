"""Bounded-memory tiling for statistics that are truly pairwise (N x M).

A tile is a block of query rows against all gallery rows: (rows, M) scores, sized so the tile
and its temporaries stay within `TILE_BYTES`. Above `EXACT_LIMIT` rows the default switches to
sampled estimators (documented per metric); `exact=True` always tiles the full matrix.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

TILE_BYTES = 32 * 2**20   # one (rows, M) score tile; a few such temporaries live at once
# Largest N (and M) computed exactly by default. Chosen so the default report's cost grows smoothly
# with N: at the limit the exact pairwise work (N^2/2 pairs, N x N scores) is ~60x / 5x that of the
# sampled estimators (200k pairs, 1,000 queries x N), so switching to them never makes a larger N
# slower. With 20,000 here, 20k x 512 took 17 s (exact uniformity 7.7 s + retrieval 6.8 s) and
# 100k only ~6-10 s.
EXACT_LIMIT = 5_000
Z95 = 1.959963984540054   # standard normal 97.5 % quantile


def tile_rows(n_cols: int, itemsize: int = 4) -> int:
    """Query rows per tile so that a (rows, n_cols) tile fits TILE_BYTES (at least 1)."""
    return max(1, TILE_BYTES // max(1, n_cols * itemsize))


def iter_tiles(queries: np.ndarray, gallery: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, queries[start:start+r] @ gallery.T) tiles of shape (r, M)."""
    rows = tile_rows(gallery.shape[0], gallery.dtype.itemsize)
    gt = gallery.T
    for s in range(0, queries.shape[0], rows):
        yield s, queries[s : s + rows] @ gt


def use_exact(exact: bool | None, *sizes: int, limit: int = EXACT_LIMIT) -> bool:
    """exact=None: exact when every size is <= limit; True/False force the choice."""
    return all(n <= limit for n in sizes) if exact is None else bool(exact)


def sample_queries(n: int, n_queries: int, seed: int) -> np.ndarray:
    """Sorted indices of min(n, n_queries) distinct query rows drawn without replacement."""
    rng = np.random.default_rng(seed)
    if n_queries >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=n_queries, replace=False))


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Sample mean and its normal-approximation 95 % CI (mean +- 1.96 sd / sqrt(n))."""
    v = np.asarray(values, dtype=np.float64)
    mu = float(v.mean())
    half = Z95 * float(v.std(ddof=1)) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return mu, mu - half, mu + half
