"""Calibrated cross-modal scores: rank image-text and text-text similarities together.

The raw cosine means different things for different modality pairs: with CLIP a matching
image-caption pair scores ~0.3 while two unrelated captions often score 0.5 (Jina blog,
Fig. 1). Ranking a mixed corpus by raw cosine therefore buries every image under the texts.
This fixer maps a raw cosine c of a given modality pair to a number that means the same for
every pair:

    probability(c, pair) = P(match | c, pair)   (Platt: sigmoid(a c + b); or isotonic regression)
    percentile(c, pair)  = F_neg(c), the share of NON-matching pairs of that kind scoring below c

Both are monotone non-decreasing in c within a pair (Platt and the percentile strictly where the
data allow), so they never reorder results of one pair, only interleave pairs. Calibration data:
matching pairs are (image, its caption) and, with several captions per image, (caption, another
caption of the same image); non-matching pairs are random pairs of different items. Positives and
negatives are weighted equally, so P(match) is for a 1:1 prior. With 1:1 data there are no
text-text matches: only the percentile is available for text-text (and for image-image); use
`fit_pair` to supply labelled scores.
The embeddings themselves are unchanged (transform is the identity on unit rows).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GapkitError
from ._stream import check_rows
from .base import Fixer

PAIRS = ("image-text", "text-text", "image-image")
METHODS = ("platt", "isotonic")


def _unit_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    order = np.argsort(idx, kind="stable")  # sorted reads are friendlier to memory maps
    rows = np.empty((idx.size, a.shape[1]))
    rows[order] = np.asarray(a[idx[order]], dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _cos(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", _unit_rows(a, ia), _unit_rows(b, ib))


def _distinct_pairs(rng: np.random.Generator, n: int, labels_a: np.ndarray, labels_b: np.ndarray,
                    size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random index pairs (i, j) with labels_a[i] != labels_b[j] (rejection sampling)."""
    ia = rng.integers(0, labels_a.size, size)
    ib = rng.integers(0, labels_b.size, size)
    for _ in range(100):
        same = labels_a[ia] == labels_b[ib]
        if not same.any():
            return ia, ib
        ib[same] = rng.integers(0, labels_b.size, int(same.sum()))
    raise GapkitError("calibrated: could not draw non-matching pairs (all items belong to one group?)")


def _caption_pairs(rng: np.random.Generator, mapping: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Random pairs of distinct captions of the same image, or None when no image has two."""
    order = np.argsort(mapping, kind="stable")
    groups, starts, counts = np.unique(mapping[order], return_index=True, return_counts=True)
    multi = counts >= 2
    if not multi.any():
        return None
    weights = counts[multi] * (counts[multi] - 1)  # pick a pair uniformly among all same-image pairs
    g = rng.choice(np.flatnonzero(multi), size=size, p=weights / weights.sum())
    a = rng.integers(0, counts[g])
    b = (a + 1 + rng.integers(0, counts[g] - 1)) % counts[g]  # any other caption of the group
    return order[starts[g] + a], order[starts[g] + b]


class CalibratedScores(Fixer):
    """Per-pair calibration tables. Fitted: prob_pairs_ (pairs with P(match)), tables_ (arrays
    per pair: "PAIR:coef" for Platt or "PAIR:x"/"PAIR:y" for isotonic, "PAIR:neg_quantiles")."""

    name = "calibrated"
    acts_on = "scores"

    def __init__(self, method: str = "platt", max_pairs: int = 50_000, negatives_per_positive: int = 4,
                 n_quantiles: int = 1001, seed: int = 0) -> None:
        self.method = method
        self.max_pairs = max_pairs
        self.negatives_per_positive = negatives_per_positive
        self.n_quantiles = n_quantiles
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        if self.method not in METHODS:
            raise GapkitError(f"calibrated: method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if mapping is None and image.shape[0] != text.shape[0]:
            from ..validation import check_mapping

            check_mapping(None, image.shape[0], text.shape[0])
        rng = np.random.default_rng(self.seed)
        m = np.arange(text.shape[0]) if mapping is None else mapping
        n_pos = min(int(self.max_pairs), text.shape[0])
        n_neg = n_pos * int(self.negatives_per_positive)
        self.tables_: dict[str, np.ndarray] = {}
        self.prob_pairs_: list[str] = []
        img_ids = np.arange(image.shape[0])
        # image-text: a caption with its own image vs with another image
        j = rng.choice(text.shape[0], n_pos, replace=False)
        pos = _cos(image, m[j], text, j)
        ii, jj = _distinct_pairs(rng, image.shape[0], img_ids, m, n_neg)
        self._fit_tables("image-text", pos, _cos(image, ii, text, jj))
        # text-text: two captions of one image vs captions of different images
        ta, tb = _distinct_pairs(rng, text.shape[0], m, m, n_neg)
        neg_tt = _cos(text, ta, text, tb)
        same = _caption_pairs(rng, m, n_pos)
        self._fit_tables("text-text", None if same is None else _cos(text, same[0], text, same[1]), neg_tt)
        # image-image: distinct images (no known matches; percentile only)
        ia, ib = _distinct_pairs(rng, image.shape[0], img_ids, img_ids, n_neg)
        self._fit_tables("image-image", None, _cos(image, ia, image, ib))

    def fit_pair(self, pair: str, positives: Any, negatives: Any) -> "CalibratedScores":
        """(Re)fit one modality pair from labelled raw cosines of matching / non-matching pairs."""
        if not self.is_fitted:
            raise GapkitError("calibrated: call fit(image, text) before fit_pair")
        pos = np.asarray(positives, np.float64).ravel()
        neg = np.asarray(negatives, np.float64).ravel()
        if pos.size == 0 or neg.size == 0:
            raise GapkitError("calibrated: fit_pair needs at least one positive and one negative score")
        self._fit_tables(pair, pos, neg)
        return self

    def _fit_tables(self, pair: str, pos: np.ndarray | None, neg: np.ndarray) -> None:
        if pair not in PAIRS:
            raise GapkitError(f"calibrated: unknown pair '{pair}'; known: {', '.join(PAIRS)}")
        levels = np.linspace(0.0, 1.0, int(self.n_quantiles))
        self.tables_[f"{pair}:neg_quantiles"] = np.quantile(neg, levels)
        for k in [k for k in self.tables_ if k.startswith(f"{pair}:") and not k.endswith("neg_quantiles")]:
            del self.tables_[k]
        if pos is None:
            if pair in self.prob_pairs_:
                self.prob_pairs_.remove(pair)
            return
        x = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
        w = np.concatenate([np.full(pos.size, 0.5 / pos.size), np.full(neg.size, 0.5 / neg.size)]) * x.size
        if self.method == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e4).fit(x[:, None], y, sample_weight=w)
            self.tables_[f"{pair}:coef"] = np.array([lr.coef_[0, 0], lr.intercept_[0]])
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y, sample_weight=w)
            self.tables_[f"{pair}:x"] = np.asarray(iso.X_thresholds_, np.float64)
            self.tables_[f"{pair}:y"] = np.asarray(iso.y_thresholds_, np.float64)
        if pair not in self.prob_pairs_:
            self.prob_pairs_.append(pair)

    # ------------------------------------------------------------------ scoring
    def probability(self, cos: Any, pair: str = "image-text") -> np.ndarray:
        """P(match) for raw cosines of a modality pair (1:1 prior); same shape as `cos`."""
        self._require_fitted()
        c = np.asarray(cos, np.float64)
        if pair not in self.prob_pairs_:
            raise GapkitError(f"calibrated: no matching pairs were available to calibrate '{pair}' "
                              f"(calibrated: {', '.join(self.prob_pairs_) or 'none'}); use percentile "
                              "or fit_pair")
        if f"{pair}:coef" in self.tables_:
            a, b = self.tables_[f"{pair}:coef"]
            return 1.0 / (1.0 + np.exp(-(a * c + b)))
        return np.interp(c, self.tables_[f"{pair}:x"], self.tables_[f"{pair}:y"])

    def percentile(self, cos: Any, pair: str = "image-text") -> np.ndarray:
        """Share of non-matching pairs of this kind with a lower cosine, in [0, 1]."""
        self._require_fitted()
        key = f"{pair}:neg_quantiles"
        if key not in self.tables_:
            raise GapkitError(f"calibrated: unknown pair '{pair}'; known: {', '.join(PAIRS)}")
        q = self.tables_[key]
        return np.interp(np.asarray(cos, np.float64), q, np.linspace(0.0, 1.0, q.size))

    def calibrate(self, cos: Any, pair: str, kind: str = "probability") -> np.ndarray:
        """probability or percentile of raw cosines (kind chooses)."""
        if kind == "probability":
            return self.probability(cos, pair)
        if kind == "percentile":
            return self.percentile(cos, pair)
        raise GapkitError(f"calibrated: kind must be 'probability' or 'percentile', got '{kind}'")

    def score(self, a: Any, b: Any, pair: str, kind: str = "probability") -> np.ndarray:
        """Calibrated (n_a, n_b) score matrix of the cosines between rows of a and rows of b."""
        self._require_fitted()
        x = check_rows(a, "a", dim=self.dim_).astype(np.float64)
        y = check_rows(b, "b", dim=self.dim_).astype(np.float64)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        return self.calibrate(x @ y.T, pair, kind)

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        return u  # the embeddings are unchanged; calibration acts on their scores
