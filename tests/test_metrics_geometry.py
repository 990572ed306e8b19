"""Geometry metrics (centroids, paired similarity, cone, RMG) vs naive references."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapkit.metrics import (GeometryAccumulator, alignment_loss, centroid_distance, cone_cosine_mean,
                            cone_cosine_min, gap_vector, geometry_metrics, paired_cosine_mean,
                            paired_distance_mean, rmg)
from gapkit.metrics._prep import prepare
from gapkit.metrics.bootstrap import geometry_bootstrap, resample_counts
from gapkit.metrics.geometry import geometry_compute, geometry_state

from . import _metrics_refs as ref
from .conftest import gapped_pairs


def test_one_to_one_against_naive(pairs):
    x, y = pairs
    ident = np.arange(len(x))
    a, b = ref.paired(x, y, ident)
    cos = np.array([a[i] @ b[i] for i in range(len(a))])
    assert centroid_distance(x, y) == pytest.approx(ref.centroid_distance(x, y), abs=1e-6)
    assert paired_cosine_mean(x, y) == pytest.approx(cos.mean(), abs=1e-6)
    assert paired_distance_mean(x, y) == pytest.approx(np.mean([np.linalg.norm(a[i] - b[i]) for i in ident]), abs=1e-6)
    assert alignment_loss(x, y) == pytest.approx(np.mean([np.sum((a[i] - b[i]) ** 2) for i in ident]), abs=1e-5)
    assert cone_cosine_mean(x) == pytest.approx(ref.cone_mean(x), abs=1e-6)
    assert cone_cosine_min(y) == pytest.approx(ref.cone_min(y), abs=1e-5)
    assert rmg(x, y) == pytest.approx(ref.rmg(x, y, ident), abs=1e-6)


def test_multi_caption_against_naive():
    x, y, m = ref.multi_caption()
    g = geometry_metrics(x, y, m)
    a, b = ref.paired(x, y, m)
    assert g["centroid_distance"] == pytest.approx(ref.centroid_distance(x, y), abs=1e-6)
    assert g["paired_cosine_mean"] == pytest.approx(np.mean(np.sum(a * b, 1)), abs=1e-6)
    assert g["image_cone_cosine_mean"] == pytest.approx(ref.cone_mean(x), abs=1e-6)
    assert g["text_cone_cosine_mean"] == pytest.approx(ref.cone_mean(y), abs=1e-6)
    assert g["rmg"] == pytest.approx(ref.rmg(x, y, m), abs=1e-6)
    assert rmg(x, y, m) == g["rmg"]


def test_unnormalised_torch_and_half_inputs_are_normalised_and_upcast():
    torch = pytest.importorskip("torch")
    x, y = gapped_pairs(50, 8)
    expected = centroid_distance(x, y)
    assert centroid_distance(torch.from_numpy(3 * x), torch.from_numpy(0.5 * y)) == pytest.approx(expected, abs=1e-6)
    half = centroid_distance(x.astype(np.float16), y.astype(np.float16))
    assert half == pytest.approx(expected, abs=2e-3)
    assert prepare(x.astype(np.float16), y).image.dtype == np.float32


def test_gap_vector_direction_and_norm(pairs):
    x, y = pairs
    g = gap_vector(x, y)
    assert np.linalg.norm(g) == pytest.approx(centroid_distance(x, y))
    assert np.linalg.norm(gap_vector(x, y, unit=True)) == pytest.approx(1.0)
    # the fixture shifts images along +e0 and texts along -e0
    assert np.argmax(np.abs(g)) == 0 and g[0] > 0


def test_identical_modalities_have_no_gap(pairs):
    x, _ = pairs
    g = geometry_metrics(x, x)
    assert g["centroid_distance"] == pytest.approx(0.0, abs=1e-7)
    assert g["paired_cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert g["rmg"] == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=6), st.integers(0, 10_000))
def test_accumulator_equals_one_shot_on_random_chunkings(sizes, seed):
    x, y = gapped_pairs(sum(sizes), 8, seed=seed)
    one_shot = geometry_metrics(x, y)
    accs, start = [], 0
    for n in sizes:  # one accumulator per chunk, merged as if built in separate processes
        acc = GeometryAccumulator().update(x[start : start + n], y[start : start + n])
        accs.append(acc)
        start += n
    total = accs[0]
    for a in accs[1:]:
        total.merge(a)
    for key, v in total.compute().items():
        assert v == pytest.approx(one_shot[key], abs=1e-9, nan_ok=True), key


def test_accumulator_with_chunk_local_mapping():
    x, y, m = ref.multi_caption(seed=3)
    half = 20  # images [0, 20) and their captions, then the rest, maps made chunk-local
    first = m < half
    acc = GeometryAccumulator().update(x[:half], y[first], m[first])
    acc.merge(GeometryAccumulator().update(x[half:], y[~first], m[~first] - half))
    for key, v in acc.compute().items():
        assert v == pytest.approx(geometry_metrics(x, y, m)[key], abs=1e-9), key


def test_weighted_state_equals_explicit_resample():
    x, y, m = ref.multi_caption(seed=5)
    p = prepare(x, y, m)
    w = resample_counts(p.n_image, 3, np.random.default_rng(1))
    batched = geometry_compute(geometry_state(p, image_weights=w))
    for b in range(3):
        idx = np.repeat(np.arange(p.n_image), w[b].astype(int))
        txt = np.concatenate([np.flatnonzero(m == i) for i in idx])
        new_map = np.repeat(np.arange(idx.size), [np.sum(m == i) for i in idx])
        explicit = geometry_metrics(x[idx], y[txt], new_map)
        for key, v in explicit.items():  # float32 rows: prepare() normalised them once already
            assert batched[key][b] == pytest.approx(v, abs=1e-6), key


def test_bootstrap_ci_contains_point_estimate():
    x, y = gapped_pairs(300, 16)
    point = geometry_metrics(x, y)
    ci = geometry_bootstrap(prepare(x, y), n_boot=300, seed=0)
    for key, v in point.items():
        assert ci[f"{key}_ci_low"] <= v <= ci[f"{key}_ci_high"], key
        assert ci[f"{key}_ci_high"] - ci[f"{key}_ci_low"] > 0


def test_cosine_bootstrap_replicates_equal_explicit_resamples():
    """The weighted cosine means equal cosine_summary re-run on each explicitly resampled data set
    (image->text, text->text), and the unpaired mean is its draws carried by their images."""
    from gapkit.metrics.bootstrap import cosine_bootstrap
    from gapkit.metrics.cosines import cosine_distributions, cosine_image_sums, cosine_summary

    rng = np.random.default_rng(3)
    x = gapped_pairs(40, 8)[0].astype(np.float64)  # float64: re-normalising the resampled rows is exact
    m = rng.integers(0, 40, 110)
    m[:40] = np.arange(40)  # every image has a caption, several have 2-5
    y = rng.standard_normal((110, 8))
    p = prepare(x, y, m)
    sums = cosine_image_sums(p, seed=5)
    w = resample_counts(p.n_image, 4, np.random.default_rng(0))
    for b in range(4):
        idx = np.repeat(np.arange(p.n_image), w[b].astype(int))
        txt = np.concatenate([np.flatnonzero(m == i) for i in idx])
        new_map = np.repeat(np.arange(idx.size), [np.sum(m == i) for i in idx])
        explicit = cosine_summary(p.image[idx], p.text[txt], new_map)
        for key in ("image2text", "text2text"):
            total, count = sums[key]
            assert (w[b] @ total) / (w[b] @ count) == pytest.approx(explicit[f"{key}_cosine_mean"], abs=1e-12), key
    # unpaired: the same draws as cosine_distributions, each owned by its caption's image
    un = cosine_distributions(p.image, p.text, m, seed=5)["unpaired_image2text"]
    assert sums["unpaired_image2text"][0].sum() == pytest.approx(un.sum(), abs=1e-9)
    assert sums["unpaired_image2text"][1].sum() == un.size
    ci = cosine_bootstrap(p, n_boot=200, seed=0)
    point = cosine_summary(p, seed=0)
    for key, v in point.items():
        assert ci[f"{key}_ci_low"] <= v <= ci[f"{key}_ci_high"], key
        assert ci[f"{key}_ci_high"] - ci[f"{key}_ci_low"] > 0


def test_cosine_bootstrap_coverage():
    """The basic interval of the image->text cosine mean covers the population mean in about 95 %
    of simulated data sets (known population: pair cosines of a fixed Gaussian model)."""
    from gapkit.metrics.bootstrap import cosine_bootstrap

    d, n, sims = 8, 60, 200
    big = gapped_pairs(200_000, d, seed=99)  # the population mean, to +-0.001
    pb = prepare(*big)
    truth = float(np.mean(np.sum(pb.image.astype(np.float64) * pb.text, axis=1)))
    hits = 0
    for s in range(sims):
        x, y = gapped_pairs(n, d, seed=1000 + s)
        ci = cosine_bootstrap(prepare(x, y), n_boot=400, seed=s)
        hits += ci["image2text_cosine_mean_ci_low"] <= truth <= ci["image2text_cosine_mean_ci_high"]
    assert 0.90 <= hits / sims <= 0.99, hits / sims
