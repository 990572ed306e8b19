"""Cross-modal retrieval R@K and intra-modal retrieval.

    i2t_recall@K  (image -> text): share of images with ANY of their captions in the top K
    t2i_recall@K  (text -> image): share of captions whose image is in the top K
    *_mean_rank / *_median_rank: rank of the best relevant item (1 = first)

One vocabulary with `gapkit measure` (i2t/t2i_recall@K): the ranks come from
gapkit.metrics.retrieval (the same tiled ranking, always exact here); this module adds the rank
summaries. CLIP_benchmark calls these text_retrieval_recall@K (i2t) and image_retrieval_recall@K
(t2i).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..errors import GapkitError
from ._rank import best_relevant_ranks, cosine_scorer, rank_summary, recall_from_ranks

DEFAULT_KS = (1, 5, 10)


def _summarise(prefix: str, ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    out = {f"{prefix}_recall@{k}": v for k, v in recall_from_ranks(ranks, ks).items()}
    mean, median = rank_summary(ranks)
    out[f"{prefix}_mean_rank"] = mean
    out[f"{prefix}_median_rank"] = median
    return out


def retrieval(image: Any, text: Any, text_to_image: Any = None, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Image -> text and text -> image retrieval on image (N, D), text (M, D), map (M,)."""
    from ..metrics._prep import prepare
    from ..metrics.retrieval import i2t_ranks, t2i_ranks

    p = prepare(image, text, text_to_image)
    ks = tuple(ks)
    i2t = i2t_ranks(p) + 1  # metrics count strictly better items (0-based); ranks here start at 1
    t2i = t2i_ranks(p) + 1
    out = {**_summarise("t2i", t2i, ks), **_summarise("i2t", i2t, ks)}
    out["n_images_with_caption"] = int(i2t.size)
    out["n_texts"] = int(p.n_text)
    return out


def intra_modal_retrieval(x: Any, groups: Any, ks: Iterable[int] = DEFAULT_KS, prefix: str = "intra",
                          chunk: int = 512) -> dict[str, float]:
    """Each row queries all other rows of the same modality; relevant = same group (label, or
    same image for captions). Rows alone in their group are skipped."""
    from ..validation import as_matrix

    a = as_matrix(x, "embeddings")
    g = np.asarray(groups)
    if g.shape != (a.shape[0],):
        raise GapkitError(f"groups: expected shape ({a.shape[0]},), got {tuple(g.shape)}")
    ranks = best_relevant_ranks(cosine_scorer(a, a), a.shape[0], g, g, exclude_self=True, chunk=chunk)
    if not (ranks > 0).any():
        raise GapkitError("intra-modal retrieval: every group has a single member (nothing to retrieve)")
    out = _summarise(prefix, ranks, ks)
    out[f"{prefix}_n_queries"] = int((ranks > 0).sum())
    return out
