"""Zero-shot classification with prompt templates (CLIP; Liang Sec. 5.1).

Class-specific prompts (e.g. Liang's HatefulMemes pair "a meme." / "a hatespeech meme.") are
encoded by the caller and passed as the classifier directly.

    w_c   = normalise( mean_t normalise(text_encoder(template_t(class_c))) )   class embedding (C, D)
    pred  = argmax_c <x, w_c>                                                  for unit images x
    acc1, acc5 (top-5, or top-C when C < 5), mean_per_class_recall (CLIP_benchmark keys)
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GapkitError
from ..validation import as_matrix
from ._rank import unit_rows

# Liang et al. Supp. Table 4 and CLIP's small ensembles; "{}" is the class name.
TEMPLATES: dict[str, list[str]] = {
    "photo": ["a photo of {}."],
    "eurosat": ["a centered satellite photo of {}."],
    "svhn": ['a street sign of the number: "{}".'],
    "fashion": ["a photo of a {}.", "a black and white photo of a {}.", "a low resolution photo of a {}.",
                "a photo of the {}, a type of clothing.", "a cropped photo of a {}."],
    "clip-ensemble": ["a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
                      "a rendering of a {}.", "a photo of the small {}.", "a photo of the large {}.",
                      "a close-up photo of a {}.", "a bright photo of a {}.", "a photo of a {}.",
                      "itap of a {}.", "art of the {}."],
}


def prompts(class_names: Sequence[str], templates: Sequence[str] | str = "photo") -> list[list[str]]:
    """The prompt texts per class: [[template.format(name) for template] for class]."""
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            raise GapkitError(f"unknown template set '{templates}'; known: {', '.join(TEMPLATES)}")
        templates = TEMPLATES[templates]
    tpl = list(templates)
    if not tpl or any("{}" not in t for t in tpl):
        raise GapkitError("templates: give at least one template, each containing '{}' for the class name")
    return [[t.format(c) for t in tpl] for c in class_names]


def build_classifier(class_names: Sequence[str], encode_text: Callable[[list[str]], Any],
                     templates: Sequence[str] | str = "photo") -> np.ndarray:
    """Class embeddings (C, D): the normalised mean of the normalised prompt embeddings."""
    texts = prompts(class_names, templates)
    per = len(texts[0])
    emb = unit_rows(np.asarray(_to_numpy(encode_text([t for cls in texts for t in cls])), np.float64))
    return ensemble(emb.reshape(len(class_names), per, -1))


def ensemble(prompt_embeddings: Any) -> np.ndarray:
    """(C, T, D) prompt embeddings -> (C, D) class embeddings (mean of unit rows, renormalised)."""
    e = _to_numpy(prompt_embeddings)
    if e.ndim not in (2, 3):
        raise GapkitError(f"prompt embeddings: expected (C, D) or (C, T, D), got shape {e.shape}")
    # every (class, prompt) row checked like any embedding matrix: numeric, finite, non-zero
    flat = as_matrix(e.reshape(-1, e.shape[-1]) if e.size else e.reshape(0, 0), "prompt embeddings",
                     dtype=np.float64)
    e = flat.reshape(e.shape)
    if e.ndim == 2:
        return unit_rows(e)
    e = e / np.linalg.norm(e, axis=2, keepdims=True)
    return unit_rows(e.mean(axis=1))


def _to_numpy(x: Any) -> np.ndarray:
    from ..validation import to_numpy

    return to_numpy(x)


def zero_shot(image: Any, labels: Any, classifier: Any, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy and mean per-class recall of images (N, D) against class embeddings
    (C, D) or prompt embeddings (C, T, D); labels (N,) integers in [0, C)."""
    rank, pred, y, n_cls = zero_shot_ranks(image, labels, classifier)
    out = {f"acc{k}": float((rank <= min(k, n_cls)).mean()) for k in ks}
    present = np.unique(y)
    out["mean_per_class_recall"] = float(np.mean([(pred[y == c] == c).mean() for c in present]))
    out["n"] = int(rank.shape[0])
    return out


def zero_shot_ranks(image: Any, labels: Any, classifier: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(rank of the true class (N,) 1-based, predicted class (N,), labels (N,), number of classes)."""
    x = unit_rows(as_matrix(image, "image embeddings"))
    w = ensemble(classifier)
    y = np.asarray(labels)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise GapkitError(f"labels: expected ({x.shape[0]},) integers, got shape {y.shape} dtype {y.dtype}")
    if w.shape[1] != x.shape[1]:
        raise GapkitError(f"class embeddings have dimension {w.shape[1]}, images {x.shape[1]}")
    n_cls = w.shape[0]
    if y.min() < 0 or y.max() >= n_cls:
        raise GapkitError(f"labels must lie in [0, {n_cls}); found {y.min()}..{y.max()}")
    s = x @ w.T
    true = s[np.arange(x.shape[0]), y]
    rank = (s > true[:, None]).sum(axis=1) + 1  # ties resolved in favour of the true class
    return rank, s.argmax(axis=1), y, n_cls
