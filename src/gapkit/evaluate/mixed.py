"""Mixed-modality retrieval: text queries against a corpus of images, texts and fused documents.

This is the Jina blog's opening problem: with a modality gap a text query scores ~0.3 against its
matching image but ~0.5 against unrelated texts, so ranking a mixed corpus by raw cosine sinks
every image below the texts. Metrics (binary relevance, relevant = same group id):

    ndcg@10, recall@K (any relevant document in the top K),
    image_recall@K / text_recall@K   share of queries with a relevant image / text doc in the top K
    image_share@10                   share of top-10 slots held by image documents
    corpus_image_share               share of images in the corpus (what image_share@10 would be
                                     if modality did not matter)

Scoring with a fixer: an embedding fixer transforms the queries (role "query_text" when the
fixer knows roles, else "text") and each document by its role; a score fixer ("calibrated") maps
each raw cosine through the calibration of its modality pair (text-image, text-text or
text-fused), as P(match) with the fixer's priors, or as a percentile.

Graded relevance (MixBench, Li et al. 2025, arXiv:2507.19054, judges documents on a graded scale):
`gains` gives each relevant document a gain by its role, e.g. {"image": 1, "text": 1, "fused": 2}
(a fused document holds both the matching image and its caption), and ndcg@10 becomes

    DCG = sum_{r <= 10} g_r / log2(r + 1)  (g_r = the gain of the document at rank r, 0 if irrelevant)
    NDCG = DCG / IDCG,  IDCG = the DCG of the query's relevant documents sorted by decreasing gain

(linear gains, as trec_eval / pytrec_eval, which BEIR-style benchmarks use). Without gains every
relevant document has gain 1 (binary NDCG). Fused documents are normalise(alpha x + (1 - alpha) y):
`alpha` is the image's weight (MixBench sweeps it over [0, 1]; 0.5 = the plain sum).

Building a corpus from image-caption pairs (`corpus_from_pairs`): a random `query_fraction` of the
images become query groups; one caption of each becomes a query and the image plus its other
captions become relevant documents. All other images and captions are distractor documents.
With 1:1 pairs (the bundled COCO sample) the only relevant document of a query is its image, and
the distractors are the remaining images and the captions of the non-query pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..embeddings import PairedEmbeddings, as_paired
from ..errors import GapkitError
from ._rank import graded_ndcg_at_k, ndcg_at_k, top_k, unit_rows

ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED = "image", "text", "fused"


@dataclass
class MixedCorpus:
    """Text queries (Q, D) with group ids (Q,); documents (n, D) with roles and group ids.

    fused_parts holds the (image, text) rows (n_fused, 2, D) each fused document was built from,
    in the order of the fused documents, so fixers can transform the parts. Provenance, when the
    corpus comes from pairs: doc_sources (n, 2) = (image row, caption row) each document was made
    from (-1 = none; a fused document has both), query_sources (Q,) = the caption row of each query.
    """

    queries: np.ndarray
    query_groups: np.ndarray
    docs: np.ndarray
    doc_roles: np.ndarray
    doc_groups: np.ndarray
    fused_parts: np.ndarray | None = None
    doc_sources: np.ndarray | None = None
    query_sources: np.ndarray | None = None
    fuse_weight: float = 0.5
    doc_gains: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.queries.shape[1] != self.docs.shape[1]:
            raise GapkitError("mixed corpus: queries and documents have different dimensions")
        if self.doc_roles.shape != (self.docs.shape[0],) or self.doc_groups.shape != (self.docs.shape[0],):
            raise GapkitError("mixed corpus: doc_roles and doc_groups need one entry per document")
        bad = set(np.unique(self.doc_roles)) - {ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED}
        if bad:
            raise GapkitError(f"mixed corpus: unknown document roles {sorted(bad)}")

    def role_rows(self, role: str) -> np.ndarray:
        return np.flatnonzero(self.doc_roles == role)


def fuse_rows(image: np.ndarray, text: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """normalise(w x + (1 - w) y) of unit rows."""
    return unit_rows(weight * unit_rows(image) + (1 - weight) * unit_rows(text))


def corpus_from_pairs(pairs: Any, query_fraction: float = 0.5, seed: int = 0, fused: bool = False,
                      alpha: float = 0.5, gains: dict[str, float] | None = None) -> MixedCorpus:
    """Build a mixed corpus from PairedEmbeddings (or a (2, N, D) stack); see the module docstring.

    fused=True adds one fused document normalise(alpha x + (1 - alpha) y) per image that keeps a
    caption in the corpus (its first remaining caption). gains: graded relevance by role.
    """
    pe: PairedEmbeddings = as_paired(pairs)
    check_alpha(alpha)
    if not 0 < query_fraction < 1:
        raise GapkitError(f"query_fraction must be in (0, 1), got {query_fraction}")
    rng = np.random.default_rng(seed)
    m = pe.mapping
    img, txt = unit_rows(pe.image), unit_rows(pe.text)
    has_caption = np.unique(m)
    n_q = max(1, int(round(query_fraction * has_caption.size)))
    q_imgs = np.sort(rng.choice(has_caption, n_q, replace=False))
    # one random caption per query image becomes the query
    order = rng.permutation(m.size)
    first_of = {}
    for j in order:
        first_of.setdefault(int(m[j]), int(j))
    q_texts = np.array([first_of[int(i)] for i in q_imgs], dtype=np.int64)
    doc_texts = np.setdiff1d(np.arange(m.size), q_texts)
    docs = [img, txt[doc_texts]]
    roles = [np.full(img.shape[0], ROLE_IMAGE), np.full(doc_texts.size, ROLE_TEXT)]
    groups = [np.arange(img.shape[0]), m[doc_texts]]
    sources = [np.stack([np.arange(img.shape[0]), np.full(img.shape[0], -1)], axis=1),
               np.stack([np.full(doc_texts.size, -1), doc_texts], axis=1)]
    parts = None
    if fused:
        keep_img, first_idx = np.unique(m[doc_texts], return_index=True)
        parts = np.stack([img[keep_img], txt[doc_texts[first_idx]]], axis=1)
        docs.append(fuse_rows(parts[:, 0], parts[:, 1], alpha))
        roles.append(np.full(keep_img.size, ROLE_FUSED))
        groups.append(keep_img)
        sources.append(np.stack([keep_img, doc_texts[first_idx]], axis=1))
    roles_all = np.concatenate(roles).astype(object)
    return MixedCorpus(txt[q_texts], q_imgs, np.concatenate(docs), roles_all, np.concatenate(groups), parts,
                       np.concatenate(sources).astype(np.int64), q_texts, float(alpha), role_gains(roles_all, gains))


def check_alpha(alpha: float) -> None:
    if not 0.0 <= float(alpha) <= 1.0:
        raise GapkitError(f"alpha (the image's weight in a fused document) must be in [0, 1], got {alpha}")


def role_gains(roles: np.ndarray, gains: dict[str, float] | None) -> np.ndarray | None:
    """(n,) gain of each document by its role (None = binary relevance). Unnamed roles get 1."""
    if gains is None:
        return None
    unknown = sorted(set(gains) - {ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED})
    if unknown:
        raise GapkitError(f"gains: unknown roles {unknown}; use image, text, fused")
    for role, g in gains.items():
        if not (isinstance(g, (int, float)) and not isinstance(g, bool) and np.isfinite(g) and g >= 0):
            raise GapkitError(f"gains: the gain of {role} must be a finite number >= 0, got {g!r}")
    return np.array([float(gains.get(r, 1.0)) for r in roles], dtype=np.float64)


def _knows_roles(fixer: Any) -> bool:
    return "query_text" in getattr(fixer, "modalities", ())


def _transformed(corpus: MixedCorpus, fixer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(queries', docs') after an embedding fixer (or unchanged when fixer is None)."""
    if fixer is None:
        return unit_rows(corpus.queries), unit_rows(corpus.docs)
    roles = _knows_roles(fixer)
    q = fixer.transform(corpus.queries, "query_text" if roles else "text")
    d = np.empty(corpus.docs.shape, dtype=np.float64)
    for role, mod in ((ROLE_IMAGE, "image"), (ROLE_TEXT, "text")):
        rows = corpus.role_rows(role)
        if rows.size:
            d[rows] = fixer.transform(corpus.docs[rows], mod)
    rows = corpus.role_rows(ROLE_FUSED)
    if rows.size:
        if roles:
            d[rows] = fixer.transform(corpus.docs[rows], "doc_fused")
        else:  # fuse the separately fixed parts
            p = corpus.fused_parts
            d[rows] = fuse_rows(fixer.transform(p[:, 0], "image"), fixer.transform(p[:, 1], "text"),
                                corpus.fuse_weight)
    return unit_rows(q), unit_rows(d)


def _scorer(corpus: MixedCorpus, fixer: Any, kind: str):
    q, d = _transformed(corpus, None if getattr(fixer, "acts_on", "embeddings") == "scores" else fixer)
    if getattr(fixer, "acts_on", "embeddings") != "scores":
        return lambda q0, q1: q[q0:q1] @ d.T
    pair_of = {ROLE_IMAGE: "image-text", ROLE_TEXT: "text-text", ROLE_FUSED: "text-fused"}
    present = {role: rows for role in pair_of if (rows := corpus.role_rows(role)).size}
    known = set(fixer.tables_) if hasattr(fixer, "tables_") else set()
    missing = [pair_of[r] for r in present if f"{pair_of[r]}:neg_quantiles" not in known]
    if missing:
        raise GapkitError(f"calibrated scores have no calibration for {', '.join(missing)} "
                          f"({', '.join(r for r in present if pair_of[r] in missing)} documents); drop them or use "
                          "an embedding fixer")
    if kind == "auto":
        kind = "probability" if {pair_of[r] for r in present} <= set(fixer.prob_pairs_) else "percentile"

    def score(q0: int, q1: int) -> np.ndarray:
        s = q[q0:q1] @ d.T
        for role, rows in present.items():
            s[:, rows] = fixer.calibrate(s[:, rows], pair_of[role], kind)
        return s

    return score


def rank_corpus(corpus: MixedCorpus, fixer: Any = None, depth: int = 10, kind: str = "auto") -> np.ndarray:
    """(Q, depth) document rows of every query's best documents, best first, scored exactly (all
    documents) raw or through a fitted fixer (see the module docstring)."""
    return top_k(_scorer(corpus, fixer, kind), corpus.queries.shape[0], depth)


def per_query_metrics(relevant: np.ndarray, roles: np.ndarray, n_relevant: np.ndarray,
                      relevant_roles: dict[str, np.ndarray] | None = None,
                      ks: Iterable[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Metrics of each query's ranked list, one (Q,) array per key.

    relevant: (Q, depth) bool, whether the document at rank r is relevant to query q;
    roles: (Q, depth) role of that document ("" where a list is shorter than depth);
    n_relevant: (Q,) number of relevant documents of q in the whole corpus (the ideal DCG puts
    them all first); relevant_roles: {role: (Q,) bool} whether q has a relevant document of that
    role (its {role}_recall@k is NaN where it has none, so it drops out of means).

        ndcg@10         sum_r rel_r / log2(r + 1) over the top 10, over the same sum of the ideal list
        recall@k        1 if any relevant document is in the top k
        image_share@10  images among the filled top-10 slots (NaN for an empty list)
    """
    ks = tuple(ks)
    out: dict[str, np.ndarray] = {"ndcg@10": ndcg_at_k(relevant, relevant, n_relevant, 10)}
    for k in ks:
        out[f"recall@{k}"] = relevant[:, :k].any(axis=1).astype(np.float64)
        for role, has in (relevant_roles or {}).items():
            if has.any():
                hit = (relevant[:, :k] & (roles[:, :k] == role)).any(axis=1).astype(np.float64)
                out[f"{role}_recall@{k}"] = np.where(has, hit, np.nan)
    filled = (roles[:, :10] != "").sum(axis=1)
    images = (roles[:, :10] == ROLE_IMAGE).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["image_share@10"] = np.where(filled > 0, images / np.maximum(filled, 1), np.nan)
    return out


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-query metric over the queries where it is defined (not NaN)."""
    return {k: float(np.nanmean(v)) for k, v in per_query.items() if np.isfinite(v).any()}


def corpus_per_query(corpus: MixedCorpus, top: np.ndarray, ks: Iterable[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """per_query_metrics of a ranking `top` (Q, depth) of corpus rows (-1 = empty slot)."""
    filled = top >= 0
    rows = np.where(filled, top, 0)
    rel = (corpus.doc_groups[rows] == corpus.query_groups[:, None]) & filled
    roles = np.where(filled, corpus.doc_roles[rows], "").astype(object)
    relevant_all = corpus.doc_groups[None, :] == corpus.query_groups[:, None]  # (Q, n)
    has_role = {role: (relevant_all & (corpus.doc_roles == role)[None, :]).any(axis=1)
                for role in (ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED)}
    out = per_query_metrics(rel, roles, relevant_all.sum(axis=1), has_role, ks)
    if corpus.doc_gains is not None:
        at_rank = np.where(rel, corpus.doc_gains[rows], 0.0)
        out["ndcg@10"] = graded_ndcg_at_k(at_rank, np.where(relevant_all, corpus.doc_gains[None, :], 0.0), 10)
    return out


def mixed_per_query(corpus: MixedCorpus, fixer: Any = None, ks: Iterable[int] = (1, 5, 10),
                    kind: str = "auto") -> dict[str, np.ndarray]:
    """Per-query values (Q,) of every mixed-retrieval metric of the exact ranking (raw or through
    `fixer`): ndcg@10, recall@K, image_share@10; <role>_recall@K with NaN for queries that have
    no relevant document of that role. Means of these are `mixed_retrieval`; paired comparisons
    of two arms (gapkit.evaluate.compare) resample them."""
    ks = tuple(ks)
    return corpus_per_query(corpus, rank_corpus(corpus, fixer, max(max(ks), 10), kind), ks)


def mixed_retrieval(corpus: MixedCorpus, fixer: Any = None, ks: Iterable[int] = (1, 5, 10),
                    kind: str = "auto") -> dict[str, float]:
    """Rank the corpus for every query (raw, or through a fitted fixer) and score it.

    kind (score fixers only): "probability", "percentile", or "auto" (probability when both
    pairs have one, else percentile).
    """
    out = mean_metrics(mixed_per_query(corpus, fixer, ks, kind))
    out["corpus_image_share"] = float((corpus.doc_roles == ROLE_IMAGE).mean())
    out["n_queries"] = int(corpus.queries.shape[0])
    out["n_documents"] = int(corpus.docs.shape[0])
    return out
