"""Cross-modal retrieval recall@K (CLIP, CLIP_benchmark), computed in tiles without sorting.

    i2t_recall@K = share of images with at least one of their captions among the K
                   highest-scoring texts (any-of-the-captions convention, as CLIP_benchmark)
    t2i_recall@K = share of texts whose image is among the K highest-scoring images

Scores are cosines of L2-normalised rows. A query's rank is the number of gallery items scoring
strictly higher than its best true match (ties count in the query's favour); a hit at K means
rank < K. Images without any caption are not i2t queries. Above EXACT_LIMIT queries (unless
exact=True) a uniform sample of `n_queries` queries is ranked against the FULL gallery: the hit
rate is then an unbiased estimate of recall@K with a normal-approximation 95 % CI (the gallery is
never subsampled, since recall depends on gallery size).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._prep import Pairs, prepare
from ._tiles import EXACT_LIMIT, iter_tiles, mean_ci, sample_queries, use_exact

DEFAULT_KS = (1, 5, 10)
DEFAULT_QUERIES = 2_000


def _own_caption_index(p: Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts sorted by their image, each image's first position in that order, and counts."""
    order = np.argsort(p.mapping, kind="stable")
    counts = np.bincount(p.mapping, minlength=p.n_image)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def i2t_ranks(p: Pairs, queries: np.ndarray | None = None) -> np.ndarray:
    """Rank of the best own caption for each query image (images with >= 1 caption), (q,) int."""
    order, starts, counts = _own_caption_index(p)
    q = np.flatnonzero(counts > 0) if queries is None else queries[counts[queries] > 0]
    ranks = np.empty(q.shape[0], dtype=np.int64)
    for s, g in iter_tiles(p.image[q], p.text):
        qi = q[s : s + g.shape[0]]
        rows = np.repeat(np.arange(qi.shape[0]), counts[qi])
        cols = order[np.concatenate([np.arange(a, a + c) for a, c in zip(starts[qi], counts[qi])])]
        best = np.full(qi.shape[0], -np.inf, dtype=g.dtype)
        np.maximum.at(best, rows, g[rows, cols])
        ranks[s : s + qi.shape[0]] = (g > best[:, None]).sum(1)
    return ranks


def t2i_ranks(p: Pairs, queries: np.ndarray | None = None) -> np.ndarray:
    """Rank of the true image for each query text, (q,) int."""
    q = np.arange(p.n_text) if queries is None else queries
    ranks = np.empty(q.shape[0], dtype=np.int64)
    for s, g in iter_tiles(p.text[q], p.image):
        true = g[np.arange(g.shape[0]), p.mapping[q[s : s + g.shape[0]]]]
        ranks[s : s + g.shape[0]] = (g > true[:, None]).sum(1)
    return ranks


def _recall_dict(prefix: str, ranks: np.ndarray, ks: Sequence[int], exact: bool, ci: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        hits = (ranks < k).astype(np.float64)
        key = f"{prefix}_recall@{k}"
        mu, lo, hi = mean_ci(hits)
        out[key] = mu
        if ci or not exact:
            out.update({f"{key}_ci_low": max(lo, 0.0), f"{key}_ci_high": min(hi, 1.0)})
        if not exact:
            out[f"{key}_n_sampled"] = float(hits.size)
    return out


def recall_at_k(image: Any, text: Any = None, text_to_image: Any = None, ks: Sequence[int] = DEFAULT_KS,
                *, exact: bool | None = None, n_queries: int = DEFAULT_QUERIES, seed: int = 0,
                exact_limit: int = EXACT_LIMIT, ci: bool = False) -> dict[str, float]:
    """{"i2t_recall@K": ..., "t2i_recall@K": ...} for every K in `ks` (see module doc).

    Sampled values always carry a 95 % CI; `ci=True` adds one to exact values too (normal
    approximation over the queries, gallery fixed)."""
    p = prepare(image, text, text_to_image)
    ex_i = use_exact(exact, p.n_image, limit=exact_limit)
    ex_t = use_exact(exact, p.n_text, limit=exact_limit)
    qi = None if ex_i else sample_queries(p.n_image, n_queries, seed)
    qt = None if ex_t else sample_queries(p.n_text, n_queries, seed + 1)
    out = _recall_dict("i2t", i2t_ranks(p, qi), ks, ex_i, ci)
    out.update(_recall_dict("t2i", t2i_ranks(p, qt), ks, ex_t, ci))
    return out
