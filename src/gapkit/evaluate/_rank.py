"""Ranking helpers shared by every retrieval-style evaluation, chunked over queries.

Conventions (as CLIP_benchmark): a query's rank is 1 + the number of documents that score
strictly higher than its best relevant document (ties go in the query's favour), so with
several relevant documents (e.g. the 5 COCO captions of an image) a hit at K means "any relevant
document in the top K". Scores of a query chunk are never materialised for all queries at once.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..errors import GapkitError

#: (q0, q1) -> scores (q1 - q0, n_docs)
ScoreFn = Callable[[int, int], np.ndarray]


def unit_rows(a: np.ndarray) -> np.ndarray:
    """Float64 copy with L2-normalised rows."""
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def cosine_scorer(queries: np.ndarray, docs: np.ndarray) -> ScoreFn:
    """Scores = cosine similarity of (unit) query rows against all (unit) doc rows."""
    q, d = unit_rows(queries), unit_rows(docs)
    return lambda q0, q1: q[q0:q1] @ d.T


def best_relevant_ranks(score: ScoreFn, n_queries: int, query_groups: np.ndarray, doc_groups: np.ndarray,
                        exclude_self: bool = False, chunk: int = 512) -> np.ndarray:
    """1-based rank of each query's best relevant document (relevant = same group id).

    exclude_self: queries and documents are the same items (intra-modal retrieval); item i is
    not its own result. Queries without any relevant document get rank 0 (callers drop them).
    """
    ranks = np.zeros(n_queries, dtype=np.int64)
    for q0 in range(0, n_queries, chunk):
        q1 = min(q0 + chunk, n_queries)
        s = np.array(score(q0, q1), dtype=np.float64)
        rel = query_groups[q0:q1, None] == doc_groups[None, :]
        if exclude_self:
            rows = np.arange(q1 - q0)
            s[rows, np.arange(q0, q1)] = -np.inf
            rel[rows, np.arange(q0, q1)] = False
        best = np.where(rel, s, -np.inf).max(axis=1)
        has = rel.any(axis=1)
        r = (s > best[:, None]).sum(axis=1) + 1
        ranks[q0:q1] = np.where(has, r, 0)
    return ranks


def recall_from_ranks(ranks: np.ndarray, ks: Iterable[int]) -> dict[int, float]:
    """Share of queries whose rank is <= k, for every k (ranks of 0 = no relevant doc, excluded)."""
    r = ranks[ranks > 0]
    if r.size == 0:
        raise GapkitError("no query has a relevant document")
    return {int(k): float((r <= k).mean()) for k in ks}


def rank_summary(ranks: np.ndarray) -> tuple[float, float]:
    r = ranks[ranks > 0]
    return float(r.mean()), float(np.median(r))


def top_k(score: ScoreFn, n_queries: int, k: int, chunk: int = 512) -> np.ndarray:
    """Indices of the k best documents of every query, best first, shape (n_queries, k)."""
    out = []
    for q0 in range(0, n_queries, chunk):
        s = np.asarray(score(q0, min(q0 + chunk, n_queries)), dtype=np.float64)
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(out)


def ndcg_at_k(top: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray, k: int = 10) -> np.ndarray:
    """Binary-relevance NDCG@k per query.

    top: (Q, >=k) ranked doc indices; relevant: (Q, >=k) bool, whether top[q, r] is relevant;
    n_relevant: (Q,) number of relevant docs per query. DCG = sum_r rel_r / log2(r + 1).
    """
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (relevant[:, :k] * disc[: relevant[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(disc)[np.clip(np.minimum(n_relevant, k) - 1, 0, k - 1)]
    return np.where(n_relevant > 0, dcg / ideal, 0.0)


def graded_ndcg_at_k(gains_at_rank: np.ndarray, relevant_gains: np.ndarray, k: int = 10) -> np.ndarray:
    """Graded NDCG@k per query with linear gains.

    gains_at_rank: (Q, >=k) gain of the document at each rank (0 = not relevant);
    relevant_gains: (Q, n) gain of every document of the corpus for the query (0 = not relevant).
    DCG = sum_{r<=k} g_r / log2(r + 1); IDCG = the same over the k largest gains. 0 when IDCG = 0.
    """
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    g = gains_at_rank[:, :k]
    dcg = (g * disc[: g.shape[1]]).sum(axis=1)
    kk = min(k, relevant_gains.shape[1])
    # the kk largest gains, largest first (partition keeps it O(n) per query on big corpora)
    best = -np.sort(np.partition(-relevant_gains, kk - 1, axis=1)[:, :kk], axis=1) if kk else relevant_gains[:, :0]
    ideal = (best * disc[:kk]).sum(axis=1)
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)
