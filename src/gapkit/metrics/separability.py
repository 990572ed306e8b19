"""Linear separability of the two modalities (Shi et al.; Fahim et al. 2024).

A logistic-regression classifier learns image-vs-text from the L2-normalised rows of a random
share of the pairs (`train_fraction`) and is scored on the rest: linear_separability is the
held-out accuracy (0.5 = inseparable, 1.0 = a hyperplane splits the modalities; Shi et al. report
100 % test accuracy for CLIP on COCO from 0.1 % training data). With `folds=k` the accuracy is the
mean over k folds of the pairs instead. Splits are by PAIR, so an image and its caption are never
on opposite sides. Multi-caption data: first-caption 1:1 pairs (balanced classes). Above
`max_pairs` pairs a random subset of that size is used (held-out accuracy on a random subset is an
unbiased estimate of the full-data accuracy of the same procedure).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ._prep import prepare

DEFAULT_MAX_PAIRS = 5_000


def _fit_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, c: float) -> float:
    from sklearn.linear_model import LogisticRegression  # heavy import only when used

    def stack(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats = np.concatenate([x[idx], y[idx]]).astype(np.float64)
        labels = np.concatenate([np.ones(idx.size), np.zeros(idx.size)])
        return feats, labels

    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(*stack(train))
    return float(clf.score(*stack(test)))


def linear_separability(image: Any, text: Any = None, text_to_image: Any = None, *,
                        train_fraction: float = 0.5, folds: int | None = None, seed: int = 0,
                        max_pairs: int = DEFAULT_MAX_PAIRS, C: float = 1.0) -> float:
    """Held-out accuracy of a logistic-regression image-vs-text classifier (see module doc)."""
    x, y = prepare(image, text, text_to_image).first_caption()
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)[: min(n, max_pairs)]
    if folds is not None:
        if not 2 <= folds <= perm.size:
            raise GapkitError(f"folds must be between 2 and the number of pairs ({perm.size}), got {folds}")
        parts = np.array_split(perm, folds)
        return float(np.mean([_fit_score(x, y, np.concatenate(parts[:k] + parts[k + 1:]), parts[k], C)
                              for k in range(folds)]))
    if not 0.0 < train_fraction < 1.0:
        raise GapkitError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if perm.size < 2:
        raise GapkitError("linear_separability needs at least 2 pairs")
    n_train = min(max(1, int(round(train_fraction * perm.size))), perm.size - 1)
    return _fit_score(x, y, perm[:n_train], perm[n_train:], C)
