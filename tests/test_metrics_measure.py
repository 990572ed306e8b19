"""measure(): key contract, selection, options, and values on the bundled real embeddings."""
from __future__ import annotations

import numpy as np
import pytest

import gapkit
from gapkit.errors import GapkitError
from gapkit.metrics import measure

from . import _metrics_refs as ref
from .conftest import gapped_pairs

CONTRACT_KEYS = (
    "centroid_distance", "paired_cosine_mean", "paired_distance_mean", "rmg", "image_cone_cosine_mean",
    "text_cone_cosine_mean", "uniformity_image", "uniformity_text", "uniformity_cross", "alignment_loss",
    "linear_separability", "i2t_recall@1", "i2t_recall@5", "t2i_recall@1", "t2i_recall@5",
    "effective_rank_image", "effective_rank_text", "logit_entropy",
)


@pytest.fixture(scope="module")
def clip_metrics():
    return measure(gapkit.load_sample("clip"))


def test_default_report_has_every_contract_key(clip_metrics):
    for key in CONTRACT_KEYS:
        assert np.isfinite(clip_metrics[key]), key
    assert (clip_metrics["n_image"], clip_metrics["n_text"], clip_metrics["dim"]) == (500, 500, 512)
    assert gapkit.measure(gapkit.load_sample("clip"), metrics=["rmg"])["rmg"] == clip_metrics["rmg"]


def test_bundled_clip_sample_values(clip_metrics):
    """Liang et al. report 0.82 for CLIP ViT-B/32 on COCO; the bundled sample is ViT-B/16 on 500
    COCO pairs. The naive computation gives 0.851, which the fast path must reproduce."""
    pe = gapkit.load_sample("clip")
    naive = ref.centroid_distance(pe.image, pe.text)
    assert 0.7 < naive < 0.9
    assert clip_metrics["centroid_distance"] == pytest.approx(naive, abs=1e-6)
    assert clip_metrics["linear_separability"] == 1.0  # Shi et al.: the modalities are separable
    assert clip_metrics["i2t_recall@1"] > 0.4 and clip_metrics["t2i_recall@1"] > 0.4


def test_random_init_has_a_gap_but_no_alignment():
    """Liang et al.: the gap exists at random initialisation (cone effect); retrieval is at chance."""
    m = measure(gapkit.load_sample("clip_random"), metrics=["geometry", "retrieval"])
    assert m["centroid_distance"] > 1.0
    assert m["image_cone_cosine_mean"] > 0.5 and m["text_cone_cosine_mean"] > 0.5
    assert m["i2t_recall@1"] < 0.02 and m["t2i_recall@1"] < 0.02


def test_selection_by_key_and_family():
    x, y = gapped_pairs(60, 8)
    m = measure(x, y, metrics=["rmg", "uniformity_cross"])
    assert set(m) == {"n_image", "n_text", "dim", "rmg", "uniformity_cross"}
    m = measure(x, y, metrics=["retrieval"], ks=(2,))
    assert set(m) - {"n_image", "n_text", "dim"} == {"i2t_recall@2", "t2i_recall@2", "logit_entropy"}
    with pytest.raises(GapkitError, match="unknown metric 'nope'"):
        measure(x, y, metrics=["nope"])


def test_ci_keys_bracket_the_values():
    x, y = gapped_pairs(120, 8)
    m = measure(x, y, ci=True, n_boot=200, metrics=["geometry", "uniformity", "retrieval", "cosines"])
    for key in ("centroid_distance", "rmg", "uniformity_image", "uniformity_cross", "i2t_recall@1",
                "image2text_cosine_mean"):
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key


def test_large_input_switches_to_estimators_unless_exact():
    x, y = gapped_pairs(300, 8)
    est = measure(x, y, metrics=["uniformity", "retrieval"], exact_limit=100, n_queries=100)
    assert "uniformity_image_n_sampled" in est and "i2t_recall@1_n_sampled" in est
    assert "image_cone_cosine_min" not in est  # no unbiased estimator for a minimum
    exact = measure(x, y, metrics=["uniformity", "retrieval"], exact_limit=100, exact=True)
    assert "uniformity_image_n_sampled" not in exact and "image_cone_cosine_min" in exact
    assert est["logit_entropy_ci_low"] < exact["logit_entropy"] < est["logit_entropy_ci_high"]


def test_multi_caption_and_bad_inputs():
    x, y, mp = ref.multi_caption(n_image=30)
    m = measure(x, y, mp)
    assert m["n_text"] == len(y) and "text2text_cosine_mean" in m
    with pytest.raises(GapkitError, match="pair counts differ"):
        measure(x, y)
    with pytest.raises(GapkitError, match="NaN"):
        measure(np.full((3, 4), np.nan), np.ones((3, 4)))
    with pytest.raises(GapkitError, match="all zeros"):
        measure(np.zeros((3, 4)), np.ones((3, 4)))
    with pytest.raises(GapkitError, match="dims differ"):
        measure(np.ones((3, 4)), np.ones((3, 5)))
