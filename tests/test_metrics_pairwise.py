"""Uniformity, cone minimum, recall@K and logit entropy vs naive references; estimators vs exact."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.metrics import cone_cosine_min, logit_entropy, recall_at_k, uniformity
from gapkit.metrics._prep import prepare
from gapkit.metrics._tiles import tile_rows
from gapkit.metrics.pairwise import cross_stat, within_stat

from . import _metrics_refs as ref
from .conftest import gapped_pairs


@pytest.fixture
def small_tiles(monkeypatch):
    """Force many tiles on small inputs so tile edges are exercised."""
    import gapkit.metrics._tiles as tiles

    monkeypatch.setattr(tiles, "TILE_BYTES", 7 * 4 * 37)


def test_uniformity_and_cone_min_against_naive(small_tiles):
    x, y = gapped_pairs(37, 6)
    assert tile_rows(37) < 37
    assert uniformity(x) == pytest.approx(ref.uniformity_within(x), abs=1e-6)
    assert uniformity(y) == pytest.approx(ref.uniformity_within(y), abs=1e-6)
    assert uniformity(x, y) == pytest.approx(ref.uniformity_cross(x, y, np.arange(37)), abs=1e-6)
    assert cone_cosine_min(x) == pytest.approx(ref.cone_min(x), abs=1e-6)


def test_cross_uniformity_multi_caption_excludes_own_captions(small_tiles):
    x, y, m = ref.multi_caption(n_image=15, seed=2)
    assert uniformity(x, y, m) == pytest.approx(ref.uniformity_cross(x, y, m), abs=1e-6)


def test_sampled_uniformity_close_to_exact():
    x, y = gapped_pairs(1500, 16, seed=4)
    p = prepare(x, y)
    for exact, est in ((within_stat(p.image, True)[0], within_stat(p.image, False, 400_000, seed=1)[0]),
                       (cross_stat(p, True), cross_stat(p, False, 400_000, seed=1))):
        assert est.n_sampled == 400_000
        assert est.ci_low < exact.value < est.ci_high
        assert abs(est.value - exact.value) < 0.02
    assert uniformity(x, exact=False, seed=3) == pytest.approx(uniformity(x), abs=0.02)


def test_exact_uniformity_ci_from_u_statistic_covers_a_fresh_sample():
    """The U-statistic CI on n rows should cover the value on a much larger sample of the same law."""
    big = gapped_pairs(3000, 8, seed=11)[0]
    small = big[:300]
    stat = within_stat(prepare(small, small).image, True, ci=True)[0]
    assert stat.ci_low < uniformity(big, exact=False, n_samples=400_000) < stat.ci_high
    assert stat.ci_high - stat.ci_low < 0.5


def test_default_switches_to_estimate_above_the_limit():
    x, y = gapped_pairs(120, 8)
    p = prepare(x, y)
    stat, lo = within_stat(p.image, None, 50_000, exact_limit=100)
    assert stat.n_sampled == 50_000 and lo is None
    stat, lo = within_stat(p.image, True, exact_limit=100)
    assert stat.n_sampled == 0 and lo is not None


@pytest.mark.parametrize("multi", [False, True])
def test_recall_against_naive_argsort(small_tiles, multi):
    if multi:
        x, y, m = ref.multi_caption(n_image=30, seed=7)
    else:
        x, y = gapped_pairs(40, 6, noise=1.5)
        m = np.arange(40)
    got = recall_at_k(x, y, m if multi else None, ks=(1, 3, 10))
    for k in (1, 3, 10):
        i2t, t2i = ref.recall(x, y, m, k)
        assert got[f"i2t_recall@{k}"] == pytest.approx(i2t)
        assert got[f"t2i_recall@{k}"] == pytest.approx(t2i)


def test_sampled_recall_is_close_and_has_ci():
    x, y = gapped_pairs(600, 8, noise=1.0, seed=2)
    exact = recall_at_k(x, y, ks=(5,))
    est = recall_at_k(x, y, ks=(5,), exact=False, n_queries=300, seed=1)
    assert est["i2t_recall@5_n_sampled"] == 300
    for d in ("i2t", "t2i"):
        assert est[f"{d}_recall@5_ci_low"] <= exact[f"{d}_recall@5"] <= est[f"{d}_recall@5_ci_high"]


def test_logit_entropy_against_naive(small_tiles):
    x, y, m = ref.multi_caption(n_image=25, seed=1)
    for scale in (1.0, 100.0):
        assert logit_entropy(x, y, m, logit_scale=scale) == pytest.approx(ref.logit_entropy(x, y, scale), abs=1e-6)
    # uniform softmax at scale 0: entropy log(M)
    assert logit_entropy(x, y, m, logit_scale=0.0) == pytest.approx(np.log(len(y)))
