"""Paired bootstrap of a per-query metric difference: is correction B better than A on these queries?

Both rankings answer the same queries, so the comparison is paired: per query q the difference
d_q = b_q - a_q (e.g. NDCG@10 corrected minus raw). The gain is mean_q d_q; its 95 % interval is
the percentile interval of that mean over `n_boot` resamples of the QUERIES with replacement
(each resample is a multinomial count vector w (Q,), so B resamples cost one (B, Q) x (Q,)
product). Queries where either metric is undefined (NaN) are left out first.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ..metrics.bootstrap import resample_counts

DEFAULT_N_BOOT = 1000


def paired_gain(a: Any, b: Any, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """{"gain": mean(b - a), "ci_low", "ci_high", "n"} over the queries where both are defined."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise GapkitError(f"paired_gain: need two (Q,) arrays of one shape, got {a.shape} and {b.shape}")
    if n_boot < 1:
        raise GapkitError(f"paired_gain: n_boot must be >= 1, got {n_boot}")
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    if d.size == 0:
        return {"gain": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    batch = max(1, (16 << 20) // (8 * d.size))  # bound the (B, Q) count matrix to ~16 MB
    for s in range(0, n_boot, batch):
        w = resample_counts(d.size, min(batch, n_boot - s), rng)
        means[s:s + w.shape[0]] = w @ d / d.size
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return {"gain": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": int(d.size)}


def gains_table(per_query: dict[str, dict[str, np.ndarray]], baseline: str, keys: tuple[str, ...],
                n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> dict[str, dict[str, float]]:
    """{variant: {key: gain, key_ci_low, key_ci_high}} of every variant against `baseline`,
    each key a per-query metric present in both (same queries, same seed for every variant)."""
    base = per_query[baseline]
    out: dict[str, dict[str, float]] = {}
    for name, pq in per_query.items():
        if name == baseline:
            continue
        row: dict[str, float] = {}
        for k in keys:
            if k in pq and k in base:
                g = paired_gain(base[k], pq[k], n_boot=n_boot, seed=seed)
                row[f"{k}_gain"], row[f"{k}_gain_ci_low"], row[f"{k}_gain_ci_high"] = g["gain"], g["ci_low"], g["ci_high"]
        out[name] = row
    return out
