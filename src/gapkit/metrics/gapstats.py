"""Statistics of the paired differences d_j = x_t(j) - y_j (Zhang et al. 2024, "C3").

C3 describes the gap as a nearly constant vector orthogonal to the span of each modality. Three
numbers test that picture:

    gap_length_cv               std_j ||d_j|| / mean_j ||d_j||   (0 = every difference equally long)
    gap_direction_consistency   mean_j cos(d_j, dbar), dbar = mean_j d_j   (1 = all parallel)
    gap_variance_share_image    g^T C_x g / tr(C_x): share of the (centred) image cloud's variance
    gap_variance_share_text     along the unit gap direction g = dbar / ||dbar||; 0 = the gap is
                                orthogonal to the cloud, 1/D = no preferred relation (isotropic)

(the mean length itself is `paired_distance_mean`). Multi-caption data: every caption pair is a
difference; C_x runs over images, C_y over texts. All terms are sums, so `GapStatsState` streams
(update/merge) and the pure function uses the same helpers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._prep import ROW_CHUNK, Pairs, prepare
from .spectrum import MomentState, moment_state

GAPSTATS_KEYS = ("gap_length_cv", "gap_direction_consistency", "gap_variance_share_image", "gap_variance_share_text")


@dataclass
class GapStatsState:
    """Sums over caption pairs (count, sum d, sum d/||d||, sum ||d||, sum ||d||^2) + moments."""

    n: float
    sum_diff: np.ndarray
    sum_unit_diff: np.ndarray
    sum_len: float
    sum_len2: float
    image: MomentState
    text: MomentState

    def __add__(self, o: "GapStatsState") -> "GapStatsState":
        return GapStatsState(self.n + o.n, self.sum_diff + o.sum_diff, self.sum_unit_diff + o.sum_unit_diff,
                             self.sum_len + o.sum_len, self.sum_len2 + o.sum_len2, self.image + o.image,
                             self.text + o.text)


def gapstats_state(p: Pairs, image_moments: MomentState | None = None,
                   text_moments: MomentState | None = None) -> GapStatsState:
    """State of one chunk of prepared pairs (moments may be passed in when already computed)."""
    d = p.dim
    sum_diff, sum_unit = np.zeros(d), np.zeros(d)
    sum_len = sum_len2 = 0.0
    for s in range(0, p.n_text, ROW_CHUNK):
        diff = (np.asarray(p.image[p.mapping[s : s + ROW_CHUNK]], dtype=np.float64)
                - np.asarray(p.text[s : s + ROW_CHUNK], dtype=np.float64))
        length = np.linalg.norm(diff, axis=1)
        ok = length > 0  # identical pairs have no direction
        sum_diff += diff.sum(0)
        sum_unit += (diff[ok] / length[ok, None]).sum(0)
        sum_len += float(length.sum())
        sum_len2 += float((length**2).sum())
    return GapStatsState(float(p.n_text), sum_diff, sum_unit, sum_len, sum_len2,
                         image_moments or moment_state(p.image), text_moments or moment_state(p.text))


def _variance_share(m: MomentState, g: np.ndarray) -> float:
    cov = m.covariance()
    tr = float(np.trace(cov))
    return float(g @ cov @ g / tr) if tr > 0 else float("nan")


def gapstats_compute(s: GapStatsState) -> dict[str, float]:
    """The GAPSTATS_KEYS from a state."""
    mean_len = s.sum_len / s.n
    var_len = max(s.sum_len2 / s.n - mean_len**2, 0.0)
    dbar = s.sum_diff / s.n
    norm = float(np.linalg.norm(dbar))
    g = dbar / norm if norm > 0 else np.full_like(dbar, np.nan)
    return {
        "gap_length_cv": float(np.sqrt(var_len) / mean_len) if mean_len > 0 else float("nan"),
        "gap_direction_consistency": float(s.sum_unit_diff @ g / s.n),
        "gap_variance_share_image": _variance_share(s.image, g),
        "gap_variance_share_text": _variance_share(s.text, g),
    }


def gap_statistics(image: Any, text: Any = None, text_to_image: Any = None) -> dict[str, float]:
    """C3 statistics of the paired differences (see module doc)."""
    return gapstats_compute(gapstats_state(prepare(image, text, text_to_image)))
