"""The cone effect of random MLPs (Liang et al. Fig. 2b, Sec. 2.2).

Inputs: N standard-normal vectors in R^D (Liang: N = 1,024, D = 512). A stack of `depth` fresh
Linear(D, D) layers, weight and bias ~ N(0, 1/D), each followed by the activation; after every
layer the mean off-diagonal cosine similarity of the N outputs is recorded:

    cos_mean = (||sum_i u_i||^2 - N) / (N (N - 1)),   u_i = h_i / ||h_i||     (O(N D), no N x N matrix)

Depth 0 is the input itself (cos_mean ~ 0).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import erf

from ..errors import GapkitError

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda h: h,
    "relu": lambda h: np.maximum(h, 0.0),
    "leaky_relu": lambda h: np.where(h > 0, h, 0.01 * h),  # torch's default slope
    "sigmoid": lambda h: 1.0 / (1.0 + np.exp(-h)),
    "tanh": np.tanh,
    "gelu": lambda h: 0.5 * h * (1.0 + erf(h / np.sqrt(2.0))),  # exact GELU, as torch's default
}


def mean_offdiag_cosine(h: np.ndarray) -> float:
    """Mean cosine similarity over all ordered pairs i != j of the rows of h (N, D)."""
    norms = np.linalg.norm(h, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise GapkitError("an MLP output row is exactly zero; its cosine is undefined")
    u = (h / norms).astype(np.float64)
    n = u.shape[0]
    total = u.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def cone_curve(activation: str, n: int = 1024, dim: int = 512, depth: int = 25, seed: int = 0) -> np.ndarray:
    """(depth + 1,) mean off-diagonal cosine after 0..depth random layers with `activation`."""
    if activation not in ACTIVATIONS:
        raise GapkitError(f"unknown activation '{activation}'; known: {', '.join(ACTIVATIONS)}")
    if n < 2 or dim < 1 or depth < 0:
        raise GapkitError(f"need n >= 2, dim >= 1, depth >= 0 (got n={n}, dim={dim}, depth={depth})")
    rng = np.random.default_rng(seed)
    act = ACTIVATIONS[activation]
    std = 1.0 / np.sqrt(dim)
    # float32 matmuls: the same precision as the torch MLPs of the paper, and 2x faster here.
    h = rng.standard_normal((n, dim), dtype=np.float32)
    out = [mean_offdiag_cosine(h)]
    for _ in range(depth):
        w = (std * rng.standard_normal((dim, dim))).astype(np.float32)
        b = (std * rng.standard_normal(dim)).astype(np.float32)
        h = act(h @ w.T + b).astype(np.float32)
        out.append(mean_offdiag_cosine(h))
    return np.array(out)
