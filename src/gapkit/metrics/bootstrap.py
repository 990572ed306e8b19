"""Bootstrap 95 % confidence intervals (percentile method), resampling IMAGES.

A resample draws N images with replacement; every caption follows its image (cluster bootstrap,
so multi-caption data keep their structure). Geometry metrics use the vectorised path: a
resample is a vector of counts w (N,), and every geometry sum becomes a weighted sum, so B
resamples cost one (B, N) x (N, D) product (done in batches to bound memory). Other cheap
families re-run their function on the resampled rows. Truly pairwise metrics are not
bootstrapped (duplicated rows would add spurious zero distances); their sampled estimators carry
their own CI.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._prep import Pairs
from .geometry import geometry_compute, geometry_state

DEFAULT_N_BOOT = 1000
_WEIGHT_BYTES = 64 * 2**20  # one batch of (B, N) float64 resample counts


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) counts of a multinomial resample of n items, float64."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _percentiles(samples: dict[str, list[np.ndarray]], level: float) -> dict[str, float]:
    alpha = (1.0 - level) / 2.0
    out: dict[str, float] = {}
    for key, parts in samples.items():
        v = np.concatenate([np.atleast_1d(x) for x in parts])
        v = v[np.isfinite(v)]
        if v.size:
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = (float(q) for q in np.quantile(v, [alpha, 1 - alpha]))
    return out


def geometry_bootstrap(p: Pairs, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Percentile CIs of every geometry metric from weighted sums (see module doc)."""
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_boot, _WEIGHT_BYTES // (8 * max(p.n_image, 1))))
    samples: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, batch):
        w = resample_counts(p.n_image, min(batch, n_boot - start), rng)
        for k, v in geometry_compute(geometry_state(p, image_weights=w)).items():
            samples.setdefault(k, []).append(v)
    return _percentiles(samples, level)


def resample_pairs(p: Pairs, rng: np.random.Generator) -> Pairs:
    """One cluster resample: images with replacement, each with all its captions."""
    idx = rng.integers(0, p.n_image, p.n_image)
    if p.one_to_one:
        return Pairs(p.image[idx], p.text[idx], np.arange(p.n_image, dtype=np.int64), True)
    order, starts, counts = p.caption_groups()
    txt = np.concatenate([order[starts[i] : starts[i] + counts[i]] for i in idx])
    new_map = np.repeat(np.arange(p.n_image, dtype=np.int64), counts[idx])
    return Pairs(p.image[idx], p.text[txt], new_map, False)


def bootstrap_ci(fn: Callable[[Pairs], dict[str, float]], p: Pairs, n_boot: int = DEFAULT_N_BOOT,
                 seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Percentile CIs of every key of fn(pairs), re-running fn on n_boot cluster resamples."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {}
    for _ in range(n_boot):
        for k, v in fn(resample_pairs(p, rng)).items():
            samples.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    return _percentiles(samples, level)
