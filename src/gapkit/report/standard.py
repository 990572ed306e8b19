"""The standard figure set of one embedding set, saved as PNGs and described for the report.

`embedding_figures(pe, out_dir)` draws: the 2-D projection(s) with pairs joined, the cosine
histograms (matched image-text / matched text-text / unmatched) and the per-dimension gap. Each
comes back as a `collect.Figure` whose caption tells a reader what to look for.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from ..embeddings import PairedEmbeddings
from .collect import Figure

CAPTIONS = {
    "pca": "Each orange dot is an image, each blue square a text; a grey line joins every matched "
           "pair. Two separate clouds crossed by long parallel lines = a modality gap (Liang et al. "
           "2022, Fig. 1). PCA keeps distances honest; UMAP keeps neighbourhoods.",
    "hist": "Cosine similarity of matched image-text pairs, of two captions of the same image (data "
            "with several captions per image), and of random non-matching image-text and text-text "
            "pairs. With a gap, two texts (even about different images) are more alike than a caption "
            "and its own image (Jina AI blog, Fig. 1).",
    "dims": "Share of the squared gap ||mean image - mean text||^2 carried by each embedding "
            "dimension, largest first. A gap concentrated in a few dimensions can be removed by "
            "dropping them (Schrodi et al. 2025).",
}


def slug(name: str) -> str:
    """A file-name-safe version of a label ('CLIP ViT-B/16' -> 'clip-vit-b-16')."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "set"


KINDS = ("projection", "cosines", "dims")


def embedding_figures(pe: PairedEmbeddings, out_dir: str | Path, name: str = "embeddings",
                      methods: Sequence[str] = ("pca", "umap"), seed: int = 0,
                      which: Sequence[str] = KINDS) -> list[Figure]:
    """Draw and save the standard figures of `pe` under out_dir; return them with captions.

    `which` picks among "projection" (one panel per method), "cosines" and "dims"."""
    from .figures import save_figure
    from .figures import embedding as E

    out = Path(out_dir)
    stem = slug(name)
    figs = []
    if "projection" in which and methods:
        fig = E.projection_panels({name: pe}, methods, seed=seed)
        figs.append(Figure(save_figure(fig, out / f"{stem}_projection.png"),
                           f"{name}: image and text embeddings in 2-D", CAPTIONS["pca"]))
    if "cosines" in which:
        fig = E.cosine_histograms(pe.image, pe.text, pe.text_to_image, seed=seed,
                                  title=f"{name}: cosine similarity of matched and unmatched pairs")
        figs.append(Figure(save_figure(fig, out / f"{stem}_cosines.png"), f"{name}: cosine histograms",
                           CAPTIONS["hist"]))
    if "dims" in which:
        fig = E.gap_dimensions(pe.image, pe.text, pe.text_to_image, title=f"{name}: where the gap lives")
        figs.append(Figure(save_figure(fig, out / f"{stem}_gap_dims.png"), f"{name}: per-dimension gap",
                           CAPTIONS["dims"]))
    return figs
