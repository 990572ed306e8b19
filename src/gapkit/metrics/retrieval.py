"""Cross-modal retrieval: recall@K (CLIP, CLIP_benchmark) and logit entropy, in one tiled pass.

    i2t_recall@K  = share of images with at least one of their captions among the K
                    highest-scoring texts (any-of-the-captions convention, as CLIP_benchmark)
    t2i_recall@K  = share of texts whose image is among the K highest-scoring images
    logit_entropy = mean over images of H(softmax(s * x_i Y^T)) (see gapkit.metrics.entropy)

Scores are cosines of L2-normalised rows. A query's rank is the number of gallery items scoring
strictly higher than its best true match (ties count in the query's favour); a hit at K means
rank < K; no sorting is needed. Images without any caption are not image queries (neither for
recall nor for the entropy). The image->text score tiles serve recall and entropy at once.
Above EXACT_LIMIT queries (unless exact=True) a uniform sample of `n_queries` queries is scored
against the FULL gallery: the hit rate (mean entropy) is then an unbiased estimate with a
95 % CI (Wilson for recall, normal approximation for the entropy; the gallery is never
subsampled, since both depend on its size).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..typecheck import check_positive
from ._prep import Pairs, prepare
from ._tiles import EXACT_LIMIT, iter_tiles, mean_ci, sample_queries, use_exact
from .entropy import tile_entropies

DEFAULT_KS = (1, 5, 10)
DEFAULT_QUERIES = 1_000


def i2t_pass(p: Pairs, queries: np.ndarray | None = None,
             logit_scale: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """For query images with >= 1 caption: rank of the best own caption (q,) and, when
    `logit_scale` is given, the entropy of their softmax over all texts (q,)."""
    order, starts, counts = p.caption_groups()
    q = np.flatnonzero(counts > 0) if queries is None else queries[counts[queries] > 0]
    ranks = np.empty(q.shape[0], dtype=np.int64)
    ent = None if logit_scale is None else np.empty(q.shape[0])
    for s, g in iter_tiles(p.image[q] if queries is not None or q.size < p.n_image else p.image, p.text):
        qi = q[s : s + g.shape[0]]
        rows = np.repeat(np.arange(qi.shape[0]), counts[qi])
        cols = order[np.concatenate([np.arange(a, a + c) for a, c in zip(starts[qi], counts[qi])])]
        best = np.full(qi.shape[0], -np.inf, dtype=g.dtype)
        np.maximum.at(best, rows, g[rows, cols])
        ranks[s : s + qi.shape[0]] = (g > best[:, None]).sum(1)
        if ent is not None:
            ent[s : s + qi.shape[0]] = tile_entropies(g, logit_scale)
    return ranks, ent


def i2t_ranks(p: Pairs, queries: np.ndarray | None = None) -> np.ndarray:
    """Rank of the best own caption for each query image (images with >= 1 caption), (q,) int."""
    return i2t_pass(p, queries)[0]


def t2i_ranks(p: Pairs, queries: np.ndarray | None = None) -> np.ndarray:
    """Rank of the true image for each query text, (q,) int."""
    q = np.arange(p.n_text) if queries is None else queries
    ranks = np.empty(q.shape[0], dtype=np.int64)
    for s, g in iter_tiles(p.text if queries is None else p.text[q], p.image):
        true = g[np.arange(g.shape[0]), p.mapping[q[s : s + g.shape[0]]]]
        ranks[s : s + g.shape[0]] = (g > true[:, None]).sum(1)
    return ranks


def _mean_dict(key: str, values: np.ndarray, exact: bool, ci: bool, bounds: tuple[float, float]) -> dict[str, float]:
    """{key: mean} plus its CI (clipped to `bounds`) when sampled or asked, and n_sampled.
    Hit rates (0/1 values) get Wilson's interval (never [0, 0] for no hit), other means the
    normal approximation."""
    if np.isin(values, (0.0, 1.0)).all():
        from .bootstrap import wilson_interval

        iv = wilson_interval(float(values.sum()), int(values.size))
        mu, lo, hi = iv.estimate, iv.low, iv.high
    else:
        mu, lo, hi = mean_ci(values)
    out = {key: mu}
    if ci or not exact:
        out.update({f"{key}_ci_low": max(lo, bounds[0]), f"{key}_ci_high": min(hi, bounds[1])})
    if not exact:
        out[f"{key}_n_sampled"] = float(values.size)
    return out


def retrieval_metrics(image: Any, text: Any = None, text_to_image: Any = None, ks: Sequence[int] = DEFAULT_KS,
                      logit_scale: float | None = None, *, exact: bool | None = None,
                      n_queries: int = DEFAULT_QUERIES, seed: int = 0, exact_limit: int = EXACT_LIMIT,
                      ci: bool = False, directions: Sequence[str] = ("i2t", "t2i")) -> dict[str, float]:
    """Recall@K both ways (and logit_entropy when `logit_scale` is given), see module doc.

    Sampled values always carry a 95 % CI; `ci=True` adds one to exact values too (normal
    approximation over the queries, gallery fixed)."""
    check_positive("logit_scale", logit_scale, allow_zero=True)
    p = prepare(image, text, text_to_image)
    out: dict[str, float] = {}
    if "i2t" in directions or logit_scale is not None:
        ex = use_exact(exact, p.n_image, limit=exact_limit)
        ranks, ent = i2t_pass(p, None if ex else sample_queries(p.n_image, n_queries, seed), logit_scale)
        if "i2t" in directions:
            for k in ks:
                out.update(_mean_dict(f"i2t_recall@{k}", (ranks < k).astype(np.float64), ex, ci, (0.0, 1.0)))
        if ent is not None:
            out.update(_mean_dict("logit_entropy", ent, ex, ci, (0.0, np.inf)))
    if "t2i" in directions:
        ex = use_exact(exact, p.n_text, limit=exact_limit)
        ranks = t2i_ranks(p, None if ex else sample_queries(p.n_text, n_queries, seed + 1))
        for k in ks:
            out.update(_mean_dict(f"t2i_recall@{k}", (ranks < k).astype(np.float64), ex, ci, (0.0, 1.0)))
    return out


def recall_at_k(image: Any, text: Any = None, text_to_image: Any = None, ks: Sequence[int] = DEFAULT_KS,
                **kw: Any) -> dict[str, float]:
    """{"i2t_recall@K": ..., "t2i_recall@K": ...} for every K in `ks` (see module doc)."""
    return retrieval_metrics(image, text, text_to_image, ks, None, **kw)
