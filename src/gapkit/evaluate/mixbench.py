"""A MixBench-style labelled-query benchmark: does a gap correction help mixed-modality search?

Built from image-caption pairs (openclipart, emoji, the bundled CLIP sample, any
PairedEmbeddings), with no labels beyond the pairing itself:

    split       images (each with all its captions) are split once into a FIT share, on which every
                correction is fitted, and a held-out TEST share that is indexed and queried, so no
                correction ever sees the queries it is scored on;
    queries     one caption of each query item (a `query_fraction` of the test images), by vector;
    relevant    that item's image, its other captions and its fused image+caption document;
    distractor  every other indexed document (all other images, captions, fused documents).

Each correction (a fixer name: "role-center", "center", "calibrated", ...) is compared with raw
cosine on the SAME queries: NDCG@10 (ideal DCG over all relevant documents), recall@10,
image_share@10 (and the corpus's image share, what image_share@10 would be if modality did not
matter), as means and as paired gains over raw with bootstrap 95 % intervals (queries resampled,
gapkit.evaluate.paired). A ranking comes from a *ranker*: `exact` scores every document with
NumPy (gapkit.evaluate.mixed); a ranker that searches a real index (e.g. ANN) plugs in beside it,
so exact and indexed results sit side by side in one record.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..embeddings import PairedEmbeddings, as_paired
from ..errors import GapkitError
from .mixed import ROLE_FUSED, ROLE_IMAGE, ROLE_TEXT, MixedCorpus, corpus_from_pairs, corpus_per_query, mean_metrics, rank_corpus
from .paired import DEFAULT_N_BOOT, gains_table

#: corrections compared with raw cosine by default (GR-CLIP per-role centring, global centring,
#: calibrated scores)
DEFAULT_CORRECTIONS = ("role-center", "center", "calibrated")
#: per-query metrics whose paired gain over raw is reported
GAIN_KEYS = ("ndcg@10", "recall@10", "image_share@10")
RAW = "none"
DEPTH = 10

#: (corpus, correction name, fitted fixer or None for raw) -> (Q, depth) corpus rows, best first (-1 = empty)
Ranker = Callable[[MixedCorpus, str, Any], np.ndarray]


def split_items(pairs: Any, fit_fraction: float = 0.5, seed: int = 0) -> tuple[PairedEmbeddings, PairedEmbeddings]:
    """Seeded split of the IMAGES into (fit, test) sets; every caption goes with its image."""
    pe = as_paired(pairs)
    if not 0 < fit_fraction < 1:
        raise GapkitError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    perm = np.random.default_rng(seed).permutation(pe.n_image)
    n_fit = int(round(fit_fraction * pe.n_image))
    if n_fit < 2 or pe.n_image - n_fit < 2:
        raise GapkitError(f"too few images ({pe.n_image}) to split into fit and test sets")
    return subset_items(pe, np.sort(perm[:n_fit])), subset_items(pe, np.sort(perm[n_fit:]))


def subset_items(pe: PairedEmbeddings, images: np.ndarray) -> PairedEmbeddings:
    """The pairs of the given image rows (captions follow their image, renumbered)."""
    new_id = np.full(pe.n_image, -1, np.int64)
    new_id[images] = np.arange(images.size)
    m = pe.mapping
    keep = np.flatnonzero(new_id[m] >= 0)
    return PairedEmbeddings(np.asarray(pe.image)[images], np.asarray(pe.text)[keep], new_id[m[keep]])


def fit_correction(name: str, fit: PairedEmbeddings, params: Mapping[str, Any] | None = None) -> Any:
    """The fixer `name` fitted on the fit pairs (None for "none" = raw cosine)."""
    if name == RAW:
        return None
    from ..fixers import create_fixer

    return create_fixer(name, **dict(params or {})).fit(fit.image, fit.text, fit.mapping)


def exact_ranker(corpus: MixedCorpus, name: str, fixer: Any) -> np.ndarray:
    """Every document scored with NumPy (the reference every index is compared with)."""
    return rank_corpus(corpus, fixer, DEPTH)


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
    results[R] = {variant: mean metrics} with variant "none" (raw) and each correction, and
    results[f"{R}_gain"] = {correction: {key_gain, key_gain_ci_low, key_gain_ci_high}}.
    """
    fit, test = as_paired(fit), as_paired(test)
    corpus = corpus_from_pairs(test, query_fraction, seed, fused=fused)
    names = [RAW, *[c for c in corrections if c != RAW]]
    rankers = dict(rankers or {"exact": exact_ranker})
    fixers = {}
    for name in names:
        if name != RAW:
            _say(progress, f"mixbench: fitting {name} on {fit.n_image} fit images")
        fixers[name] = fit_correction(name, fit)
    results: dict[str, Any] = {"corpus": corpus_summary(corpus)}
    for label, ranker in rankers.items():
        per_query = {}
        for name in names:
            _say(progress, f"mixbench: {label} ranking, {name}, {corpus.queries.shape[0]} queries")
            per_query[name] = corpus_per_query(corpus, ranker(corpus, name, fixers[name]), ks=(1, 5, 10))
        results[label] = {name: mean_metrics(pq) for name, pq in per_query.items()}
        results[f"{label}_gain"] = gains_table(per_query, RAW, GAIN_KEYS, n_boot=n_boot, seed=seed)
    return results


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
