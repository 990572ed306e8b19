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
each raw cosine through the calibration of its modality pair (text-image or text-text).

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
from ._rank import ndcg_at_k, top_k, unit_rows

ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED = "image", "text", "fused"


@dataclass
class MixedCorpus:
    """Text queries (Q, D) with group ids (Q,); documents (n, D) with roles and group ids.

    fused_parts holds the (image, text) rows (n_fused, 2, D) each fused document was built from,
    in the order of the fused documents, so fixers can transform the parts.
    """

    queries: np.ndarray
    query_groups: np.ndarray
    docs: np.ndarray
    doc_roles: np.ndarray
    doc_groups: np.ndarray
    fused_parts: np.ndarray | None = None

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


def corpus_from_pairs(pairs: Any, query_fraction: float = 0.5, seed: int = 0, fused: bool = False) -> MixedCorpus:
    """Build a mixed corpus from PairedEmbeddings (or a (2, N, D) stack); see the module docstring.

    fused=True adds one fused document normalise(x + y) per image that keeps a caption in the
    corpus (its first remaining caption).
    """
    pe: PairedEmbeddings = as_paired(pairs)
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
    parts = None
    if fused:
        keep_img, first_idx = np.unique(m[doc_texts], return_index=True)
        parts = np.stack([img[keep_img], txt[doc_texts[first_idx]]], axis=1)
        docs.append(fuse_rows(parts[:, 0], parts[:, 1]))
        roles.append(np.full(keep_img.size, ROLE_FUSED))
        groups.append(keep_img)
    return MixedCorpus(txt[q_texts], q_imgs, np.concatenate(docs), np.concatenate(roles).astype(object),
                       np.concatenate(groups), parts)


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
            d[rows] = fuse_rows(fixer.transform(p[:, 0], "image"), fixer.transform(p[:, 1], "text"))
    return unit_rows(q), unit_rows(d)


def _scorer(corpus: MixedCorpus, fixer: Any, kind: str):
    q, d = _transformed(corpus, None if getattr(fixer, "acts_on", "embeddings") == "scores" else fixer)
    if getattr(fixer, "acts_on", "embeddings") != "scores":
        return lambda q0, q1: q[q0:q1] @ d.T
    if corpus.role_rows(ROLE_FUSED).size:
        raise GapkitError("calibrated scores have no calibration for fused documents; drop them or use "
                          "an embedding fixer")
    if kind == "auto":
        kind = "probability" if {"image-text", "text-text"} <= set(fixer.prob_pairs_) else "percentile"
    pair_of = {ROLE_IMAGE: "image-text", ROLE_TEXT: "text-text"}

    def score(q0: int, q1: int) -> np.ndarray:
        s = q[q0:q1] @ d.T
        for role, pair in pair_of.items():
            rows = corpus.role_rows(role)
            s[:, rows] = fixer.calibrate(s[:, rows], pair, kind)
        return s

    return score


def mixed_per_query(corpus: MixedCorpus, fixer: Any = None, ks: Iterable[int] = (1, 5, 10),
                    kind: str = "auto") -> dict[str, np.ndarray]:
    """Per-query values (Q,) of every mixed-retrieval metric (see the module doc): ndcg@10,
    recall@K, image_share@10 as floats; <role>_recall@K as floats with NaN for queries that have
    no relevant document of that role. Means of these are `mixed_retrieval`; paired comparisons
    of two arms (gapkit.evaluate.compare) resample them."""
    ks = tuple(ks)
    depth = max(max(ks), 10)
    score = _scorer(corpus, fixer, kind)
    n_q = corpus.queries.shape[0]
    top = top_k(score, n_q, depth)
    rel = corpus.doc_groups[top] == corpus.query_groups[:, None]
    roles = corpus.doc_roles[top]
    relevant_all = corpus.doc_groups[None, :] == corpus.query_groups[:, None]  # (Q, n)
    n_rel = relevant_all.sum(axis=1)
    out: dict[str, np.ndarray] = {"ndcg@10": ndcg_at_k(top, rel, n_rel, 10)}
    for k in ks:
        out[f"recall@{k}"] = rel[:, :k].any(axis=1).astype(np.float64)
        for role in (ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED):
            has = (relevant_all & (corpus.doc_roles == role)[None, :]).any(axis=1)
            if has.any():  # only queries that have a relevant document of this role count
                hit = (rel[:, :k] & (roles[:, :k] == role)).any(axis=1)
                out[f"{role}_recall@{k}"] = np.where(has, hit.astype(np.float64), np.nan)
    out["image_share@10"] = (roles[:, :10] == ROLE_IMAGE).mean(axis=1)
    return out


def mixed_retrieval(corpus: MixedCorpus, fixer: Any = None, ks: Iterable[int] = (1, 5, 10),
                    kind: str = "auto") -> dict[str, float]:
    """Rank the corpus for every query (raw, or through a fitted fixer) and score it.

    kind (score fixers only): "probability", "percentile", or "auto" (probability when both
    pairs have one, else percentile).
    """
    per = mixed_per_query(corpus, fixer, ks, kind)
    out: dict[str, float] = {k: float(np.nanmean(v)) for k, v in per.items()}
    out["corpus_image_share"] = float((corpus.doc_roles == ROLE_IMAGE).mean())
    out["n_queries"] = int(corpus.queries.shape[0])
    out["n_documents"] = int(corpus.docs.shape[0])
    return out
