"""Class-prompt mode reproduces Schrodi et al.'s L2M / L2I / RMG for zero-shot style data; the
reference is computed here with plain loops over images and classes."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.metrics import class_prompt_metrics, class_prompt_pairs


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def zero_shot_data(seed=0, n=60, c=5, t=3, d=12):
    rng = np.random.default_rng(seed)
    prompts = rng.standard_normal((c, t, d)) + np.r_[3.0, np.zeros(d - 1)]
    labels = rng.integers(0, c, n)
    labels[:3] = -1  # unlabelled images are left out
    images = rng.standard_normal((n, d)) + np.r_[0.0, 3.0, np.zeros(d - 2)] + 0.5 * prompts.mean(1)[labels]
    return images, labels, prompts


def naive(images, labels, prompts):
    p = unit(unit(prompts).mean(axis=1))  # CLIP's prompt ensemble
    keep = labels >= 0
    x, y = unit(images[keep]), labels[keep]
    n, c = len(x), len(p)
    l2m = np.linalg.norm(p.mean(0) - x.mean(0))
    l2i = sum(np.linalg.norm(x[i] - p[y[i]]) for i in range(n)) / n
    paired = sum(x[i] @ p[y[i]] for i in range(n)) / n
    a = sum(x[i] @ x[j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    b = sum(p[k] @ p[m] for k in range(c) for m in range(c) if k != m) / (c * (c - 1))
    m = (1 - paired) / 2
    rmg = m / (m + ((1 - a) / 2 + (1 - b) / 2) / 2)
    return {"l2m": l2m, "l2i": l2i, "rmg": rmg, "image_cone_cosine_mean": a, "text_cone_cosine_mean": b,
            "paired_cosine_mean": paired}


def test_class_prompt_metrics_match_two_effects_definitions():
    images, labels, prompts = zero_shot_data()
    got = class_prompt_metrics(images, labels, prompts)
    for key, value in naive(images, labels, prompts).items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["n_images"] == 57 and got["n_classes"] == 5


def test_class_prompt_pairs_layout_and_errors():
    images, labels, prompts = zero_shot_data(seed=1)
    pe = class_prompt_pairs(images, labels, prompts[:, 0])
    assert pe.image.shape == (5, 12) and pe.text.shape == (57, 12)
    assert np.array_equal(pe.text_to_image, labels[labels >= 0])
    with pytest.raises(GapkitError, match="labels must be in"):
        class_prompt_pairs(images, np.full(60, 7), prompts)
    with pytest.raises(GapkitError, match="labels: expected"):
        class_prompt_pairs(images, labels[:10], prompts)
    with pytest.raises(GapkitError, match="no labelled image"):
        class_prompt_pairs(images, np.full(60, -1), prompts)


def test_centroid_cosine_has_a_plain_language_text():
    """The report explains centroid_cosine, graded in the direction of the gap (low = gapped)."""
    from gapkit.metrics import centroid_cosine
    from gapkit.report.explain import info, interpret
    from gapkit.samples import load_sample

    assert "average image embedding" in info("centroid_cosine").meaning
    pe = load_sample("clip")
    v = centroid_cosine(pe.image, pe.text)
    assert "clear gap" in interpret("centroid_cosine", v)            # CLIP: 0.31
    assert "little directional gap" in interpret("centroid_cosine", 0.95)
    assert "strong gap" in interpret("centroid_cosine", 0.04)         # random init


def test_evaluate_zero_shot_reports_the_class_prompt_gap(tmp_path):
    import json

    from gapkit.cli import main

    images, labels, prompts = zero_shot_data(seed=4)
    labels = np.where(labels < 0, 0, labels)  # zero-shot wants a class for every image
    np.save(tmp_path / "img.npy", images)
    np.save(tmp_path / "y.npy", labels)
    np.save(tmp_path / "cls.npy", prompts)
    out = tmp_path / "zs.json"
    assert main(["evaluate", "--task", "zero-shot", "--image", str(tmp_path / "img.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--classifier", str(tmp_path / "cls.npy"), "--out", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    ref = naive(images, labels, prompts)
    for key in ("l2m", "l2i", "rmg"):
        assert m[f"class_prompt_{key}"] == pytest.approx(ref[key], rel=1e-6), key
