"""Geometry of the gap: centroids, paired similarity, the cone effect, RMG.

Notation: x_i (i = 1..N) image rows, y_j (j = 1..M) text rows, all L2-normalised; pairs are
(x_{t(j)}, y_j) with t = text_to_image (the identity for 1:1 data).

    centroid_distance       ||mean_i x_i - mean_j y_j||                         (Liang et al. 2022)
    gap_vector              mean_i x_i - mean_j y_j  (and its unit direction)   (Liang et al. 2022)
    paired_cosine_mean      mean_j <x_t(j), y_j>                                (AlignCLIP, Jina)
    paired_distance_mean    mean_j ||x_t(j) - y_j||                             (Schrodi et al. 2025)
    alignment_loss          mean_j ||x_t(j) - y_j||^2 = 2 - 2 paired_cosine_mean (Wang & Isola 2020)
    *_cone_cosine_mean      mean_{i != k} <u_i, u_k> = (||sum u||^2 - sum ||u||^2) / (n (n - 1))
    rmg                     m / (m + (a + b) / 2), m = (1 - paired_cos) / 2,
                            a, b = (1 - cone mean) / 2 of images, texts (diagonal excluded)

Every statistic is a function of a few sums (`GeometryState`), so nothing is N x N: the cone
mean uses ||sum_i u_i||^2 instead of the Gram matrix. The same sums serve the pure functions,
the streaming `GeometryAccumulator` (update on chunks, merge across processes) and the
bootstrap (weighted sums with a leading resample axis). Multi-caption data: centroids and cones
use every image and every text once; paired statistics use every caption pair.
The cone *minimum* is truly pairwise and lives in `gapkit.metrics.pairwise`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ._prep import Pairs, column_sum, paired_cosines, prepare, unit_rows

GEOMETRY_KEYS = (
    "centroid_distance", "paired_cosine_mean", "paired_distance_mean", "alignment_loss",
    "image_cone_cosine_mean", "text_cone_cosine_mean", "rmg",
)


@dataclass
class GeometryState:
    """Sufficient statistics of the geometry metrics (float64; any leading batch shape).

    n_image, n_text: (weighted) row counts; sum_image, sum_text: (..., D) row sums;
    sq_image, sq_text: sums of squared row norms (= counts for exact unit rows);
    sum_cos, sum_dist: sums over caption pairs of <x_t(j), y_j> and ||x_t(j) - y_j||.
    """

    n_image: Any
    n_text: Any
    sum_image: np.ndarray
    sum_text: np.ndarray
    sq_image: Any
    sq_text: Any
    sum_cos: Any
    sum_dist: Any

    def __add__(self, other: "GeometryState") -> "GeometryState":
        return GeometryState(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _pair_distances(cos: np.ndarray) -> np.ndarray:
    # ||x - y|| = sqrt(2 - 2 cos) for unit rows; clip rounding below zero.
    return np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))


def _row_sq(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a, dtype=np.float64)


def geometry_state(p: Pairs, image_weights: np.ndarray | None = None) -> GeometryState:
    """Sums of one chunk of prepared pairs. `image_weights` (B, N) gives B weighted copies (the
    bootstrap's resample counts); a text inherits the weight of its image."""
    cos = paired_cosines(p)
    dist = _pair_distances(cos)
    if image_weights is None:
        return GeometryState(
            float(p.n_image), float(p.n_text), column_sum(p.image), column_sum(p.text),
            float(_row_sq(p.image).sum()), float(_row_sq(p.text).sum()), float(cos.sum()), float(dist.sum()),
        )
    w_img = np.asarray(image_weights, dtype=np.float64)
    w_txt = w_img[:, p.mapping]
    return GeometryState(
        w_img.sum(1), w_txt.sum(1), column_sum(p.image, w_img), column_sum(p.text, w_txt),
        w_img @ _row_sq(p.image), w_txt @ _row_sq(p.text), w_txt @ cos, w_txt @ dist,
    )


def _cone(total: np.ndarray, sq: Any, n: Any) -> Any:
    """Mean off-diagonal cosine from the row sum: (||s||^2 - sum ||u||^2) / (n (n - 1))."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, (np.einsum("...d,...d->...", total, total) - sq) / (n * (n - 1)), np.nan)


def geometry_compute(s: GeometryState) -> dict[str, Any]:
    """All geometry metrics from a state (floats, or arrays for a batched state)."""
    gap = s.sum_image / np.expand_dims(s.n_image, -1) - s.sum_text / np.expand_dims(s.n_text, -1)
    paired_cos = s.sum_cos / s.n_text
    img_cone, txt_cone = _cone(s.sum_image, s.sq_image, s.n_image), _cone(s.sum_text, s.sq_text, s.n_text)
    m = (1.0 - paired_cos) / 2.0
    a, b = (1.0 - img_cone) / 2.0, (1.0 - txt_cone) / 2.0
    out = {
        "centroid_distance": np.linalg.norm(gap, axis=-1),
        "paired_cosine_mean": paired_cos,
        "paired_distance_mean": s.sum_dist / s.n_text,
        "alignment_loss": 2.0 - 2.0 * paired_cos,
        "image_cone_cosine_mean": img_cone,
        "text_cone_cosine_mean": txt_cone,
        "rmg": m / (m + (a + b) / 2.0),
    }
    return {k: (float(v) if np.ndim(v) == 0 else np.asarray(v)) for k, v in out.items()}


class GeometryAccumulator:
    """Streaming geometry metrics: `update` on chunks, `merge` partial results, `compute`.

    Gives the same numbers as the pure functions on the concatenated data (up to float64
    rounding). Chunks carry their own text_to_image map (indices local to the chunk).
    """

    def __init__(self) -> None:
        self.state: GeometryState | None = None

    def update(self, image: Any, text: Any, text_to_image: Any = None) -> "GeometryAccumulator":
        s = geometry_state(prepare(image, text, text_to_image))
        self.state = s if self.state is None else self.state + s
        return self

    def merge(self, other: "GeometryAccumulator") -> "GeometryAccumulator":
        if other.state is not None:
            self.state = other.state if self.state is None else self.state + other.state
        return self

    def compute(self) -> dict[str, float]:
        if self.state is None:
            raise ValueError("GeometryAccumulator.compute() before any update()")
        return geometry_compute(self.state)


def geometry_metrics(image: Any, text: Any = None, text_to_image: Any = None) -> dict[str, float]:
    """Every key of GEOMETRY_KEYS in one O((N + M) D) pass."""
    return geometry_compute(geometry_state(prepare(image, text, text_to_image)))


def gap_vector(image: Any, text: Any = None, text_to_image: Any = None, unit: bool = False) -> np.ndarray:
    """mean_i x_i - mean_j y_j, shape (D,), float64; `unit=True` returns the unit direction."""
    p = prepare(image, text, text_to_image)
    g = column_sum(p.image) / p.n_image - column_sum(p.text) / p.n_text
    return g / np.linalg.norm(g) if unit else g


def centroid_distance(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """||mean_i x_i - mean_j y_j|| on L2-normalised rows (Liang et al. 2022)."""
    return float(np.linalg.norm(gap_vector(image, text, text_to_image)))


def paired_cosine_mean(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """mean over caption pairs of <x_t(j), y_j> (the 'alignment score')."""
    return float(paired_cosines(prepare(image, text, text_to_image)).mean())


def paired_distance_mean(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """mean over caption pairs of ||x_t(j) - y_j||."""
    return float(_pair_distances(paired_cosines(prepare(image, text, text_to_image))).mean())


def alignment_loss(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """mean over caption pairs of ||x_t(j) - y_j||^2 (Wang & Isola 2020, alpha = 2)."""
    return float(2.0 - 2.0 * paired_cosine_mean(image, text, text_to_image))


def cone_cosine_mean(x: Any) -> float:
    """Mean off-diagonal cosine of one modality, mean_{i != k} <u_i, u_k>, in O(N D)."""
    u = unit_rows(x)
    return float(_cone(column_sum(u), float(_row_sq(u).sum()), float(u.shape[0])))


def rmg(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """Relative modality gap (Schrodi et al. 2025), self-similarities excluded:
    m / (m + (a + b) / 2) with m = (1 - paired_cos)/2, a/b = (1 - cone mean)/2 of images/texts."""
    return geometry_metrics(image, text, text_to_image)["rmg"]
