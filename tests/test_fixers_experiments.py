"""Post-hoc experiments: the loss against torch's CLIP loss, the landscape's measured effect on the
bundled real CLIP embeddings, the sweep's records and figures."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gapkit.experiments import get_experiment
from gapkit.experiments.posthoc import load_pairs, shift_landscape, symmetric_clip_loss


def test_symmetric_loss_matches_torch_clip_loss():
    torch = pytest.importorskip("torch")
    from gapkit.losses import create_loss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 16))
    y = x + rng.standard_normal((120, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    loss = create_loss("clip")
    for tau in (0.01, 0.5):
        want = np.mean([float(loss(torch.tensor(x[s:s + 50]), torch.tensor(y[s:s + 50]), 1 / tau)["contrastive_loss"])
                        for s in (0, 50)])  # the trailing 20 rows form no full batch
        assert symmetric_clip_loss(x, y, tau, batch=50) == pytest.approx(want, rel=1e-9)


def test_symmetric_not_one_directional():
    """Liang's released code computes image->text twice; ours differs when the two directions do."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 8))
    y = rng.standard_normal((50, 8)) + 3 * np.eye(8)[0]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    s = x @ y.T / 0.1
    i2t = np.mean(np.log(np.exp(s).sum(1)) - np.diag(s))
    t2i = np.mean(np.log(np.exp(s).sum(0)) - np.diag(s))
    assert abs(i2t - t2i) > 1e-3
    assert symmetric_clip_loss(x, y, 0.1) == pytest.approx((i2t + t2i) / 2)


def test_landscape_on_real_clip_reproduces_liang():
    """At CLIP's temperature 1/100 the model's own gap is the loss minimum (closing it costs loss);
    at tau = 1 the minimum moves close to zero gap (Liang Fig. 3b-d)."""
    x, y, _ = load_pairs("clip")
    lambdas = np.arange(-1.0, 2.0, 0.25)
    res = shift_landscape(x, y, lambdas, taus=(0.01, 1.0))
    s = res["summary"]
    assert s["0.01"]["lambda_at_min"] == 0.0
    assert s["0.01"]["loss_at_zero_gap"] > s["0.01"]["loss_at_raw_gap"] + 0.3
    assert abs(s["1"]["gap_at_min"]) < 0.3 < res["raw_gap"]
    gaps = np.array(res["symmetric"]["signed_gap"])
    assert gaps[0] > res["raw_gap"] and gaps[-1] < 0  # lam < 0 widens, large lam crosses over


def test_experiments_write_records_and_figures(tmp_path):
    rec = get_experiment("liang-shift-landscape").run(tmp_path / "land", quick=True, lam_min=-1, lam_max=1.5)
    assert (tmp_path / "land" / "shift_landscape.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "land" / "record.json").read_text())["experiment"] == "liang-shift-landscape"
    assert len(rec["results"]["symmetric"]["loss"]) == 6
    rec = get_experiment("gap-sweep").run(tmp_path / "sweep", quick=True, lam_min=-0.5, lam_max=1.5)
    res = rec["results"]
    for name in ("gap_sweep.png", "fixer_comparison.png"):
        assert (tmp_path / "sweep" / name).stat().st_size > 10_000
    raw = res["fixers"]["raw"]
    # the measured effect the sweep exists to show: the raw gap sinks images below texts, and
    # centring / calibration lift them (fitted on the other half of the pairs)
    assert raw["mixed_image_share@10"] < 0.05
    assert res["fixers"]["center"]["mixed_ndcg@10"] > raw["mixed_ndcg@10"] + 0.2
    assert res["fixers"]["calibrated"]["mixed_ndcg@10"] > raw["mixed_ndcg@10"] + 0.4
    assert any(p["lambda"] == 0 for p in res["lambda_curve"]["points"])


@pytest.mark.slow
def test_fashion_zero_shot_sweep_quick(tmp_path):
    """LiT heads on the real towers: zero-shot is far above chance and the curve covers the raw gap."""
    rec = get_experiment("fashion-zero-shot-sweep").run(tmp_path, quick=True)
    res = rec["results"]
    assert res["lambda_curve"]["raw"]["acc1"] > 0.5  # 10 classes: chance is 0.1
    gaps = [p["signed_gap"] for p in res["lambda_curve"]["points"]]
    assert min(gaps) < 0 < res["lambda_curve"]["raw"]["centroid_gap"] < max(gaps)
    assert set(res["fixers"]) >= {"raw", "center", "procrustes"}
    assert (tmp_path / "fashion_zero_shot_sweep.png").exists()
