"""Geometry of the gap: centroids, paired similarity, the cone effect, RMG.

Notation: x_i (i = 1..N) image rows, y_j (j = 1..M) text rows, all L2-normalised; pairs are
(x_{t(j)}, y_j) with t = text_to_image (the identity for 1:1 data).

    centroid_distance       ||mean_i x_i - mean_j y_j||                         (Liang et al. 2022)
    centroid_cosine         <mean x, mean y> / (||mean x|| ||mean y||): the angle between the
                            modality centroids, free of how concentrated each cone is
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

from ..validation import as_matrix
from ._prep import ROW_CHUNK, Pairs, compute_dtype, unit_chunk, validated

GEOMETRY_KEYS = (
    "centroid_distance", "centroid_cosine", "paired_cosine_mean", "paired_distance_mean", "alignment_loss",
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


def _modality_sums(a: np.ndarray, w: np.ndarray | None = None) -> tuple[Any, np.ndarray, Any]:
    """(count, row sum, sum of squared norms) of the L2-normalised rows of `a`, chunk by chunk;
    with weights w (B, N), each a (B,)-batched weighted sum."""
    dt = compute_dtype(a)
    shape = () if w is None else (w.shape[0],)
    n, total, sq = np.zeros(shape), np.zeros(shape + (a.shape[1],)), np.zeros(shape)
    for s in range(0, a.shape[0], ROW_CHUNK):
        u = unit_chunk(a[s : s + ROW_CHUNK], dt)
        if w is None:
            n += u.shape[0]
            total += u.sum(0, dtype=np.float64)
            sq += _row_sq(u).sum()
        else:
            wc = w[:, s : s + ROW_CHUNK]
            n, total, sq = n + wc.sum(1), total + wc @ u, sq + wc @ _row_sq(u)
    return n, total, sq


def _pair_sums(image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None,
               w: np.ndarray | None = None) -> tuple[Any, Any]:
    """(sum of cosines, sum of distances) over caption pairs (x_t(j), y_j), chunk by chunk."""
    dt = compute_dtype(image)
    shape = () if w is None else (w.shape[0],)
    s_cos, s_dist = np.zeros(shape), np.zeros(shape)
    for s in range(0, text.shape[0], ROW_CHUNK):
        idx = slice(s, s + ROW_CHUNK) if mapping is None else mapping[s : s + ROW_CHUNK]
        cos = np.einsum("ij,ij->i", unit_chunk(image[idx], dt), unit_chunk(text[s : s + ROW_CHUNK], dt),
                        dtype=np.float64)
        if w is None:
            s_cos, s_dist = s_cos + cos.sum(), s_dist + _pair_distances(cos).sum()
        else:
            wt = w[:, idx]  # a text carries the weight of its image
            s_cos, s_dist = s_cos + wt @ cos, s_dist + wt @ _pair_distances(cos)
    return s_cos, s_dist


def rows_state(image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None = None,
               image_weights: np.ndarray | None = None) -> GeometryState:
    """GeometryState of validated rows (normalised chunk by chunk: memory O(chunk x D)).

    `image_weights` (B, N) gives B weighted copies (the bootstrap's resample counts); a text
    inherits the weight of its image.
    """
    w_txt = None
    if image_weights is not None:
        image_weights = np.asarray(image_weights, dtype=np.float64)
        w_txt = image_weights if mapping is None else image_weights[:, mapping]
    n_i, sum_i, sq_i = _modality_sums(image, image_weights)
    n_t, sum_t, sq_t = _modality_sums(text, w_txt)
    s_cos, s_dist = _pair_sums(image, text, mapping, image_weights)
    scalar = (lambda v: float(v)) if image_weights is None else (lambda v: v)
    return GeometryState(scalar(n_i), scalar(n_t), sum_i, sum_t, scalar(sq_i), scalar(sq_t), scalar(s_cos),
                         scalar(s_dist))


def geometry_state(p: Pairs, image_weights: np.ndarray | None = None) -> GeometryState:
    """GeometryState of prepared pairs (see `rows_state`)."""
    return rows_state(p.image, p.text, None if p.one_to_one else p.mapping, image_weights)


def _cone(total: np.ndarray, sq: Any, n: Any) -> Any:
    """Mean off-diagonal cosine from the row sum: (||s||^2 - sum ||u||^2) / (n (n - 1))."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, (np.einsum("...d,...d->...", total, total) - sq) / (n * (n - 1)), np.nan)


def geometry_compute(s: GeometryState) -> dict[str, Any]:
    """All geometry metrics from a state (floats, or arrays for a batched state)."""
    mean_i, mean_t = s.sum_image / np.expand_dims(s.n_image, -1), s.sum_text / np.expand_dims(s.n_text, -1)
    gap = mean_i - mean_t
    paired_cos = s.sum_cos / s.n_text
    img_cone, txt_cone = _cone(s.sum_image, s.sq_image, s.n_image), _cone(s.sum_text, s.sq_text, s.n_text)
    m = (1.0 - paired_cos) / 2.0
    a, b = (1.0 - img_cone) / 2.0, (1.0 - txt_cone) / 2.0
    out = {
        "centroid_distance": np.linalg.norm(gap, axis=-1),
        "centroid_cosine": np.einsum("...d,...d->...", mean_i, mean_t)
        / (np.linalg.norm(mean_i, axis=-1) * np.linalg.norm(mean_t, axis=-1)),
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
        s = rows_state(*validated(image, text, text_to_image))
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
    """Every key of GEOMETRY_KEYS in one O((N + M) D) pass with O(chunk x D) extra memory."""
    return geometry_compute(rows_state(*validated(image, text, text_to_image)))


def gap_vector(image: Any, text: Any = None, text_to_image: Any = None, unit: bool = False) -> np.ndarray:
    """mean_i x_i - mean_j y_j, shape (D,), float64; `unit=True` returns the unit direction."""
    img, txt, _ = validated(image, text, text_to_image)
    (n_i, sum_i, _), (n_t, sum_t, _) = _modality_sums(img), _modality_sums(txt)
    g = sum_i / n_i - sum_t / n_t
    return g / np.linalg.norm(g) if unit else g


def centroid_distance(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """||mean_i x_i - mean_j y_j|| on L2-normalised rows (Liang et al. 2022)."""
    return float(np.linalg.norm(gap_vector(image, text, text_to_image)))


def _pair_means(image: Any, text: Any, text_to_image: Any) -> tuple[float, float]:
    img, txt, mapping = validated(image, text, text_to_image)
    s_cos, s_dist = _pair_sums(img, txt, mapping)
    return float(s_cos) / txt.shape[0], float(s_dist) / txt.shape[0]


def paired_cosine_mean(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """mean over caption pairs of <x_t(j), y_j> (the 'alignment score')."""
    return _pair_means(image, text, text_to_image)[0]


def paired_distance_mean(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """mean over caption pairs of ||x_t(j) - y_j||."""
    return _pair_means(image, text, text_to_image)[1]


def alignment_loss(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """mean over caption pairs of ||x_t(j) - y_j||^2 (Wang & Isola 2020, alpha = 2)."""
    return float(2.0 - 2.0 * paired_cosine_mean(image, text, text_to_image))


def cone_cosine_mean(x: Any) -> float:
    """Mean off-diagonal cosine of one modality, mean_{i != k} <u_i, u_k>, in O(N D)."""
    n, total, sq = _modality_sums(as_matrix(x))
    return float(_cone(total, sq, n))


def rmg(image: Any, text: Any = None, text_to_image: Any = None) -> float:
    """Relative modality gap (Schrodi et al. 2025), self-similarities excluded:
    m / (m + (a + b) / 2) with m = (1 - paired_cos)/2, a/b = (1 - cone mean)/2 of images/texts."""
    return geometry_metrics(image, text, text_to_image)["rmg"]
