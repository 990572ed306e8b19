"""Initial positions of the two modalities on S^(d-1) (Shi et al. Fig. 3 and App. C).

A cap around a unit centre mu is drawn as x = normalise(mu + spread * z), z ~ N(0, I_d): the
spherical analogue of an isotropic Gaussian blob. Pairs (x_i, y_i) are drawn independently: the
points carry no structure beyond their modality.
"""
from __future__ import annotations

import math

import numpy as np

from ..validation import l2_normalize
from .config import SphereConfig


def cap(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    """n unit rows scattered around `centre` (d,) with Gaussian jitter `spread` before re-normalising."""
    pts = centre[None, :] + spread * rng.standard_normal((n, centre.shape[0]))
    # A draw exactly at the origin has probability 0, but guard it anyway for spread >> 1.
    bad = np.linalg.norm(pts, axis=1) < 1e-12
    pts[bad] = centre
    return l2_normalize(pts)


def cap_centres(init: str, d: int, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Cap centres (image, text). The last axis is the "pole": polar = (+e_d, -e_d); nearby puts
    the two centres angle/2 either side of +e_d in the (e_1, e_d) plane; overlapped = (+e_d, +e_d)."""
    pole = np.zeros(d)
    pole[-1] = 1.0
    if init == "polar":
        return pole, -pole
    if init == "overlapped":
        return pole, pole.copy()
    half = math.radians(angle_deg) / 2.0
    a, b = np.zeros(d), np.zeros(d)
    a[0], a[-1] = math.sin(half), math.cos(half)
    b[0], b[-1] = -math.sin(half), math.cos(half)
    return a, b


def initial_points(config: SphereConfig) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y), each (n, d) float64 unit rows, for the config's init, spread and seed."""
    rng = np.random.default_rng(config.seed)
    n, d = config.n, config.d
    if config.init == "uniform":
        return l2_normalize(rng.standard_normal((n, d))), l2_normalize(rng.standard_normal((n, d)))
    cx, cy = cap_centres(config.init, d, config.angle)
    return cap(rng, cx, n, config.spread), cap(rng, cy, n, config.spread)
