"""gapkit.search.synthetic: the two generator kinds and the ANN-difficulty statistics that chose
between them (issue 10: "synthetic embeddings with a realistic gap")."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.samples import load_sample
from gapkit.search.synthetic import GappedGenerator, geometry_stats


def _sphere(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n points uniform on the unit sphere S^(d-1), embedded in 512 dimensions by a random rotation."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(rng.standard_normal((512, d)))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ q.T


def test_twonn_recovers_the_dimension_of_a_known_manifold():
    # S^2 (intrinsic dimension 2) and S^7 (7), wherever they sit in 512 dimensions
    assert geometry_stats(_sphere(2000, 3))["twonn"] == pytest.approx(2.0, abs=0.25)
    assert geometry_stats(_sphere(2000, 8))["twonn"] == pytest.approx(7.0, rel=0.15)


def test_neighbour_statistics_match_a_naive_loop():
    x = _sphere(60, 5, seed=1)
    st = geometry_stats(x, k=4)
    cos = [sorted((float(a @ b) for j, b in enumerate(x) if j != i), reverse=True) for i, a in enumerate(x)]
    assert st["nn1_cos"] == pytest.approx(np.median([c[0] for c in cos]))
    assert st["nnk_cos"] == pytest.approx(np.median([c[3] for c in cos]))
    pairs = [float(x[i] @ x[j]) for i in range(60) for j in range(i + 1, 60)]
    assert st["median_cos"] == pytest.approx(np.median(pairs))
    assert st["contrast"] == pytest.approx((1 - np.median(pairs)) / np.median([1 - c[3] for c in cos]))
    r = np.array([[np.sqrt(2 - 2 * c[0]), np.sqrt(2 - 2 * c[1])] for c in cos])
    assert st["twonn"] == pytest.approx(60 / np.log(r[:, 1] / r[:, 0]).sum())
    with pytest.raises(GapkitError, match="more than k"):
        geometry_stats(x[:4], k=4)


def test_bootstrap_is_closer_to_real_clip_than_the_gaussian():
    """The documented reason for the bootstrap kind: on 500 rows it sits between the Gaussian and
    the real sample on every ANN-difficulty statistic, nearer the real one (docs/search.md)."""
    real = load_sample("clip")
    for side in ("image", "text"):
        r = geometry_stats(np.asarray(getattr(real, side)))
        g = geometry_stats(getattr(GappedGenerator(seed=1, kind="gaussian").pairs(500, 1), side))
        b = geometry_stats(getattr(GappedGenerator(seed=1, kind="bootstrap").pairs(500, 1), side))
        for key in ("twonn", "nn1_cos", "nnk_cos", "median_cos", "contrast"):
            assert abs(b[key] - r[key]) < abs(g[key] - r[key]), (side, key, r[key], g[key], b[key])


def test_bootstrap_keeps_the_pairs_mean_and_covariance():
    gen = GappedGenerator(seed=2, kind="bootstrap", bandwidth=0.6)
    z = gen._latent(np.random.default_rng(0), 10_000).astype(np.float64)
    c = gen.centres.astype(np.float64)  # the real pairs minus their mean
    np.testing.assert_allclose(z.mean(0), gen.mu, atol=0.01)
    # total variance (trace of the covariance) and the variance along the top principal direction
    assert ((z - gen.mu) ** 2).sum(1).mean() == pytest.approx((c ** 2).sum(1).mean(), rel=0.02)
    w, u = np.linalg.eigh(c @ c.T)  # top right singular vector from the small (500, 500) Gram matrix
    top = c.T @ u[:, -1] / np.sqrt(w[-1])
    assert np.var((z - gen.mu) @ top) == pytest.approx(np.var(c @ top), rel=0.05)


def test_generator_rows_are_reproducible_and_kinds_checked():
    a = GappedGenerator(seed=4, kind="bootstrap").chunk(0, 100)
    b = GappedGenerator(seed=4, kind="bootstrap").chunk(0, 100)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], GappedGenerator(seed=4, kind="gaussian").chunk(0, 100)[0])
    assert "bootstrap, bandwidth 0.6" in GappedGenerator(kind="bootstrap").describe()
    with pytest.raises(GapkitError, match="kind must be one of"):
        GappedGenerator(kind="uniform")
    with pytest.raises(GapkitError, match="bandwidth must be > 0"):
        GappedGenerator(kind="bootstrap", bandwidth=0)
