"""Logit entropy (Schrodi et al. 2025): how peaked image->text softmax predictions are.

    logit_entropy = mean_i H(softmax(s * x_i Y^T)),  H(p) = -sum_j p_j log p_j  (nats)

with s = logit_scale (1 / temperature; 100 = CLIP's clamp) over ALL M texts. Computed in tiles
as H = logsumexp(z) - sum_j softmax(z)_j z_j in float64. Above EXACT_LIMIT images (unless
exact=True) the mean runs over `n_queries` sampled images against the full text gallery: an
unbiased estimate with a 95 % CI.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._prep import prepare
from ._tiles import EXACT_LIMIT, iter_tiles, mean_ci, sample_queries, use_exact

DEFAULT_LOGIT_SCALE = 100.0


def row_entropies(queries: np.ndarray, gallery: np.ndarray, logit_scale: float) -> np.ndarray:
    """Entropy of softmax(s * q_i G^T) for every query row, (Q,) float64."""
    out = np.empty(queries.shape[0], dtype=np.float64)
    for s, g in iter_tiles(queries, gallery):
        z = logit_scale * g.astype(np.float64)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        tot = e.sum(1)
        out[s : s + g.shape[0]] = np.log(tot) - (e * z).sum(1) / tot
    return out


def logit_entropy_stats(image: Any, text: Any = None, text_to_image: Any = None,
                        logit_scale: float = DEFAULT_LOGIT_SCALE, *, exact: bool | None = None,
                        n_queries: int = 2_000, seed: int = 0, exact_limit: int = EXACT_LIMIT,
                        ci: bool = False) -> dict[str, float]:
    """{"logit_entropy": ...}, plus a 95 % CI over images when estimated or when `ci`."""
    p = prepare(image, text, text_to_image)
    exact = use_exact(exact, p.n_image, limit=exact_limit)
    q = np.arange(p.n_image) if exact else sample_queries(p.n_image, n_queries, seed + 2)
    mu, lo, hi = mean_ci(row_entropies(p.image if exact else p.image[q], p.text, logit_scale))
    out = {"logit_entropy": mu}
    if ci or not exact:
        out.update({"logit_entropy_ci_low": lo, "logit_entropy_ci_high": hi})
    if not exact:
        out["logit_entropy_n_sampled"] = float(q.size)
    return out


def logit_entropy(image: Any, text: Any = None, text_to_image: Any = None,
                  logit_scale: float = DEFAULT_LOGIT_SCALE, **kw: Any) -> float:
    """Mean entropy (nats) of the image->text softmax at `logit_scale` (see module doc)."""
    return logit_entropy_stats(image, text, text_to_image, logit_scale, **kw)["logit_entropy"]
