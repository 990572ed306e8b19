"""The field's conventions offered beside gapkit's defaults, each against a naive formula written here:
RMG with the diagonal (two-effects train.py), centroid_cosine, rank = #singular values > 1
(contrastive-gap), C3's noise level and C3's "centre, add noise, renormalise" as a fixer chain."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.fixers import create_fixer, load_fixer
from gapkit.metrics import centroid_cosine, measure, rank, rmg

from . import conftest


def gapped_pairs(*a, **k):
    """float64 pairs, so the fast paths can be held to 1e-12 of the naive formulas."""
    return tuple(v.astype(np.float64) for v in conftest.gapped_pairs(*a, **k))


def _unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _cos2dist(c):
    return (1.0 - c) / 2.0


def _naive_rmg(x, y, diagonal):
    """Schrodi et al.'s RMG from full Gram matrices, self-similarities kept or dropped."""
    x, y = _unit(x), _unit(y)
    gx, gy = x @ x.T, y @ y.T
    if diagonal:
        ix, iy = gx.mean(), gy.mean()
    else:
        off = ~np.eye(len(x), dtype=bool)
        ix, iy = gx[off].mean(), gy[off].mean()
    m = _cos2dist(np.mean(np.sum(x * y, axis=1)))
    return m / ((_cos2dist(ix) + _cos2dist(iy)) / 2 + m)


@pytest.mark.parametrize("n", [5, 40])
def test_rmg_both_conventions_match_naive_gram_formulas(n):
    x, y = gapped_pairs(n, 6, seed=n)
    assert rmg(x, y) == pytest.approx(_naive_rmg(x, y, diagonal=False), rel=1e-12)
    assert rmg(x, y, include_diagonal=True) == pytest.approx(_naive_rmg(x, y, diagonal=True), rel=1e-12)
    # the diagonal adds cosines of 1: intra-modal distances shrink, so the relative gap grows
    assert rmg(x, y, include_diagonal=True) > rmg(x, y)


def test_centroid_cosine_and_rank_match_naive_formulas():
    x, y = gapped_pairs(60, 8, seed=1)
    mx, my = _unit(x).mean(0), _unit(y).mean(0)
    assert centroid_cosine(x, y) == pytest.approx(mx @ my / (np.linalg.norm(mx) * np.linalg.norm(my)), rel=1e-12)
    sv = np.linalg.svd(_unit(x), compute_uv=False)
    assert rank(x) == int((sv > 1).sum())
    # measure() reports them under stable keys, and they stream/bootstrap like the rest
    m = measure(x, y, metrics=["rmg_with_diagonal", "centroid_cosine", "rank_image", "rank_text"])
    assert m["rank_text"] == int((np.linalg.svd(_unit(y), compute_uv=False) > 1).sum())
    assert m["rmg_with_diagonal"] == pytest.approx(_naive_rmg(x, y, diagonal=True), rel=1e-12)


def test_rank_counts_directions_of_an_isotropic_cloud():
    """N isotropic unit rows in D dims have all D singular values near sqrt(N / D) > 1, and a cloud
    confined to k dims has rank k."""
    rng = np.random.default_rng(0)
    assert rank(rng.standard_normal((400, 16))) == 16
    flat = np.zeros((400, 16))
    flat[:, :3] = rng.standard_normal((400, 3))
    assert rank(flat) == 3


def test_noise_default_is_c3_capdec_variance():
    fx = create_fixer("noise")
    assert fx.std == pytest.approx(math.sqrt(0.016))


def test_chain_is_c3_centre_noise_renormalise():
    """chain(center without renormalising, noise) == normalise((x - mu) + eps), with eps drawn from
    the noise fixer's documented stream N(0, std^2) keyed by (seed, modality, block of 4096 rows)."""
    x, y = gapped_pairs(50, 8, seed=2)
    std, seed = 0.1, 5
    fx = create_fixer("chain", steps=[{"name": "center", "renormalize": False},
                                      {"name": "noise", "std": std, "seed": seed}]).fit(x, y)
    eps = np.random.default_rng([seed, 1, 0]).standard_normal((4096, 8))[:50]
    naive = _unit(_unit(y) - _unit(y).mean(0) + std * eps)
    np.testing.assert_allclose(fx.transform(y, modality="text"), naive, atol=1e-12)
    # centring with renormalisation first is a different (larger) relative noise: not the same map
    other = create_fixer("chain", steps=[{"name": "center"}, {"name": "noise", "std": std, "seed": seed}]).fit(x, y)
    assert np.abs(other.transform(y, modality="text") - naive).max() > 1e-3
    # chunking does not change the noise, and a saved chain reloads to the same map
    np.testing.assert_allclose(fx.transform(y, modality="text", chunk_size=7), naive, atol=1e-12)


def test_chain_save_load_and_bad_steps(tmp_path):
    x, y = gapped_pairs(30, 6, seed=3)
    fx = create_fixer("chain", steps=[{"name": "center", "renormalize": False}, {"name": "noise"}]).fit(x, y)
    back = load_fixer(fx.save(tmp_path / "c3"))
    np.testing.assert_array_equal(back.transform(x, "image"), fx.transform(x, "image"))
    with pytest.raises(GapkitError, match="non-empty list"):
        create_fixer("chain", steps=[]).fit(x, y)
    with pytest.raises(GapkitError, match="step 0"):
        create_fixer("chain", steps=["center"]).fit(x, y)
    with pytest.raises(GapkitError, match="unknown fixer"):
        create_fixer("chain", steps=[{"name": "nope"}]).fit(x, y)
