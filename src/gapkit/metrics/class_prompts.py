"""Class-prompt mode: the gap of zero-shot style data (labelled images + one prompt per class).

Zero-shot data has no captions: each image x_i (N, D) carries a label y_i in [0, C) and the text
side is the C class prompts p_c (C, D), or (C, T, D) templates averaged per class (unit rows,
mean, renormalised: CLIP's prompt ensemble). Each image is paired with its class prompt. In
gapkit's pair structure, where one side may be shared by several rows of the other through a
map, the PROMPTS take the shared side and the images the mapped side with the map = labels:

    PairedEmbeddings(image=prompts (C, D), text=images (N, D), text_to_image=labels)

so every pairwise statistic runs over the N (image, its prompt) pairs and every per-modality
statistic over each modality's own distinct rows. With this layout the metrics are the ones
Schrodi et al. 2025 ("Two effects, one trigger", ICLR 2025) report for classification data:

    L2M = || mean_c p_c - mean_i x_i ||                       (each class prompt counted once)
    L2I = mean_i || x_i - p_{y_i} ||
    RMG = m / (m + (a + b) / 2),  m = (1 - mean_i cos(x_i, p_{y_i})) / 2,
          a = (1 - mean_{i != j} cos(x_i, x_j)) / 2,  b = (1 - mean_{c != c'} cos(p_c, p_c')) / 2

`class_prompt_metrics` returns them (keys l2m, l2i, rmg) with every geometry metric under the
names of the REAL modalities (image_cone_cosine_mean is the images' cone, not the prompts').
Images labelled -1 (no class) are left out.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError


def class_prompt_pairs(image: Any, labels: Any, prompts: Any) -> Any:
    """PairedEmbeddings with the C class prompts on the shared side and the labelled images
    mapped to their prompt (text_to_image = labels); images with label -1 are dropped."""
    from ..embeddings import PairedEmbeddings
    from ..evaluate.zeroshot import ensemble
    from ..validation import as_matrix

    p = ensemble(prompts)
    x = as_matrix(image, "image embeddings", dtype=np.float64)
    y = np.asarray(labels)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise GapkitError(f"labels: expected ({x.shape[0]},) integers, got shape {y.shape} of {y.dtype}")
    if y.size and (y.max() >= p.shape[0] or y.min() < -1):
        raise GapkitError(f"labels must be in [0, {p.shape[0]}) (or -1 for no class), got [{y.min()}, {y.max()}]")
    if p.shape[1] != x.shape[1]:
        raise GapkitError(f"prompt embeddings have dimension {p.shape[1]}, the images {x.shape[1]}")
    keep = y >= 0
    if not keep.any():
        raise GapkitError("no labelled image (every label is -1)")
    return PairedEmbeddings(p, x[keep], y[keep].astype(np.int64), metadata={"class_prompt_mode": True})


def _real_names(key: str) -> str:
    """Swap image_/text_ back: in class_prompt_pairs the prompts sit on the 'image' side."""
    if key.startswith("image_"):
        return "text_" + key[len("image_"):]
    if key.startswith("text_"):
        return "image_" + key[len("text_"):]
    return key


def class_prompt_metrics(image: Any, labels: Any, prompts: Any) -> dict[str, float]:
    """Geometry metrics of labelled images against their class prompts, plus l2m / l2i / rmg
    under Schrodi et al.'s names; n_images and n_classes give the sizes."""
    from .geometry import geometry_metrics

    pe = class_prompt_pairs(image, labels, prompts)
    out = {_real_names(k): v for k, v in geometry_metrics(pe.image, pe.text, pe.text_to_image).items()}
    out.update(l2m=out["centroid_distance"], l2i=out["paired_distance_mean"], n_images=int(pe.text.shape[0]),
               n_classes=int(pe.image.shape[0]))
    return out
