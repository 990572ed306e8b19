"""A MixBench-style labelled-query benchmark: does a gap correction help mixed-modality search?

Built from image-caption pairs (openclipart, emoji, the bundled CLIP sample, any
PairedEmbeddings), with no labels beyond the pairing itself:

    split       images (each with all its captions) are split once into a FIT share, on which every
                correction is fitted, and a held-out TEST share that is indexed and queried, so no
                correction ever sees the queries it is scored on (gapkit.evaluate.protocol);
    queries     one caption of each query item (a `query_fraction` of the test images), by vector;
    relevant    that item's image, its other captions and its fused image+caption document;
    distractor  every other indexed document (all other images, captions, fused documents).

Each correction (a fixer name: "role-center", "center", "calibrated", ...) is compared with raw
cosine on the SAME queries: NDCG@10 (ideal DCG over all relevant documents), recall@10,
image_share@10 (and the corpus's image share, what image_share@10 would be if modality did not
matter), each with its 95 % interval, and the paired difference from raw on the same queries with
its bootstrap 95 % interval (queries resampled; gapkit.evaluate.compare). A ranking comes from a *ranker*: `exact` scores every document with
NumPy (gapkit.evaluate.mixed); a ranker that searches a real index (e.g. ANN) plugs in beside it,
so exact and indexed results sit side by side in one record.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..embeddings import PairedEmbeddings, as_paired
from ..errors import GapkitError
from ..metrics.bootstrap import DEFAULT_N_BOOT
from .compare import compare, summarize
from .mixed import ROLE_FUSED, ROLE_IMAGE, ROLE_TEXT, MixedCorpus, corpus_per_query, rank_corpus
from .protocol import mixed_corpus

#: corrections compared with raw cosine by default (GR-CLIP per-role centring, global centring,
#: calibrated scores)
DEFAULT_CORRECTIONS = ("role-center", "center", "calibrated")
RAW = "none"
DEPTH = 10

FUSE_WEIGHT = 0.5  # the fused documents of corpus_from_pairs: normalise(x + y)

#: (corpus, fit pairs, correction name) -> (Q, depth) corpus rows, best first (-1 = empty slot).
#: A ranker fits the correction itself (on the fit pairs only), as the system it stands for does.
Ranker = Callable[[MixedCorpus, PairedEmbeddings, str], np.ndarray]


def fit_correction(name: str, fit: PairedEmbeddings, corpus: MixedCorpus) -> Any:
    """The correction `name` fitted on the fit pairs exactly as a search index fits it
    (gapkit.search.build.fit_correction), with calibrated priors set for THIS corpus; None = raw."""
    if name == RAW:
        return None
    from ..search.build import fit_correction as index_fit

    roles = [r for r in (ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED) if corpus.role_rows(r).size]
    corr = index_fit(name, fit, roles, None, FUSE_WEIGHT)
    if corr.kind == "calibrated":
        corr.set_corpus_priors({r: int(corpus.role_rows(r).size) for r in roles})
    return corr.fixer


def exact_ranker(corpus: MixedCorpus, fit: PairedEmbeddings, name: str) -> np.ndarray:
    """Every document scored with NumPy (the reference every index is compared with)."""
    return rank_corpus(corpus, fit_correction(name, fit, corpus), DEPTH)


def corpus_pairs(corpus: MixedCorpus) -> tuple[PairedEmbeddings, dict[str, int]]:
    """The corpus as paired embeddings a search index rebuilds the SAME documents from (its fused
    document of an image = the image + its first remaining caption, as in corpus_from_pairs),
    and {index document id: corpus row}."""
    if corpus.doc_sources is None:
        raise GapkitError("this corpus has no provenance (build it with corpus_from_pairs)")
    img_rows = corpus.role_rows(ROLE_IMAGE)
    img_rows = img_rows[np.argsort(corpus.doc_sources[img_rows, 0])]
    if not np.array_equal(corpus.doc_sources[img_rows, 0], np.arange(img_rows.size)):
        raise GapkitError("the corpus must hold every image of its pairs")
    txt_rows = corpus.role_rows(ROLE_TEXT)
    txt_rows = txt_rows[np.argsort(corpus.doc_sources[txt_rows, 1])]
    pe = PairedEmbeddings(corpus.docs[img_rows], corpus.docs[txt_rows], corpus.doc_groups[txt_rows].astype(np.int64))
    ids = {f"image:{i}": int(r) for i, r in enumerate(img_rows)}
    ids.update({f"text:{j}": int(r) for j, r in enumerate(txt_rows)})
    ids.update({f"fused:{int(corpus.doc_groups[r])}": int(r) for r in corpus.role_rows(ROLE_FUSED)})
    return pe, ids


#: backend parameters that force each backend's ANN structure even on a small corpus
ANN_PARAMS: dict[str, dict[str, Any]] = {"faiss": {"kind": "hnsw"}, "lancedb": {"flat_max": 0}}


class IndexRanker:
    """Ranks through a real gapkit.search index (built per correction under `workdir`), e.g.
    LanceDB or FAISS with an ANN structure; hits are mapped back to corpus rows by document id."""

    def __init__(self, workdir: str | Path, backend: str = "faiss", backend_params: Mapping[str, Any] | None = None,
                 seed: int = 0) -> None:
        self.workdir = Path(workdir)
        self.backend = backend
        self.backend_params = dict(backend_params or {})
        self.seed = seed

    def __call__(self, corpus: MixedCorpus, fit: PairedEmbeddings, name: str) -> np.ndarray:
        from ..search import build_index

        pe, row_of = corpus_pairs(corpus)
        roles = [r for r in (ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED) if corpus.role_rows(r).size]
        idx = build_index(pe, out=self.workdir / f"index-{name}", roles=roles, correction=name,
                          fit=None if name == RAW else fit, backend=self.backend,
                          backend_params=self.backend_params, fuse_weight=FUSE_WEIGHT, seed=self.seed)
        hits = idx.search_vectors(corpus.queries, "text", k=DEPTH)
        top = np.full((corpus.queries.shape[0], DEPTH), -1, np.int64)
        for q, row in enumerate(hits):
            for r, h in enumerate(row):
                top[q, r] = row_of[h.id]
        return top


def corpus_summary(corpus: MixedCorpus) -> dict[str, Any]:
    roles = corpus.doc_roles
    return {"n_queries": int(corpus.queries.shape[0]), "n_documents": int(roles.size),
            **{f"n_{r}": int((roles == r).sum()) for r in (ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED)},
            "corpus_image_share": float((roles == ROLE_IMAGE).mean()),
            "relevant_per_query_mean": float(np.mean([(corpus.doc_groups == g).sum() for g in corpus.query_groups]))}


def mixbench(fit: Any, test: Any, corrections: Iterable[str] = DEFAULT_CORRECTIONS, *,
             rankers: Mapping[str, Ranker] | None = None, query_fraction: float = 0.5, fused: bool = True,
             seed: int = 0, n_boot: int = DEFAULT_N_BOOT, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns the results of one record.

    results["corpus"]: sizes and the corpus's image share; for each ranker R (default {"exact"}):
    results[R] = {variant: {KEY, KEY_ci_low, KEY_ci_high[, KEY_diff, KEY_diff_ci_low, KEY_diff_ci_high]}}
    with variant "none" (raw) and each correction (the _diff keys: correction - raw, paired);
    results[f"{R}_skipped"] = {correction: why} for corrections that cannot be built on this data;
    results[f"{R}_recall_vs_exact"] = {variant: share of the exact top 10 the index returned}.
    """
    fit, test = as_paired(fit), as_paired(test)
    corpus = mixed_corpus(test, seed, query_fraction, fused=fused)
    names = [RAW, *[c for c in corrections if c != RAW]]
    rankers = dict(rankers or {"exact": exact_ranker})
    results: dict[str, Any] = {"corpus": corpus_summary(corpus), "fit": {"n_images": fit.n_image, "n_texts": fit.n_text}}
    tops: dict[str, dict[str, np.ndarray]] = {}
    for label, ranker in rankers.items():
        per_query, skipped = {}, {}
        tops[label] = {}
        for name in names:
            _say(progress, f"mixbench: {label}, {name}: fit on {fit.n_image} images, rank for "
                           f"{corpus.queries.shape[0]} queries")
            try:
                top = ranker(corpus, fit, name)
            except GapkitError as exc:  # e.g. calibrated on 1:1 pairs: no text-text matches to calibrate
                if name == RAW:
                    raise
                skipped[name] = str(exc)
                continue
            tops[label][name] = top
            per_query[name] = corpus_per_query(corpus, top, ks=(1, 5, 10))
        raw = per_query[RAW]
        results[label] = {name: summarize(raw, n_boot, seed) if name == RAW else compare(raw, pq, n_boot, seed)
                          for name, pq in per_query.items()}
        if skipped:
            results[f"{label}_skipped"] = skipped
    if "exact" in tops:  # how much of the exact top 10 each index finds (ANN recall@10)
        for label, by_name in tops.items():
            if label != "exact":
                results[f"{label}_recall_vs_exact"] = {
                    name: overlap_at_k(tops["exact"][name], top) for name, top in by_name.items() if name in tops["exact"]}
    return results


def overlap_at_k(reference: np.ndarray, found: np.ndarray, k: int = DEPTH) -> float:
    """Mean over queries of |top-k(reference) & top-k(found)| / |top-k(reference)| (ANN recall@k)."""
    shares = []
    for ref, got in zip(reference[:, :k], found[:, :k]):
        ref = set(ref[ref >= 0].tolist())
        if ref:
            shares.append(len(ref & set(got[got >= 0].tolist())) / len(ref))
    return float(np.mean(shares)) if shares else float("nan")


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
