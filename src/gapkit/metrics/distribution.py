"""Distribution gap: do the two clouds differ in SHAPE once their centroids are aligned?

Each modality is centred (its own mean subtracted, rows not re-normalised), so these numbers are
blind to the centroid gap and measure what remains ("Fill the Gap" / TPC-CMA line of work):

    mmd_rbf              unbiased MMD^2 with k(a, b) = exp(-||a - b||^2 / (2 sigma^2)),
                         sigma = median pairwise distance of the pooled sample (median heuristic):
                         mean_{i != i'} k(x_i, x_i') + mean_{j != j'} k(y_j, y_j') - 2 mean k(x_i, y_j)
    sliced_wasserstein   sqrt(mean_p W2^2(<x, theta_p>, <y, theta_p>)) over `n_projections` random
                         unit directions theta_p (1-D W2 from matched quantiles)

MMD is O(n^2): it uses a random subset of at most `max_rows` rows per modality (an unbiased
estimate of the population MMD^2 either way). Multi-caption data: all images and all texts.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._prep import prepare

DEFAULT_MMD_ROWS = 2_000
DEFAULT_SW_ROWS = 20_000
DEFAULT_PROJECTIONS = 256


def _centred_subset(a: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.sort(rng.choice(a.shape[0], max_rows, replace=False)) if a.shape[0] > max_rows else slice(None)
    b = np.asarray(a[idx], dtype=np.float64)
    return b - b.mean(0)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def mmd_rbf(image: Any, text: Any = None, text_to_image: Any = None, *, max_rows: int = DEFAULT_MMD_ROWS,
            seed: int = 0, sigma: float | None = None) -> float:
    """Unbiased MMD^2 (RBF kernel, median-heuristic bandwidth) between the centred clouds."""
    p = prepare(image, text, text_to_image)
    rng = np.random.default_rng(seed)
    x, y = _centred_subset(p.image, max_rows, rng), _centred_subset(p.text, max_rows, rng)
    dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    if sigma is None:
        pooled = np.concatenate([dxx[np.triu_indices_from(dxx, 1)], dyy[np.triu_indices_from(dyy, 1)], dxy.ravel()])
        sigma = float(np.sqrt(np.median(pooled)))
    gamma = 1.0 / (2.0 * sigma**2)
    n, m = x.shape[0], y.shape[0]
    kxx = (np.exp(-gamma * dxx).sum() - n) / (n * (n - 1))   # diagonal terms are exp(0) = 1
    kyy = (np.exp(-gamma * dyy).sum() - m) / (m * (m - 1))
    return float(kxx + kyy - 2.0 * np.exp(-gamma * dxy).mean())


def _quantiles(v: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Empirical quantile function of each column of v (n, P) at `levels` (L,) -> (L, P)."""
    s = np.sort(v, axis=0)
    pos = levels * s.shape[0] - 0.5  # mid-point convention: the i-th sorted value sits at (i + 0.5) / n
    return np.stack([np.interp(pos, np.arange(s.shape[0]), s[:, k]) for k in range(s.shape[1])], axis=1)


def sliced_wasserstein(image: Any, text: Any = None, text_to_image: Any = None, *,
                       n_projections: int = DEFAULT_PROJECTIONS, max_rows: int = DEFAULT_SW_ROWS, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between the centred clouds (see module doc)."""
    p = prepare(image, text, text_to_image)
    rng = np.random.default_rng(seed)
    x, y = _centred_subset(p.image, max_rows, rng), _centred_subset(p.text, max_rows, rng)
    theta = rng.standard_normal((p.dim, n_projections))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    px, py = x @ theta, y @ theta
    if px.shape[0] == py.shape[0]:
        w2 = ((np.sort(px, axis=0) - np.sort(py, axis=0)) ** 2).mean(0)
    else:
        levels = (np.arange(max(px.shape[0], py.shape[0])) + 0.5) / max(px.shape[0], py.shape[0])
        w2 = ((_quantiles(px, levels) - _quantiles(py, levels)) ** 2).mean(0)
    return float(np.sqrt(w2.mean()))


def distribution_metrics(image: Any, text: Any = None, text_to_image: Any = None, seed: int = 0) -> dict[str, float]:
    """{"mmd_rbf": ..., "sliced_wasserstein": ...} with the default settings."""
    p = prepare(image, text, text_to_image)
    return {"mmd_rbf": mmd_rbf(p, seed=seed), "sliced_wasserstein": sliced_wasserstein(p, seed=seed)}
