"""Permutation null for the gap metrics: what would the metric read if there were no gap?

On small data a gap metric is never 0: 24 pairs of noise give a centroid distance of ~0.24. To
tell a gap from noise, shuffle the modality labels WITHIN each matched pair: every pair
(x_i, y_i) swaps sides with probability 1/2. Under the null "an image and its caption come from
the same distribution" (no modality gap) each swap pattern is equally likely, so the observed
value is compared with the metric over random swap patterns (a paired permutation test; the
pairing, and with it the content, is kept, only the modality is forgotten).

Computed from sums, never by moving rows: with a_i = (x_i + y_i) / 2, h_i = (x_i - y_i) / 2 and
signs s_i = +-1, the swapped clouds are x'_i = a_i + s_i h_i, y'_i = a_i - s_i h_i, so

    sum x' = A + s H,  sum y' = A - s H   (A = sum a_i, H = (h_i) stacked; (B, N) @ (N, D))

and the paired cosines do not change. These sums form a GeometryState, so the null of every
geometry metric (centroid_distance, rmg, cone means) comes from the same code as the metric.
Multi-caption data use one pair per image (its first caption); the observed value on those pairs
is reported beside the null as <key>_null_observed when it differs from the full-data value.

Reported per metric (larger = more gap): <key>_null_p95 (95th percentile of the null) and
<key>_p_value = (1 + #{null >= observed}) / (B + 1) (Phipson & Smyth 2010: never 0).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._prep import Pairs, prepare
from .geometry import GeometryState, geometry_compute

NULL_KEYS = ("centroid_distance", "rmg")
DEFAULT_N_PERM = 1000
_SIGN_BYTES = 64 * 2**20  # one batch of (B, N) float64 signs


def _pair_rows(p: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Unit (K, D) image and text rows of one pair per image (float64)."""
    x, y = p.first_caption()
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def swapped_geometry(x: np.ndarray, y: np.ndarray, signs: np.ndarray) -> dict[str, np.ndarray]:
    """Geometry metrics (B,) of the pairs with the sides of pair i swapped where signs[b, i] = -1.

    x, y: unit rows (N, D); signs: (B, N) of +-1 (all +1 = the data as given)."""
    n = x.shape[0]
    a, h = (x + y).sum(0) / 2.0, (x - y) / 2.0
    sh = signs @ h  # (B, D)
    b = signs.shape[0]
    cos = np.einsum("ij,ij->i", x, y)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))
    full = np.full(b, float(n))
    state = GeometryState(full, full, a + sh, a - sh, full, full, np.full(b, cos.sum()), np.full(b, dist.sum()))
    return geometry_compute(state)


def permutation_null(image: Any, text: Any = None, text_to_image: Any = None, *, n_perm: int = DEFAULT_N_PERM,
                     seed: int = 0, keys: Sequence[str] = NULL_KEYS,
                     observed: dict[str, float] | None = None) -> dict[str, float]:
    """Null 95th percentile and permutation p-value of each gap metric in `keys` (see module doc).

    `observed` (the full-data values, e.g. from measure) decides whether <key>_null_observed is
    needed; it is reported when the one-pair-per-image value differs from it."""
    p = prepare(image, text, text_to_image)
    x, y = _pair_rows(p)
    rng = np.random.default_rng(seed)
    obs = {k: float(np.ravel(v)[0]) for k, v in swapped_geometry(x, y, np.ones((1, x.shape[0]))).items() if k in keys}
    null: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    batch = max(1, min(n_perm, _SIGN_BYTES // (8 * max(x.shape[0], 1))))
    for s in range(0, n_perm, batch):
        signs = rng.choice((-1.0, 1.0), size=(min(batch, n_perm - s), x.shape[0]))
        for k, v in swapped_geometry(x, y, signs).items():
            if k in null:
                null[k].append(np.atleast_1d(v))
    out: dict[str, float] = {}
    for k in keys:
        v = np.concatenate(null[k])
        v = v[np.isfinite(v)]
        if not v.size or not np.isfinite(obs[k]):
            continue
        out[f"{k}_null_p95"] = float(np.quantile(v, 0.95))
        out[f"{k}_p_value"] = float((1 + np.count_nonzero(v >= obs[k] - 1e-12)) / (v.size + 1))
        if observed is not None and k in observed and not np.isclose(observed[k], obs[k], rtol=1e-9, atol=1e-12):
            out[f"{k}_null_observed"] = obs[k]
    out["null_n_perm"] = float(n_perm)
    return out
