"""Logit entropy (Schrodi et al. 2025): how peaked image->text softmax predictions are.

    logit_entropy = mean_i H(softmax(s * x_i Y^T)),  H(p) = -sum_j p_j log p_j  (nats)

with s = logit_scale (1 / temperature; 100 = CLIP's clamp) over ALL M texts, i over the images
that have at least one caption. Each score tile gives H = logsumexp(z) - sum_j softmax(z)_j z_j
with float64 sums. The tiles are those of image->text retrieval (gapkit.metrics.retrieval), which
computes recall and entropy in one pass, with the same exact / sampled-queries rule and CI.
"""
from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_LOGIT_SCALE = 100.0


def tile_entropies(scores: np.ndarray, logit_scale: float) -> np.ndarray:
    """Entropy of softmax(logit_scale * row) for every row of a (q, M) score tile, (q,) float64."""
    # exp runs in the tile's dtype (float32 tiles: twice as fast, max-subtracted so no overflow);
    # the sums over the gallery are accumulated in float64
    z = logit_scale * scores
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    tot = e.sum(1, dtype=np.float64)
    return np.log(tot) - np.einsum("ij,ij->i", e, z, dtype=np.float64) / tot


def logit_entropy(image: Any, text: Any = None, text_to_image: Any = None,
                  logit_scale: float = DEFAULT_LOGIT_SCALE, **kw: Any) -> float:
    """Mean entropy (nats) of the image->text softmax at `logit_scale` (see module doc);
    keyword options as for gapkit.metrics.retrieval.retrieval_metrics."""
    from .retrieval import retrieval_metrics

    return retrieval_metrics(image, text, text_to_image, (), logit_scale, directions=(), **kw)["logit_entropy"]
