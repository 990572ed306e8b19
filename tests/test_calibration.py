"""Calibrated scores: explicit priors, order-free pair names, held-out reliability (issue 10)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.fixers import create_fixer, load_fixer
from gapkit.fixers.calibrate import canonical_pair, reliability
from gapkit.search.synthetic import GappedGenerator


@pytest.fixture(scope="module")
def data():
    """CLIP-shaped pairs with 3 captions per image; the image side is weak (noisy), as with a poorly
    aligned image tower: matching and non-matching image-text cosines overlap."""
    cal = GappedGenerator(image_noise=4.0, seed=0).pairs(800, 3)
    held = GappedGenerator(image_noise=4.0, seed=1).pairs(800, 3)
    return cal, held


@pytest.fixture(scope="module")
def fitted(data):
    """One fit per configuration, shared by the tests (copies where a test changes priors)."""
    cal, _ = data
    return {"data": _fit(cal), "balanced": _fit(cal, prior="balanced"), "isotonic": _fit(cal, method="isotonic")}


def _fit(pe, **kw):
    kw.setdefault("max_pairs", 2000)  # 2,000 positives + 8,000 negatives per pair: enough, and quick
    return create_fixer("calibrated", **kw).fit(pe.image, pe.text, pe.mapping)


def test_pair_names_in_either_order(fitted):
    fx = fitted["data"]
    grid = np.linspace(-0.2, 0.9, 23)
    np.testing.assert_array_equal(fx.probability(grid, "text-image"), fx.probability(grid, "image-text"))
    np.testing.assert_array_equal(fx.probability(grid, "doc_fused-query_text"), fx.probability(grid, "text-fused"))
    assert canonical_pair("fused-image") == "image-fused"
    with pytest.raises(GapkitError, match="unknown pair 'image-audio'"):
        fx.probability(0.3, "image-audio")


def test_transform_refuses_instead_of_returning_its_input(data, fitted):
    with pytest.raises(GapkitError, match="no transform"):
        fitted["data"].transform(data[0].image[:3], "image")


def test_balanced_prior_reproduces_the_finding_and_the_data_prior_fixes_it(data, fitted):
    """Issue 10: with a 1:1 (balanced) prior an UNRELATED image-text pair read as a likely match
    (P ~ 0.5) while an unrelated text pair read ~0, so images filled the top slots. The prior of a
    corpus is the share of relevant documents: 1/N for images. With it, both read as unlikely."""
    cal, _ = data
    x, y, m = cal.image.astype(np.float64), cal.text.astype(np.float64), cal.mapping
    rng = np.random.default_rng(5)
    i, j = rng.integers(0, len(x), 4000), rng.integers(0, len(y), 4000)
    keep = m[j] != i
    neg_it = float(np.median(np.einsum("ij,ij->i", x[i[keep]], y[j[keep]])))
    a, b = rng.integers(0, len(y), 4000), rng.integers(0, len(y), 4000)
    keep = m[a] != m[b]
    neg_tt = float(np.median(np.einsum("ij,ij->i", y[a[keep]], y[b[keep]])))
    balanced = fitted["balanced"]
    assert balanced.probability(neg_it, "image-text") > 0.3       # the finding: a typical non-match reads ~0.5
    assert balanced.probability(neg_tt, "text-text") < 0.05
    fx = fitted["data"]  # prior="data": 1/N image-text, sum c(c-1)/(M(M-1)) text-text
    assert fx.prior_of("image-text") == pytest.approx(1 / 800)
    assert fx.prior_of("text-text") == pytest.approx(800 * 3 * 2 / (2400 * 2399))
    assert fx.probability(neg_it, "image-text") < 0.01
    assert fx.probability(neg_tt, "text-text") < 0.01


def test_prior_shifts_the_log_odds_exactly(data, fitted):
    cal, _ = data
    fx = copy.deepcopy(fitted["data"])
    c = np.linspace(-0.1, 0.8, 19)
    p1 = fx.probability(c, "image-text")
    fx.set_prior("text-image", 0.2)
    p2 = fx.probability(c, "image-text")
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    np.testing.assert_allclose(logit(p2) - logit(p1), logit(0.2) - logit(1 / 800), rtol=1e-6, atol=1e-6)
    with pytest.raises(GapkitError, match=r"in \(0, 1\)"):
        fx.set_prior("image-text", 1.0)
    with pytest.raises(GapkitError, match="prior must be"):
        _fit(cal, prior="flat")


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_monotone_per_pair_and_calibrated_on_held_out_pairs(data, fitted, method):
    """P(match) never decreases with the cosine within a pair, and on HELD-OUT labelled pairs its
    expected calibration error stays below 0.03 (balanced prior: the likelihood ratio itself) and
    below 0.005 at the data prior (the weight of each held-out pair follows the prior)."""
    _, held = data
    fx = fitted["data" if method == "platt" else "isotonic"]
    grid = np.linspace(-1, 1, 801)
    for pair in fx.prob_pairs_:
        p = fx.probability(grid, pair)
        assert np.all(np.diff(p) >= -1e-15), pair
        assert np.all(np.diff(fx.percentile(grid, pair)) >= 0)
    assert set(fx.prob_pairs_) == {"image-text", "text-text", "text-fused"}
    for prior, bound in (("balanced", 0.03), (None, 0.005)):
        rep = fx.evaluate(held.image, held.text, held.mapping, prior=prior, max_pairs=2000)
        assert set(rep) == set(fx.prob_pairs_)
        for pair, r in rep.items():
            assert r["ece"] < bound, (pair, prior, r["ece"])
            assert abs(sum(b["weight"] for b in r["bins"]) - 1) < 1e-9


def test_balanced_probabilities_are_miscalibrated_at_the_real_prior(data, fitted):
    """The same held-out image-text pairs weighted by the data prior: P from the balanced prior
    over-states every match; P from the data prior does not."""
    _, held = data
    from gapkit.fixers.calibrate import labelled_scores

    s = labelled_scores(held.image, held.text, held.mapping, n_pos=2000, n_neg=8000, seed=3)["image-text"]
    c = np.concatenate([s["pos"], s["neg"]])
    y = np.concatenate([np.ones(s["pos"].size), np.zeros(s["neg"].size)])
    pi = 1 / 800
    w = np.where(y == 1, pi / s["pos"].size, (1 - pi) / s["neg"].size)
    bad = reliability(fitted["balanced"].probability(c, "image-text"), y, w)["ece"]
    good = reliability(fitted["data"].probability(c, "image-text"), y, w)["ece"]
    assert bad > 0.1 and good < 0.005, (bad, good)


def test_reliability_against_a_hand_computed_diagram():
    p = np.array([0.05, 0.15, 0.15, 0.95])
    y = np.array([0, 1, 0, 1])
    r = reliability(p, y, n_bins=10)
    # bins: [0,.1): pred .05 obs 0 (w 1/4); [.1,.2): pred .15 obs .5 (w 2/4); [.9,1]: pred .95 obs 1 (w 1/4)
    assert r["ece"] == pytest.approx(0.25 * 0.05 + 0.5 * 0.35 + 0.25 * 0.05)
    assert [b["count"] for b in r["bins"]] == [1, 2, 1]


def test_priors_survive_save_and_load(fitted, tmp_path):
    fx = copy.deepcopy(fitted["data"])
    fx.set_prior("text-text", 0.01)
    fx.save(tmp_path / "cal")
    back = load_fixer(tmp_path / "cal")
    grid = np.linspace(-1, 1, 9)
    for pair in fx.prob_pairs_:
        np.testing.assert_array_equal(back.probability(grid, pair), fx.probability(grid, pair))
    assert back.prior_of("text-text") == 0.01


def test_labelled_scores_unit_copy_is_bitwise_the_blockwise_gather(monkeypatch):
    """Small inputs are normalised once per fit (_UnitRows); the sampled cosines are bit for bit
    those of the block-by-block gather used for large arrays and memory maps."""
    from gapkit.fixers import calibrate

    rng = np.random.default_rng(0)
    image = rng.standard_normal((50, 12)).astype(np.float32)
    text = rng.standard_normal((130, 12)).astype(np.float32)
    mapping = np.concatenate([np.arange(50), rng.integers(0, 50, 80)])
    once = calibrate.labelled_scores(image, text, mapping, n_pos=100, n_neg=400, seed=3)
    monkeypatch.setattr(calibrate, "UNIT_COPY_MAX", 0)
    gathered = calibrate.labelled_scores(image, text, mapping, n_pos=100, n_neg=400, seed=3)
    assert once.keys() == gathered.keys()
    for pair, parts in once.items():
        for key in ("pos", "neg"):
            if parts[key] is None:
                assert gathered[pair][key] is None
            else:
                np.testing.assert_array_equal(parts[key], gathered[pair][key], err_msg=f"{pair} {key}")
