"""Calibrated cross-modal scores: rank image-text and text-text similarities together.

The raw cosine means different things for different modality pairs: with CLIP a matching
image-caption pair scores ~0.3 while two unrelated captions often score 0.5 (Jina blog,
Fig. 1). Ranking a mixed corpus by raw cosine therefore buries every image under the texts.
This fixer maps a raw cosine c between a query of one role and a document of another to

    P(match | c, pair) = sigmoid( log LR_pair(c) + logit(prior_pair) )
    LR_pair(c)         = p(c | match, pair) / p(c | no match, pair)
    percentile(c, pair) = F_neg(c), the share of NON-matching pairs of that kind scoring below c

Roles are "image", "text" and "fused" (an image+text document, normalise(w x + (1 - w) y)); a
pair names two roles in either order ("text-image" = "image-text"; "query_text" / "doc_image"
are accepted as aliases). The likelihood ratio is fitted on labelled cosines with positives and
negatives weighted equally (Platt: log LR = a c + b; or isotonic regression), so it does not
depend on how many negatives were drawn. The **prior** is the share of matching pairs among all
pairs of that kind, i.e. for a query the share of documents of that role that are relevant. It
is explicit: `prior="data"` (default) takes the match density of the calibration set (1/N for
image-text with N images; sum_i c_i (c_i - 1) / (M (M - 1)) for text-text with c_i captions of
image i among M), `prior="balanced"` is 0.5 (the P(match) of a 1:1 mix of positives and
negatives), a number sets every pair, and {pair: number} or `set_prior` sets pairs one by one.
A search index resets the prior to its own corpus (relevant documents per query / documents of
that role). Why it matters: with the balanced prior a typical unrelated image-text cosine could
read P = 0.5 while an unrelated text-text cosine read 0.02, so images filled every top slot
(issue 10); with data priors both read as unlikely.

All maps are monotone non-decreasing in c within a pair, so they never reorder results of one
pair, only interleave pairs. Calibration data: matching pairs are (image, its caption); with
several captions per image also (caption, another caption of the same image) and (caption, the
fused document of its image built from another of its captions). Non-matching pairs are random
pairs of different items. Image-image and image-fused pairs have no known matches (percentile
only) unless labelled scores are given with `fit_pair`. `reliability` gives the reliability
diagram and the expected calibration error (ECE) on held-out labelled pairs.
The embeddings themselves are unchanged: `transform` raises (use `probability` / `score`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import GapkitError
from ._stream import check_rows
from .base import Fixer

#: role order used to spell a pair canonically ("image-text", never "text-image")
ROLE_ORDER = ("image", "text", "fused")
_ROLE_ALIASES = {"doc_image": "image", "query_image": "image", "doc_text": "text", "query_text": "text",
                 "query": "text", "doc_fused": "fused"}
PAIRS = ("image-text", "text-text", "image-image", "text-fused", "image-fused")
METHODS = ("platt", "isotonic")
_EPS = 1e-9


def canonical_role(role: str) -> str:
    """'doc_image' -> 'image' etc.; GapkitError for unknown roles."""
    r = _ROLE_ALIASES.get(str(role), str(role))
    if r not in ROLE_ORDER:
        raise GapkitError(f"unknown role '{role}'; known: {', '.join(ROLE_ORDER)}")
    return r


def canonical_pair(pair: str) -> str:
    """'text-image' -> 'image-text', 'query_text-doc_fused' -> 'text-fused' (order-free)."""
    parts = str(pair).split("-")
    if len(parts) != 2:
        raise GapkitError(f"calibrated: a pair is two roles joined by '-', e.g. image-text; got '{pair}'")
    try:
        a, b = sorted((canonical_role(p) for p in parts), key=ROLE_ORDER.index)
    except GapkitError:
        raise GapkitError(f"calibrated: unknown pair '{pair}'; known: {', '.join(PAIRS)} (either order)") from None
    name = f"{a}-{b}"
    if name not in PAIRS:
        raise GapkitError(f"calibrated: unknown pair '{pair}'; known: {', '.join(PAIRS)} (either order)")
    return name


def _unit_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    order = np.argsort(idx, kind="stable")  # sorted reads are friendlier to memory maps
    rows = np.empty((idx.size, a.shape[1]))
    rows[order] = np.asarray(a[idx[order]], dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


UNIT_COPY_MAX = 64 * 2**20  # bytes: below this the float64 unit rows are made once per fit


class _UnitRows:
    """Unit float64 rows of `a` by index: take(idx) == _unit_rows(a, idx) bit for bit.

    A calibrated fit samples ~5 x 4 x (texts) pairs from the same rows, so for arrays in memory
    up to UNIT_COPY_MAX the normalised float64 copy is made once (the per-row arithmetic is the
    same, so are the bits; a 4k-caption fit: ~0.75 -> ~0.3 s); larger arrays and memory maps are
    gathered and normalised block by block as before (bounded memory)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        small = not isinstance(a, np.memmap) and a.shape[0] * a.shape[1] * 8 <= UNIT_COPY_MAX
        self.unit = _unit_rows(a, np.arange(a.shape[0])) if small else None

    def take(self, idx: np.ndarray) -> np.ndarray:
        return self.unit[idx] if self.unit is not None else _unit_rows(self.a, idx)


PAIR_CHUNK = 16_384  # rows per block of the paired dot products (bounds the float64 copies)


def _paired_dots(left: Callable[[slice], np.ndarray], right: Callable[[slice], np.ndarray], n: int) -> np.ndarray:
    """<left(s)_i, right(s)_i> for i in 0..n-1, computed block by block: the (n, D) float64 rows
    of both sides never exist at once (160k sampled pairs x 512 would be 0.66 GB per side, and
    a build's peak memory)."""
    out = np.empty(n)
    for start in range(0, n, PAIR_CHUNK):
        s = slice(start, min(start + PAIR_CHUNK, n))
        out[s] = np.einsum("ij,ij->i", left(s), right(s))
    return out


def _cos(a: _UnitRows, ia: np.ndarray, b: _UnitRows, ib: np.ndarray) -> np.ndarray:
    return _paired_dots(lambda s: a.take(ia[s]), lambda s: b.take(ib[s]), ia.size)


def _fused_rows(image: _UnitRows, text: _UnitRows, mapping: np.ndarray, tj: np.ndarray, w: float) -> np.ndarray:
    """Unit fused documents normalise(w x + (1 - w) y) of captions tj with their own images."""
    f = w * image.take(mapping[tj]) + (1 - w) * text.take(tj)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def _distinct_pairs(rng: np.random.Generator, labels_a: np.ndarray, labels_b: np.ndarray,
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


def labelled_scores(image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None, *, n_pos: int, n_neg: int,
                    seed: int = 0, fuse_weight: float = 0.5) -> dict[str, dict[str, Any]]:
    """Raw cosines of sampled matching / non-matching pairs of every kind, with match densities.

    Returns {pair: {"pos": (p,) or None, "neg": (n,), "density": float or None}} where density is
    (number of matching pairs) / (number of pairs) of that kind in this data (the "data" prior).
    image (N, D), text (M, D), mapping (M,) text -> image (None: 1:1).
    """
    rng = np.random.default_rng(seed)
    n_img, n_txt = image.shape[0], text.shape[0]
    m = np.arange(n_txt) if mapping is None else np.asarray(mapping)
    image, text = _UnitRows(image), _UnitRows(text)
    img_ids = np.arange(n_img)
    n_pos = min(int(n_pos), n_txt)
    out: dict[str, dict[str, Any]] = {}
    # image-text: a caption with its own image vs with another image
    j = rng.choice(n_txt, n_pos, replace=False)
    ii, jj = _distinct_pairs(rng, img_ids, m, n_neg)
    out["image-text"] = {"pos": _cos(image, m[j], text, j), "neg": _cos(image, ii, text, jj), "density": 1.0 / n_img}
    # text-text: two captions of one image vs captions of different images
    ta, tb = _distinct_pairs(rng, m, m, n_neg)
    same = _caption_pairs(rng, m, n_pos)
    counts = np.bincount(m, minlength=n_img).astype(np.float64)
    tt_density = float((counts * (counts - 1)).sum() / (n_txt * (n_txt - 1))) if n_txt > 1 else None
    out["text-text"] = {"pos": None if same is None else _cos(text, same[0], text, same[1]),
                        "neg": _cos(text, ta, text, tb), "density": tt_density if same is not None else None}
    # text-fused: a caption vs the fused document of its image (built from ANOTHER of its captions,
    # so the query text itself is never inside the document) vs fused documents of other images
    qa, db = _distinct_pairs(rng, m, m, n_neg)
    neg_tf = _paired_dots(lambda s: text.take(qa[s]), lambda s: _fused_rows(image, text, m, db[s], fuse_weight),
                          qa.size)
    pos_tf = None
    if same is not None:
        pos_tf = _paired_dots(lambda s: text.take(same[0][s]),
                              lambda s: _fused_rows(image, text, m, same[1][s], fuse_weight), same[0].size)
    out["text-fused"] = {"pos": pos_tf, "neg": neg_tf, "density": 1.0 / n_img if same is not None else None}
    # image-image and image-fused: no known matches (percentile only)
    ia, ib = _distinct_pairs(rng, img_ids, img_ids, n_neg)
    out["image-image"] = {"pos": None, "neg": _cos(image, ia, image, ib), "density": None}
    ia, fb = _distinct_pairs(rng, img_ids, m, n_neg)
    neg_if = _paired_dots(lambda s: image.take(ia[s]), lambda s: _fused_rows(image, text, m, fb[s], fuse_weight),
                          ia.size)
    out["image-fused"] = {"pos": None, "neg": neg_if, "density": None}
    return out


def reliability(prob: Any, labels: Any, weights: Any = None, n_bins: int = 10) -> dict[str, Any]:
    """Reliability diagram and expected calibration error of predicted probabilities.

    Bins of equal width on [0, 1]; per bin the (weighted) mean prediction, the observed match
    frequency and the bin's share of the weight. ECE = sum_b share_b |mean_pred_b - freq_b|.
    """
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(labels, np.float64).ravel()
    w = np.ones_like(p) if weights is None else np.asarray(weights, np.float64).ravel()
    if p.size == 0 or p.shape != y.shape or p.shape != w.shape:
        raise GapkitError("reliability: need equally long, non-empty predictions, labels and weights")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, int(n_bins) - 1)
    total = w.sum()
    bins, ece = [], 0.0
    for k in range(int(n_bins)):
        sel = b == k
        wk = w[sel].sum()
        if wk <= 0:
            continue
        pred, freq = float((w[sel] * p[sel]).sum() / wk), float((w[sel] * y[sel]).sum() / wk)
        share = float(wk / total)
        ece += share * abs(pred - freq)
        bins.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "mean_predicted": pred,
                     "observed": freq, "weight": share, "count": int(sel.sum())})
    return {"ece": float(ece), "bins": bins, "n_bins": int(n_bins)}


class CalibratedScores(Fixer):
    """Per-pair calibration. Fitted: prob_pairs_ (pairs with P(match)), tables_ (arrays per pair:
    "PAIR:coef" (a, b) of log LR = a c + b for Platt, or "PAIR:x"/"PAIR:y" balanced isotonic
    P, and "PAIR:neg_quantiles"), density_ ({pair: match density of the calibration data})."""

    name = "calibrated"
    acts_on = "scores"

    def __init__(self, method: str = "platt", max_pairs: int = 50_000, negatives_per_positive: int = 4,
                 n_quantiles: int = 1001, seed: int = 0, prior: Any = "data", fuse_weight: float = 0.5) -> None:
        self.method = method
        self.max_pairs = max_pairs
        self.negatives_per_positive = negatives_per_positive
        self.n_quantiles = n_quantiles
        self.seed = seed
        self.prior = prior
        self.fuse_weight = fuse_weight

    # ------------------------------------------------------------------ fitting
    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        if self.method not in METHODS:
            raise GapkitError(f"calibrated: method must be one of {', '.join(METHODS)}, got '{self.method}'")
        self._check_prior_param()
        if mapping is None and image.shape[0] != text.shape[0]:
            from ..validation import check_mapping

            check_mapping(None, image.shape[0], text.shape[0])
        n_pos = min(int(self.max_pairs), text.shape[0])
        scores = labelled_scores(image, text, mapping, n_pos=n_pos, n_neg=n_pos * int(self.negatives_per_positive),
                                 seed=self.seed, fuse_weight=self.fuse_weight)
        self.tables_: dict[str, np.ndarray] = {}
        self.prob_pairs_: list[str] = []
        self.density_: dict[str, float] = {}
        self.priors_: dict[str, float] = {}
        # documents of each role in the calibration set (one fused document per image)
        self.role_counts_ = {"image": int(image.shape[0]), "text": int(text.shape[0]), "fused": int(image.shape[0])}
        for pair, s in scores.items():
            self._fit_tables(pair, s["pos"], s["neg"])
            if s["density"] is not None and s["pos"] is not None:
                self.density_[pair] = float(s["density"])

    def fit_pair(self, pair: str, positives: Any, negatives: Any, density: float | None = None) -> "CalibratedScores":
        """(Re)fit one modality pair from labelled raw cosines of matching / non-matching pairs;
        `density` = share of matching pairs of that kind (the "data" prior of this pair)."""
        if not self.is_fitted:
            raise GapkitError("calibrated: call fit(image, text) before fit_pair")
        pair = canonical_pair(pair)
        pos = np.asarray(positives, np.float64).ravel()
        neg = np.asarray(negatives, np.float64).ravel()
        if pos.size == 0 or neg.size == 0:
            raise GapkitError("calibrated: fit_pair needs at least one positive and one negative score")
        self._fit_tables(pair, pos, neg)
        if density is not None:
            self.density_[pair] = _check_probability(density, f"density of {pair}")
        return self

    def set_prior(self, pair: str, prior: float) -> "CalibratedScores":
        """Set the prior P(match) of one pair (overrides the `prior` parameter for that pair)."""
        self._require_fitted()
        self.priors_[canonical_pair(pair)] = _check_probability(prior, f"prior of {pair}")
        return self

    def _fit_tables(self, pair: str, pos: np.ndarray | None, neg: np.ndarray) -> None:
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
        # equal total weight for positives and negatives: the fit estimates the likelihood ratio
        w = np.concatenate([np.full(pos.size, 0.5 / pos.size), np.full(neg.size, 0.5 / neg.size)]) * x.size
        if self.method == "platt":
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=1e4, solver="newton-cholesky").fit(x[:, None], y, sample_weight=w)
            self.tables_[f"{pair}:coef"] = np.array([lr.coef_[0, 0], lr.intercept_[0]])
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y, sample_weight=w)
            self.tables_[f"{pair}:x"] = np.asarray(iso.X_thresholds_, np.float64)
            self.tables_[f"{pair}:y"] = np.asarray(iso.y_thresholds_, np.float64)
        if pair not in self.prob_pairs_:
            self.prob_pairs_.append(pair)

    # ------------------------------------------------------------------ priors
    def _check_prior_param(self) -> None:
        p = self.prior
        if isinstance(p, str):
            if p not in ("data", "balanced"):
                raise GapkitError(f"calibrated: prior must be 'data', 'balanced', a number in (0, 1) or "
                                  f"{{pair: number}}, got '{p}'")
        elif isinstance(p, dict):
            for k, v in p.items():
                canonical_pair(k)
                _check_probability(v, f"prior of {k}")
        else:
            _check_probability(p, "prior")

    def prior_of(self, pair: str) -> float:
        """The prior P(match) used for `pair`: set_prior > prior dict/number > "data"/"balanced"."""
        self._require_fitted()
        pair = canonical_pair(pair)
        if pair in getattr(self, "priors_", {}):
            return float(self.priors_[pair])
        p = self.prior
        if isinstance(p, dict):
            given = {canonical_pair(k): v for k, v in p.items()}
            if pair in given:
                return float(given[pair])
            p = "data"
        if p == "balanced":
            return 0.5
        if p == "data":
            if pair not in getattr(self, "density_", {}):
                raise GapkitError(f"calibrated: no match density is known for '{pair}'; set its prior "
                                  "(set_prior or prior=...)")
            return float(self.density_[pair])
        return float(p)

    # ------------------------------------------------------------------ scoring
    def log_likelihood_ratio(self, cos: Any, pair: str = "image-text") -> np.ndarray:
        """log p(c | match) / p(c | no match) for raw cosines of a pair; same shape as `cos`."""
        self._require_fitted()
        pair = canonical_pair(pair)
        c = np.asarray(cos, np.float64)
        if pair not in self.prob_pairs_:
            raise GapkitError(f"calibrated: no matching pairs were available to calibrate '{pair}' "
                              f"(calibrated: {', '.join(self.prob_pairs_) or 'none'}); fit on data with several "
                              "captions per image, use percentile, or fit_pair")
        if f"{pair}:coef" in self.tables_:
            a, b = self.tables_[f"{pair}:coef"]
            return a * c + b
        p = np.clip(np.interp(c, self.tables_[f"{pair}:x"], self.tables_[f"{pair}:y"]), _EPS, 1 - _EPS)
        return np.log(p) - np.log1p(-p)

    def probability(self, cos: Any, pair: str = "image-text", prior: float | None = None) -> np.ndarray:
        """P(match | cos, pair) = sigmoid(log LR + logit(prior)); same shape as `cos`.

        prior: None = `prior_of(pair)`; a number overrides it for this call.
        """
        llr = self.log_likelihood_ratio(cos, pair)
        pi = self.prior_of(pair) if prior is None else _check_probability(prior, "prior")
        z = llr + (np.log(pi) - np.log1p(-pi))
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function without overflow warnings

    def percentile(self, cos: Any, pair: str = "image-text") -> np.ndarray:
        """Share of non-matching pairs of this kind with a lower cosine, in [0, 1]."""
        self._require_fitted()
        key = f"{canonical_pair(pair)}:neg_quantiles"
        if key not in self.tables_:
            raise GapkitError(f"calibrated: no negatives were fitted for '{pair}'")
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

    # ------------------------------------------------------------------ held-out check
    def evaluate(self, image: Any, text: Any, text_to_image: Any = None, prior: Any = None,
                 n_bins: int = 10, max_pairs: int | None = None) -> dict[str, Any]:
        """Reliability diagram + ECE per calibrated pair on HELD-OUT labelled pairs.

        Held-out positives and negatives are reweighted to the prior (positives carry prior,
        negatives 1 - prior of the total weight), so the ECE is that of P(match) as used.
        prior: None = each pair's own prior; "balanced" or a number = that prior for all pairs.
        """
        self._require_fitted()
        img = check_rows(image, "image embeddings", dim=self.dim_)
        txt = check_rows(text, "text embeddings", dim=self.dim_)
        from ..validation import check_mapping

        m = None if text_to_image is None else check_mapping(text_to_image, img.shape[0], txt.shape[0])
        n_pos = min(int(max_pairs or self.max_pairs), txt.shape[0])
        scores = labelled_scores(img, txt, m, n_pos=n_pos, n_neg=n_pos * int(self.negatives_per_positive),
                                 seed=self.seed + 1, fuse_weight=self.fuse_weight)
        out: dict[str, Any] = {}
        for pair in self.prob_pairs_:
            s = scores.get(pair)
            if s is None or s["pos"] is None:
                continue
            pi = (0.5 if prior == "balanced" else self.prior_of(pair) if prior is None
                  else _check_probability(prior, "prior"))
            pos, neg = s["pos"], s["neg"]
            w = np.concatenate([np.full(pos.size, pi / pos.size), np.full(neg.size, (1 - pi) / neg.size)])
            p = self.probability(np.concatenate([pos, neg]), pair, prior=pi)
            rel = reliability(p, np.concatenate([np.ones(pos.size), np.zeros(neg.size)]), w, n_bins)
            out[pair] = {"prior": pi, "n_pos": int(pos.size), "n_neg": int(neg.size), **rel}
        return out

    def transform(self, x: Any, modality: str = "image", **kw: Any) -> np.ndarray:
        """Refuses: a score fixer has no vectors to return (it used to return its input silently)."""
        self._require_fitted()
        return self._transform(np.empty((0, self.dim_)), modality)

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        raise GapkitError("calibrated: this fixer calibrates scores and leaves embeddings unchanged, so it has "
                          "no transform; use probability(cos, pair), score(a, b, pair) or a calibrated search index")


def _check_probability(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GapkitError(f"calibrated: {what} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise GapkitError(f"calibrated: {what} must be in (0, 1) (exclusive), got {v}")
    return v
