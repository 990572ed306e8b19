"""The held-out protocol shared by `gapkit evaluate`, the gap-sweep experiment, `gapkit study`
and the demo: how paired embeddings become a calibration part, an evaluation part and a mixed
corpus. One function per step, so the same raw model gets the same number from every command.

1. Split IMAGES, never captions (`split_images`, `kfold_images`): a seeded permutation of the
   images; every caption follows its image, so no caption of a test image is seen when fitting.
   Images without a caption stay in their part (they are distractor documents).
2. Fit fixers on the calibration part only (with its text_to_image map; `fit_fixer`). A
   role-aware fixer (role-center) learns its query_text mean from the captions the protocol's
   corpus of the calibration part uses as queries, and its doc_text mean from the other captions.
   Where queries and documents are drawn alike (captions split at random, as here) the two means
   agree up to sampling noise and role-center acts like center; it differs where query texts
   differ from document texts (short search queries vs long captions: fit_roles with real queries).
3. Evaluate on the evaluation part: retrieval both ways with EVERY caption (any-of-the-captions
   convention), and the mixed corpus of `mixed_corpus`:
     - a random `query_fraction` (default 0.5) of the images that have a caption are query groups;
     - one random caption of each query image is the query; its image and its other captions are
       the relevant documents;
     - every other image and caption is a distractor document (optionally fused image+caption
       documents).
   With 1:1 pairs the only relevant document of a query is its image.

Why this matters: mixed NDCG@10 depends on the corpus. The gap-sweep used to reduce the data to
first-caption 1:1 pairs and split them in halves (relevant = the image only), while `evaluate`
kept every caption of the whole set (relevant = the image and its sibling captions, which a
gapped model finds easily), so one raw model read 0.60 from one and 0.29 from the other. Every
command now builds its corpus here, keeping every caption.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..embeddings import PairedEmbeddings, as_paired
from ..errors import GapkitError
from .mixed import MixedCorpus, corpus_from_pairs

DEFAULT_QUERY_FRACTION = 0.5


def subset_images(pe: PairedEmbeddings, rows: np.ndarray) -> PairedEmbeddings:
    """The images `rows` (in that order) with all their captions; maps re-indexed; captions,
    ids and metadata carried over."""
    rows = np.asarray(rows, dtype=np.int64)
    new_index = np.full(pe.n_image, -1, dtype=np.int64)
    new_index[rows] = np.arange(rows.size)
    m = pe.mapping
    keep = np.flatnonzero(new_index[m] >= 0)
    keep = keep[np.argsort(new_index[m[keep]], kind="stable")]  # captions in image order

    def pick(seq: Any, idx: np.ndarray) -> Any:
        return None if seq is None else [seq[i] for i in idx]

    return PairedEmbeddings(np.asarray(pe.image)[rows], np.asarray(pe.text)[keep], new_index[m[keep]],
                            pick(pe.image_ids, rows), pick(pe.text_ids, keep), pick(pe.captions, keep),
                            dict(pe.metadata))


def split_images(pairs: Any, calib_fraction: float = 0.5, seed: int = 0) -> tuple[PairedEmbeddings, PairedEmbeddings]:
    """Seeded (calibration, evaluation) split of the images, captions following their image."""
    pe = as_paired(pairs)
    if not 0 < calib_fraction < 1:
        raise GapkitError(f"calibration fraction must be in (0, 1), got {calib_fraction}")
    perm = np.random.default_rng(seed).permutation(pe.n_image)
    k = int(round(calib_fraction * pe.n_image))
    if k < 2 or pe.n_image - k < 2:
        raise GapkitError(f"calibration fraction {calib_fraction} of {pe.n_image} images leaves a part with "
                          "fewer than 2 images")
    return subset_images(pe, np.sort(perm[:k])), subset_images(pe, np.sort(perm[k:]))


def kfold_images(pairs: Any, folds: int, seed: int = 0) -> Iterator[tuple[PairedEmbeddings, PairedEmbeddings]]:
    """K seeded folds of the images: yields (calibration = the other folds, evaluation = this fold)."""
    pe = as_paired(pairs)
    if not isinstance(folds, int) or folds < 2:
        raise GapkitError(f"folds must be an integer >= 2, got {folds!r}")
    if pe.n_image < 2 * folds:
        raise GapkitError(f"{folds} folds need at least {2 * folds} images, got {pe.n_image}")
    perm = np.random.default_rng(seed).permutation(pe.n_image)
    parts = np.array_split(perm, folds)
    for i in range(folds):
        test = np.sort(parts[i])
        calib = np.sort(np.concatenate([parts[j] for j in range(folds) if j != i]))
        yield subset_images(pe, calib), subset_images(pe, test)


def mixed_corpus(pairs: Any, seed: int = 0, query_fraction: float = DEFAULT_QUERY_FRACTION,
                 fused: bool = False, alpha: float = 0.5, gains: dict[str, float] | None = None) -> MixedCorpus:
    """The mixed corpus of the protocol (step 3 of the module doc), every caption kept; alpha =
    the image's weight in fused documents, gains = graded relevance by role (gapkit.evaluate.mixed)."""
    return corpus_from_pairs(as_paired(pairs), query_fraction, seed, fused=fused, alpha=alpha, gains=gains)


def fit_fixer(fx: Any, calib: PairedEmbeddings, seed: int = 0) -> Any:
    """Fit `fx` on the calibration part (step 2 of the module doc) and return it."""
    if "query_text" not in getattr(fx, "modalities", ()) or not hasattr(fx, "fit_roles"):
        return fx.fit(calib.image, calib.text, calib.text_to_image)
    # the fused role too, built as the corpus builds it (fuse weight = the image's weight alpha), so
    # a role-aware fixer can also be evaluated on corpora with fused documents
    corpus = mixed_corpus(calib, seed, fused=True, alpha=float(getattr(fx, "fuse_weight", 0.5)))
    text_docs = corpus.docs[corpus.role_rows("text")]
    rows = {"query_text": corpus.queries, "doc_text": text_docs if len(text_docs) else corpus.queries,
            "doc_image": calib.image}
    fused_docs = corpus.docs[corpus.role_rows("fused")]
    if len(fused_docs):
        rows["doc_fused"] = fused_docs
    return fx.fit_roles(rows)
