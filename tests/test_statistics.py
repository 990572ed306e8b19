"""Honest statistics: interval coverage by simulation, Wilson intervals, paired differences,
the modality-label permutation null, and verdicts that never grade noise as a gap."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit import load_sample
from gapkit.metrics import geometry_metrics, measure
from gapkit.metrics._prep import prepare
from gapkit.metrics.bootstrap import (basic_interval, geometry_bootstrap, mean_interval, paired_difference,
                                      wilson_interval)
from gapkit.metrics.null import permutation_null, swapped_geometry
from gapkit.report.explain import interpret


def _axis_points(n: int, d: int, p: float, sign: float, rng: np.random.Generator) -> np.ndarray:
    """Unit rows: sign * e_0 with probability p, else +-e_j (j >= 1, uniform): mean = sign p e_0."""
    x = np.zeros((n, d))
    on = rng.random(n) < p
    x[on, 0] = sign
    j = rng.integers(1, d, n)
    x[~on, j[~on]] = rng.choice((-1.0, 1.0), (~on).sum())
    return x


def test_basic_interval_of_centroid_distance_covers_the_true_value():
    """Known distribution: images have mean 0.3 e_0, texts -0.2 e_0, so the true centroid distance is
    0.5 exactly. On 30 pairs in 12-d the plug-in value is biased upwards (noise adds to the norm).
    Nominal 95 %; accepted: 0.88 to 0.99 over 150 data sets (binomial sd ~0.018)."""
    d, n, true = 12, 30, 0.5
    hits = contains = 0
    runs = 150
    for t in range(runs):
        rng = np.random.default_rng(t)
        x, y = _axis_points(n, d, 0.3, 1.0, rng), _axis_points(n, d, 0.2, -1.0, rng)
        est = float(np.linalg.norm(x.mean(0) - y.mean(0)))
        ci = geometry_bootstrap(prepare(x, y), n_boot=400, seed=t)
        lo, hi = ci["centroid_distance_ci_low"], ci["centroid_distance_ci_high"]
        hits += lo <= true <= hi
        contains += lo <= est <= hi
    assert contains == runs  # an interval always contains the estimate printed beside it
    assert 0.88 <= hits / runs <= 0.99


def test_bias_is_reported_and_points_the_right_way():
    rng = np.random.default_rng(0)
    x, y = _axis_points(24, 32, 0.0, 1.0, rng), _axis_points(24, 32, 0.0, -1.0, rng)  # true distance 0
    ci = geometry_bootstrap(prepare(x, y), n_boot=500, seed=0)
    est = geometry_metrics(x, y)["centroid_distance"]
    assert ci["centroid_distance_bias"] > 0  # a norm of noise: replicates sit above the estimate
    assert ci["centroid_distance_ci_low"] < est <= ci["centroid_distance_ci_high"]


def test_basic_interval_is_the_reflected_percentile_interval():
    boot = np.array([0.4, 0.45, 0.5, 0.55, 0.6] * 40)
    iv = basic_interval(0.3, boot)
    q_lo, q_hi = np.quantile(boot, [0.025, 0.975])
    assert iv.low == pytest.approx(0.6 - q_hi)
    assert iv.high == pytest.approx(0.3)  # 0.6 - q_lo = 0.2 < 0.3: extended to the estimate
    assert iv.bias == pytest.approx(boot.mean() - 0.3)


def test_bca_mean_interval_coverage_on_a_skewed_distribution():
    """Exponential(1) means of 25 values; nominal 95 %; accepted 0.90 to 0.985 over 300 runs."""
    hits = 0
    runs = 300
    for t in range(runs):
        v = np.random.default_rng(1000 + t).exponential(1.0, 25)
        iv = mean_interval(v, n_boot=500, seed=t)
        hits += iv.low <= 1.0 <= iv.high
        assert iv.low <= v.mean() <= iv.high
    assert 0.90 <= hits / runs <= 0.985


def test_wilson_interval():
    iv = wilson_interval(0, 20)
    assert iv.estimate == 0 and iv.low == 0 and iv.high > 0.1  # never [0, 0] for 0 hits
    z = 1.959963984540054
    p, n = 7 / 40, 40  # the textbook formula, written out here
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    iv = wilson_interval(7, 40)
    assert (iv.low, iv.high) == pytest.approx((centre - half, centre + half))
    assert mean_interval(np.array([0.0] * 19 + [1.0])).method == "wilson"  # recall values use Wilson


def test_paired_difference_is_the_mean_per_query_difference():
    rng = np.random.default_rng(3)
    a = rng.random(200)
    b = a + 0.1 + rng.normal(0, 0.05, 200)
    res = paired_difference(a, b, n_boot=500)
    assert res["diff"].estimate == pytest.approx(float(np.mean(b - a)))
    assert res["diff"].low > 0.08 and res["diff"].high < 0.12
    # an unpaired comparison would be far wider: the paired CI uses the per-query differences
    assert res["diff"].high - res["diff"].low < 0.5 * (res["other"].high - res["other"].low)
    same = paired_difference(a, a.copy(), n_boot=100)["diff"]
    assert same.estimate == 0 and same.low == 0 and same.high == 0


# ----------------------------------------------------------------------------- permutation null
def test_swapped_geometry_matches_swapping_rows():
    pe = load_sample("clip")
    x, y = (np.asarray(a[:40], np.float64) for a in (pe.image, pe.text))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    signs = np.random.default_rng(0).choice((-1.0, 1.0), (3, 40))
    fast = swapped_geometry(x, y, signs)
    for b in range(3):
        swap = signs[b] < 0
        xs, ys = np.where(swap[:, None], y, x), np.where(swap[:, None], x, y)
        ref = geometry_metrics(xs, ys)
        for key in ("centroid_distance", "rmg", "image_cone_cosine_mean", "paired_cosine_mean"):
            assert fast[key][b] == pytest.approx(ref[key], abs=1e-9)


def test_null_p_value_is_large_without_a_gap():
    """Images and captions drawn from one distribution: at most a few of 30 data sets reject at 5 %."""
    rejections = 0
    for t in range(30):
        rng = np.random.default_rng(t)
        z = rng.normal(size=(40, 16))
        x, y = z + rng.normal(size=z.shape), z + rng.normal(size=z.shape)
        res = permutation_null(x, y, n_perm=300, seed=t)
        rejections += res["centroid_distance_p_value"] <= 0.05
        assert 0 < res["centroid_distance_p_value"] <= 1
    assert rejections <= 5  # expected 1.5; P(> 5) < 0.005 under a valid test


def test_null_p_value_is_small_on_real_clip_and_the_verdict_uses_it():
    pe = load_sample("clip")
    res = measure(pe, metrics=["geometry"], null=True, n_perm=300)
    assert res["centroid_distance_p_value"] < 0.01
    assert res["centroid_distance_null_p95"] < res["centroid_distance"]
    assert "large gap" in interpret("centroid_distance", res["centroid_distance"], res["centroid_distance_p_value"])


def test_noise_is_never_called_a_gap():
    """24 pairs of exchangeable noise give a sizeable centroid distance; the verdict must say noise."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(24, 32))
    x, y = z + 2 * rng.normal(size=z.shape), z + 2 * rng.normal(size=z.shape)
    res = measure(x, y, metrics=["geometry"], null=True, n_perm=500)
    assert res["centroid_distance"] > 0.1
    text = interpret("centroid_distance", res["centroid_distance"], res["centroid_distance_p_value"],
                     res["centroid_distance_null_p95"])
    if res["centroid_distance_p_value"] > 0.05:
        assert "not distinguishable from noise" in text and "gap" not in text.split("(")[0]
