"""Streaming == one-shot: accumulators on random chunkings, shards on disk, merges, reservoir.

Rows are normalised in float32, so values agree with the one-shot ones to float32 rounding of
the inputs (~1e-6 relative at worst) and every sum is accumulated in float64.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapkit.errors import GapkitError
from gapkit.metrics import StreamAccumulator, measure, measure_stream
from gapkit.metrics.streaming import Reservoir

from .conftest import gapped_pairs

STREAMED_EXACTLY = ("centroid_distance", "paired_cosine_mean", "paired_distance_mean", "alignment_loss",
                    "image_cone_cosine_mean", "text_cone_cosine_mean", "rmg", "gap_length_cv",
                    "gap_direction_consistency", "gap_variance_share_image", "gap_variance_share_text",
                    "effective_rank_image", "effective_rank_text", "gap_top1_dims_share", "gap_top10_dims_share")


def _split(x, y, cuts):
    bounds = [0, *sorted(set(cuts)), len(x)]
    return [(x[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 79), max_size=5), st.integers(0, 1000))
def test_stream_equals_measure_when_everything_fits(cuts, seed):
    x, y = gapped_pairs(80, 12, seed=seed)
    one_shot = measure(x, y, metrics=["geometry", "uniformity", "retrieval", "gapstats", "spectrum"])
    streamed = measure_stream(_split(x, y, cuts), reservoir=100, chunk_rows=17,
                              metrics=["geometry", "uniformity", "retrieval", "gapstats", "spectrum"])
    for key, v in one_shot.items():
        assert streamed[key] == pytest.approx(v, rel=1e-5, abs=1e-9, nan_ok=True), key


def test_merged_accumulators_equal_one_pass():
    x, y = gapped_pairs(300, 10, seed=1)
    parts = [StreamAccumulator(reservoir=50, seed=s).update(a, b) for s, (a, b) in enumerate(_split(x, y, [40, 170]))]
    merged = parts[0].merge(parts[1]).merge(parts[2]).compute()
    single = StreamAccumulator(reservoir=50).update(x, y).compute()
    for key in STREAMED_EXACTLY:
        assert merged[key] == pytest.approx(single[key], rel=1e-5, abs=1e-9), key
    assert merged["stream_reservoir"] == 50


def test_reservoir_estimates_cover_the_exact_values():
    x, y = gapped_pairs(2000, 16, seed=3)
    exact = measure(x, y, metrics=["geometry", "uniformity", "separability"])
    est = measure_stream(_split(x, y, [700, 1500]), reservoir=500, chunk_rows=256)
    for key in STREAMED_EXACTLY[:7]:
        assert est[key] == pytest.approx(exact[key], abs=1e-9)
    for key in ("uniformity_image", "uniformity_text", "uniformity_cross"):
        assert est[f"{key}_n_sampled"] == 500
        assert est[f"{key}_ci_low"] < exact[key] < est[f"{key}_ci_high"], key
    assert "i2t_recall@1" not in est and "image_cone_cosine_min" not in est  # need every pair at once
    assert est["linear_separability"] == pytest.approx(exact["linear_separability"], abs=0.05)


def test_reservoir_is_uniform():
    counts = np.zeros(50)
    rows = np.arange(50, dtype=np.float32)[:, None]
    for seed in range(300):
        r = Reservoir(10, 1)
        for a, b in ((0, 7), (7, 30), (30, 50)):
            r.update(rows[a:b], rows[a:b], np.arange(a, b), seed)
        assert len(set(r.image[:, 0].tolist())) == 10 and np.array_equal(r.image, r.text)
        counts[r.image[:, 0].astype(int)] += 1
    assert counts.min() > 30 and counts.max() < 95  # expectation 60 each


def test_shards_on_disk_float16_and_clip_retrieval(tmp_path):
    x, y = gapped_pairs(900, 8, seed=5)
    one_shot = measure(x.astype(np.float16), y.astype(np.float16), metrics=["geometry"])
    stacks = []
    for k, (a, b) in enumerate(_split(x, y, [300, 650])):
        np.save(tmp_path / f"stack_{k}.npy", np.stack([a, b]).astype(np.float16))
        stacks.append(tmp_path / f"stack_{k}.npy")
        for sub, arr in (("img_emb", a), ("text_emb", b)):
            (tmp_path / "cr" / sub).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "cr" / sub / f"{sub}_{k}.npy", arr.astype(np.float16))
    for source in (stacks, tmp_path / "cr"):
        got = measure_stream(source, reservoir=100, chunk_rows=128)
        for key in STREAMED_EXACTLY[:7]:
            assert got[key] == pytest.approx(one_shot[key], abs=1e-6), key
        assert got["n_image"] == 900


def test_stream_errors():
    with pytest.raises(GapkitError, match="no pairs"):
        measure_stream([])
    x, y = gapped_pairs(10, 4)
    with pytest.raises(GapkitError, match="rows"):
        measure_stream([(x, y[:5])])
    with pytest.raises(GapkitError, match="dim"):
        measure_stream([(x, y), (x[:, :3], y[:, :3])])
