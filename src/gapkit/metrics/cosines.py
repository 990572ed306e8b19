"""Cosine distributions of the Jina blog's Fig. 1: image-text vs text-text similarity.

For each image i with captions C(i):
    image2text   cos(x_i, y_j) for every j in C(i)                (every caption pair, M values)
    text2text    cos(y_j, y_k) for every j < k in C(i)            (needs >= 2 captions per image)
    unpaired_image2text  cos(x_i, y_j) for a random caption j of another image (a baseline)

Two captions of one image are far more similar to each other than to that image: the gap seen
from one image. Summary keys: image2text_cosine_mean, text2text_cosine_mean (multi-caption data
only), unpaired_image2text_cosine_mean; the arrays come from `cosine_distributions` for figures.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._prep import Pairs, paired_cosines, prepare, rowwise_dot


def _same_image_caption_pairs(p: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (a, b) of every unordered pair of captions sharing an image."""
    order, starts, counts = p.caption_groups()
    a, b = [], []
    for i in range(int(counts.max(initial=0))):
        for j in range(i + 1, int(counts.max(initial=0))):
            g = counts > j
            a.append(order[starts[g] + i])
            b.append(order[starts[g] + j])
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(a), np.concatenate(b)) if a else (empty, empty)


def _cosines_by_image(p: Pairs, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (values, image of each value)} for the three distributions: every value belongs to
    one image (its caption's image; a caption pair's shared image)."""
    a, b = _same_image_caption_pairs(p)
    rng = np.random.default_rng(seed)
    # a random caption of another image for every caption: one redraw of clashes, then drop the rest
    j = rng.integers(0, p.n_text, p.n_text)
    own = p.mapping[j] == p.mapping
    j[own] = rng.integers(0, p.n_text, int(own.sum()))
    keep = p.mapping[j] != p.mapping
    return {
        "image2text": (paired_cosines(p), p.mapping),
        "text2text": (rowwise_dot(p.text[a], p.text[b]), p.mapping[a]),
        "unpaired_image2text": (rowwise_dot(p.image[p.mapping[keep]], p.text[j[keep]]), p.mapping[keep]),
    }


def cosine_distributions(image: Any, text: Any = None, text_to_image: Any = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The three cosine arrays of the module doc (float64)."""
    return {k: v for k, (v, _) in _cosines_by_image(prepare(image, text, text_to_image), seed).items()}


def cosine_image_sums(p: Pairs, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (S, C)}, both (N,) float64: the sum and the number of key's cosines that belong to
    each image (the draws of `cosine_distributions` with this seed). The mean is sum(S) / sum(C),
    and under image weights w (a cluster-bootstrap resample) it is (w . S) / (w . C): the
    resampled means come from one (B, N) x (N,) product per key (metrics.bootstrap)."""
    out = {}
    for key, (values, owner) in _cosines_by_image(p, seed).items():
        if values.size:
            out[key] = (np.bincount(owner, weights=values, minlength=p.n_image),
                        np.bincount(owner, minlength=p.n_image).astype(np.float64))
    return out


def cosine_summary(image: Any, text: Any = None, text_to_image: Any = None, seed: int = 0) -> dict[str, float]:
    """Means of the cosine distributions (text2text only when some image has >= 2 captions)."""
    d = cosine_distributions(image, text, text_to_image, seed)
    return {f"{k}_cosine_mean": float(v.mean()) for k, v in d.items() if v.size}
