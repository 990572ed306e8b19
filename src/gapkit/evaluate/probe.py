"""Linear probe: logistic regression on frozen (L2-normalised) embeddings.

Reports acc1 and mean_per_class_recall on a held-out split (given, or a stratified split of
`test_fraction` drawn with `seed`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ..validation import as_matrix
from ._rank import unit_rows


def linear_probe(x: Any, labels: Any, test_x: Any = None, test_labels: Any = None, *, test_fraction: float = 0.3,
                 C: float = 1.0, seed: int = 0, max_iter: int = 1000) -> dict[str, float]:
    """Fit LogisticRegression(C) on unit rows of x (N, D) with labels (N,); score the test split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    a = unit_rows(as_matrix(x, "embeddings"))
    y = np.asarray(labels)
    if y.shape != (a.shape[0],):
        raise GapkitError(f"labels: expected shape ({a.shape[0]},), got {tuple(y.shape)}")
    if test_x is None:
        if test_labels is not None:
            raise GapkitError("test_labels given without test_x")
        try:
            a, b, y, yb = train_test_split(a, y, test_size=test_fraction, random_state=seed, stratify=y)
        except ValueError as exc:
            raise GapkitError(f"linear probe: cannot split the data ({exc})") from None
    else:
        b, yb = unit_rows(as_matrix(test_x, "test embeddings")), np.asarray(test_labels)
        if yb.shape != (b.shape[0],):
            raise GapkitError(f"test_labels: expected shape ({b.shape[0]},), got {tuple(yb.shape)}")
    if np.unique(y).size < 2:
        raise GapkitError("linear probe: the training split needs at least two classes")
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(a, y)
    pred = clf.predict(b)
    recalls = [(pred[yb == c] == c).mean() for c in np.unique(yb)]
    return {"acc1": float((pred == yb).mean()), "mean_per_class_recall": float(np.mean(recalls)),
            "n_train": int(a.shape[0]), "n_test": int(b.shape[0])}
