"""Separability, spectrum, gap statistics, distribution gap and cosine distributions vs naive code."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.metrics import (cosine_distributions, effective_rank, gap_dimension_shares, gap_statistics,
                            linear_separability, mmd_rbf, singular_values, sliced_wasserstein, spectrum_metrics)

from . import _metrics_refs as ref
from .conftest import gapped_pairs


def test_separability_separated_vs_identical_clouds():
    x, y = gapped_pairs(200, 16, gap=4.0)
    assert linear_separability(x, y) == 1.0
    assert linear_separability(x, y, folds=4) == 1.0
    r = np.random.default_rng(0)
    a, b = r.standard_normal((400, 16)), r.standard_normal((400, 16))
    assert 0.3 < linear_separability(a, b, seed=1) < 0.7
    # Shi et al.'s setting: a tiny training share still separates a real gap
    assert linear_separability(x, y, train_fraction=0.05) > 0.95


def test_separability_rejects_bad_settings():
    x, y = gapped_pairs(20, 4)
    with pytest.raises(GapkitError, match="train_fraction"):
        linear_separability(x, y, train_fraction=1.5)
    with pytest.raises(GapkitError, match="folds"):
        linear_separability(x, y, folds=1)


def test_singular_values_and_effective_rank_against_svd():
    x, _ = gapped_pairs(60, 10)
    u = ref.unit(x)
    sv = np.linalg.svd(u, compute_uv=False)
    np.testing.assert_allclose(singular_values(x), sv, atol=1e-6)
    p = sv / sv.sum()
    assert effective_rank(x) == pytest.approx(np.exp(-np.sum(p * np.log(p))), abs=1e-6)
    # orthonormal rows: every singular value 1 -> effective rank = their number
    assert effective_rank(np.eye(7)) == pytest.approx(7.0)


def test_gap_dimension_shares_and_removal():
    x, y = gapped_pairs(300, 12, gap=1.5)
    dims, shares = gap_dimension_shares(x, y)
    delta = ref.unit(x).mean(0) - ref.unit(y).mean(0)
    assert dims[0] == 0  # the fixture's gap lies along e0
    np.testing.assert_allclose(shares, np.sort(delta**2)[::-1] / np.sum(delta**2), atol=1e-9)
    s = spectrum_metrics(x, y)
    keep = np.arange(12) != 0
    naive = ref.centroid_distance(x[:, keep], y[:, keep])
    assert s["centroid_distance_without_top1_dims"] == pytest.approx(naive, abs=1e-6)
    assert s["centroid_distance_without_top1_dims"] < 0.5 * ref.centroid_distance(x, y)


def test_gap_statistics_against_naive():
    x, y, m = ref.multi_caption(seed=9)
    a, b = ref.paired(x, y, m)
    d = a - b
    lengths = np.linalg.norm(d, axis=1)
    dbar = d.mean(0)
    g = dbar / np.linalg.norm(dbar)
    got = gap_statistics(x, y, m)
    assert got["gap_length_cv"] == pytest.approx(lengths.std() / lengths.mean(), abs=1e-6)
    assert got["gap_direction_consistency"] == pytest.approx(np.mean(d @ g / lengths), abs=1e-6)
    for name, u in (("image", ref.unit(x)), ("text", ref.unit(y))):
        c = u - u.mean(0)
        assert got[f"gap_variance_share_{name}"] == pytest.approx(np.mean((c @ g) ** 2) / np.mean(np.sum(c**2, 1)), abs=1e-6)


def test_constant_gap_is_detected():
    """C3's picture: y = x - c for a constant c orthogonal to the cloud."""
    cloud = 0.5 * ref.unit(np.random.default_rng(0).standard_normal((100, 7)))  # rows of norm 0.5
    x = np.hstack([np.ones((100, 1)), cloud])   # the cloud at +e0 ...
    y = np.hstack([-np.ones((100, 1)), cloud])  # ... and at -e0; every row has the same norm
    got = gap_statistics(x, y)
    assert got["gap_length_cv"] < 1e-6
    assert got["gap_direction_consistency"] == pytest.approx(1.0)
    assert got["gap_variance_share_image"] < 1e-12


def test_mmd_against_naive_and_zero_for_shifted_copy():
    x, y = gapped_pairs(40, 5, seed=3)
    xc, yc = ref.unit(x) - ref.unit(x).mean(0), ref.unit(y) - ref.unit(y).mean(0)
    sigma = 0.7
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))  # noqa: E731
    n = len(xc)
    kxx = np.mean([k(xc[i], xc[j]) for i in range(n) for j in range(n) if i != j])
    kyy = np.mean([k(yc[i], yc[j]) for i in range(n) for j in range(n) if i != j])
    kxy = np.mean([k(xc[i], yc[j]) for i in range(n) for j in range(n)])
    assert mmd_rbf(x, y, sigma=sigma) == pytest.approx(kxx + kyy - 2 * kxy, abs=1e-6)
    # centring removes a pure translation: a shifted copy has (biased-part) zero shape difference
    assert sliced_wasserstein(x, x + 0.0) == pytest.approx(0.0, abs=1e-6)


def test_sliced_wasserstein_against_naive_one_direction():
    r = np.random.default_rng(1)
    x, y = r.standard_normal((50, 3)), 2 * r.standard_normal((50, 3))
    got = sliced_wasserstein(x, y, n_projections=1, seed=5)
    # recompute with the same direction: the function's rng draws subsets (none here) then theta
    theta = np.random.default_rng(5).standard_normal((3, 1))
    theta /= np.linalg.norm(theta)
    xc, yc = ref.unit(x) - ref.unit(x).mean(0), ref.unit(y) - ref.unit(y).mean(0)
    px, py = sorted((xc @ theta).ravel()), sorted((yc @ theta).ravel())
    assert got == pytest.approx(np.sqrt(np.mean([(a - b) ** 2 for a, b in zip(px, py)])), abs=1e-6)


def test_cosine_distributions_against_loops():
    x, y, m = ref.multi_caption(n_image=12, seed=4)
    d = cosine_distributions(x, y, m)
    u, v = ref.unit(x), ref.unit(y)
    np.testing.assert_allclose(np.sort(d["image2text"]), np.sort([u[m[j]] @ v[j] for j in range(len(v))]), atol=1e-6)
    t2t = [v[a] @ v[b] for i in range(len(u)) for a, b in itertools.combinations(np.flatnonzero(m == i), 2)]
    np.testing.assert_allclose(np.sort(d["text2text"]), np.sort(t2t), atol=1e-6)
    assert d["unpaired_image2text"].size > 0
