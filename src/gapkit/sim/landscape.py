"""Liang et al.'s mismatched-data simulation (Fig. 3e-g, Supp. Fig. 9, App. A.1).

Six image points sit on the equator of S^2 at longitudes -20, 0, 20, 40, 60, 80 degrees. Each text
sits at its image's longitude with colatitude 90 + d_theta: d_theta = 0 puts it on its image
(no gap), d_theta != 0 slides every text off the equator by the same angle (a gap along the pole
axis). With the mismatch, the texts of the first two pairs trade places, so image 1 is nearest to
text 2 and image 2 to text 1. The symmetric CLIP loss (both directions, averaged) is evaluated as a
function of d_theta for several logit scales. (Liang's mismatch notebooks use the symmetric loss; the
doubled image->text term of the released code is in plot_optimization_exp.ipynb, the Fig. 3b-d
embedding-shift landscape, not here.)

The loss is even in d_theta (reflecting through the equator plane fixes the images), so the
optimum is reported as |d_theta|.
"""
from __future__ import annotations

import numpy as np

from ..errors import GapkitError

LONGITUDES_DEG: tuple[float, ...] = (-20.0, 0.0, 20.0, 40.0, 60.0, 80.0)
LIANG_SCALES: tuple[float, ...] = (1.0, 5.0, 35.0, 50.0, 100.0)


def mismatch_points(dtheta_deg: float, mismatch: bool = True,
                    longitudes_deg: tuple[float, ...] = LONGITUDES_DEG) -> tuple[np.ndarray, np.ndarray]:
    """(images, texts), each (6, 3) unit rows, for one text latitude shift d_theta (degrees)."""
    lon = np.radians(np.asarray(longitudes_deg, dtype=np.float64))
    colat = np.radians(90.0 + float(dtheta_deg))
    image = np.stack([np.cos(lon), np.sin(lon), np.zeros_like(lon)], axis=1)
    text = np.stack([np.sin(colat) * np.cos(lon), np.sin(colat) * np.sin(lon),
                     np.full_like(lon, np.cos(colat))], axis=1)
    if mismatch:
        text[[0, 1]] = text[[1, 0]]
    return image, text


def symmetric_clip_loss(image: np.ndarray, text: np.ndarray, scale: float) -> float:
    """(CE over rows + CE over columns) / 2 of the logits s X Y^T with targets on the diagonal."""
    logits = scale * image @ text.T
    diag = np.diag(logits)

    def lse(a: np.ndarray, axis: int) -> np.ndarray:
        m = a.max(axis=axis, keepdims=True)
        return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)

    return float(((lse(logits, 1) - diag).mean() + (lse(logits, 0) - diag).mean()) / 2.0)


def mismatch_landscape(scales: tuple[float, ...] = LIANG_SCALES, dthetas: np.ndarray | None = None,
                       mismatch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(dthetas (T,), losses (len(scales), T)): the CLIP loss for every logit scale and shift."""
    if dthetas is None:
        dthetas = np.arange(-90.0, 90.0 + 1e-9, 0.5)
    dthetas = np.asarray(dthetas, dtype=np.float64)
    if dthetas.ndim != 1 or dthetas.size == 0 or np.any(np.abs(dthetas) > 90):
        raise GapkitError("dthetas must be a non-empty 1-D array within [-90, 90] degrees")
    if any(not s > 0 for s in scales):
        raise GapkitError(f"logit scales must be positive, got {list(scales)}")
    out = np.empty((len(scales), dthetas.size))
    for t, dt in enumerate(dthetas):
        img, txt = mismatch_points(dt, mismatch)
        for r, s in enumerate(scales):
            out[r, t] = symmetric_clip_loss(img, txt, s)
    return dthetas, out


def optimal_dtheta(dthetas: np.ndarray, losses: np.ndarray) -> float:
    """|d_theta| of the minimum of one loss curve (the smallest |d_theta| among exact ties)."""
    best = np.flatnonzero(losses <= losses.min() + 1e-12 * max(1.0, abs(losses.min())))
    return float(np.min(np.abs(dthetas[best])))
