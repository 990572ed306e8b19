"""Trainer: a short run learns, exact resume after SIGKILL, NaN stop, Procrustes init, temperatures."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gapkit.errors import GapkitError
from gapkit.train import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from _synthetic_pairs import SyntheticPairs, single_thread  # noqa: E402

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"


def _run(cfg: TrainConfig, out: Path, **kw):
    from gapkit.train import train

    return train(cfg, out, dataset=SyntheticPairs(256), eval_dataset=SyntheticPairs(100, seed=1), **kw)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _small(**kw) -> TrainConfig:
    base = dict(model="tiny-cnn", steps=24, batch_size=32, eval_every=8, ckpt_every=8, eval_size=100,
                warmup_steps=4, lr=2e-3, progress=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_short_run_learns_and_logs_gap(tmp_path):
    rec = _run(_small(steps=48, eval_every=16), tmp_path / "r")
    rows = _rows(tmp_path / "r")
    assert [r["step"] for r in rows] == [0, 16, 32, 48]
    first, last = rows[0], rows[-1]
    for key in ("centroid_distance", "paired_cosine_mean", "zero_shot_accuracy", "logit_scale", "lr"):
        assert key in last
    # Measured effect: zero-shot accuracy from chance (10 classes) to near perfect; loss falls.
    assert first["zero_shot_accuracy"] < 0.35 and last["zero_shot_accuracy"] > 0.8
    assert last["contrastive_loss"] < rows[1]["contrastive_loss"]
    assert last["paired_cosine_mean"] > first["paired_cosine_mean"] + 0.2
    assert rec["results"]["steps"] == 48 and (tmp_path / "r" / "record.json").is_file()
    from gapkit.train import load_run_model

    model = load_run_model(tmp_path / "r")
    assert model.config["vision_cfg"]["type"] == "cnn"
    # The trained run as a gapkit.encoders Encoder gives the model's own features.
    from gapkit.encoders import get_encoder

    enc = get_encoder("gapkit", checkpoint=str(tmp_path / "r"))
    ds = SyntheticPairs(4, seed=2)
    pix = torch.stack([enc.preprocess(ds.image(i)) for i in range(4)])
    with torch.no_grad():
        assert torch.allclose(enc.encode_image(pix), model.eval().encode_image(pix), atol=1e-5)
        assert torch.allclose(enc.encode_text(ds.captions), model.encode_text(model.tokenizer(ds.captions)), atol=1e-5)


def test_procrustes_init_closes_the_initial_gap(tmp_path):
    _run(_small(steps=1, eval_every=1), tmp_path / "orig")
    _run(_small(steps=1, eval_every=1, procrustes_init=True), tmp_path / "amend")
    g_orig = _rows(tmp_path / "orig")[0]["centroid_distance"]
    g_amend = _rows(tmp_path / "amend")[0]["centroid_distance"]
    assert g_orig > 0.5 and g_amend < 0.25 * g_orig
    from gapkit.train import load_run_model

    w = load_run_model(tmp_path / "amend").text_rotation
    assert torch.allclose(w @ w.T, torch.eye(w.shape[0]), atol=1e-4)  # orthogonal, saved with the model


def test_procrustes_rotation_recovers_a_known_rotation():
    from gapkit.train.procrustes import procrustes_rotation

    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    y = torch.randn(50, 6, generator=g, dtype=torch.float64)
    x = y @ q.T  # images are the rotated texts
    w = procrustes_rotation(x, y)
    assert torch.allclose(w, q, atol=1e-10) and torch.allclose(y @ w.T, x, atol=1e-10)


def test_temperature_modes(tmp_path):
    _run(_small(steps=8, eval_every=8, temperature="fixed", tau=0.05), tmp_path / "fixed")
    assert _rows(tmp_path / "fixed")[-1]["tau"] == pytest.approx(0.05, rel=1e-5)
    _run(_small(steps=8, eval_every=8, temperature="schedule", tau=0.07, tau_end=0.02), tmp_path / "sched")
    # tau(t) = 0.07 (0.02/0.07)^(t/8); the value set for the last step t = 7 is what the model holds.
    assert _rows(tmp_path / "sched")[-1]["tau"] == pytest.approx(0.07 * (0.02 / 0.07) ** (7 / 8), rel=1e-4)
    _run(_small(steps=8, eval_every=8, lr=1e-2), tmp_path / "learn")
    assert _rows(tmp_path / "learn")[-1]["tau"] != pytest.approx(0.07, rel=1e-4)
    with pytest.raises(GapkitError, match="needs tau"):
        TrainConfig(temperature="fixed")


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path):
    from gapkit.losses import register_loss
    from gapkit.train import TrainingDiverged
    from gapkit.train.checkpoint import read_checkpoint

    register_loss("nan_after_10", "_synthetic_pairs:NanAfterLoss")
    cfg = _small(steps=20, eval_every=20, ckpt_every=4, loss="nan_after_10", loss_kwargs={"after": 10})
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 10 \(loss nan.*last good checkpoint: .*checkpoint"):
        _run(cfg, tmp_path / "r")
    _, _, state = read_checkpoint(tmp_path / "r")
    assert state["step"] == 8  # the last checkpoint before the NaN step is intact
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_gradient_accumulation_and_clipping_run(tmp_path):
    rec = _run(_small(steps=4, eval_every=4, accum_steps=2, grad_clip=1.0), tmp_path / "r")
    assert np.isfinite(rec["results"]["final"]["contrastive_loss"])


def test_config_json_round_trip_and_overrides(tmp_path):
    cfg = TrainConfig(model="tiny-vit", loss="imsep", loss_kwargs={"beta": 0.5})
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    new = cfg.with_overrides(["steps=7", "loss_kwargs.beta=0.25", "model=tiny-cnn", "betas=[0.9, 0.95]"])
    assert (new.steps, new.loss_kwargs["beta"], new.model, new.betas) == (7, 0.25, "tiny-cnn", (0.9, 0.95))
    with pytest.raises(GapkitError, match="unknown TrainConfig fields"):
        cfg.with_overrides(["stepz=3"])
    with pytest.raises(GapkitError, match="divisible"):
        TrainConfig(batch_size=10, accum_steps=3)


def test_existing_run_is_not_overwritten_and_cli_errors(tmp_path, capsys):
    from gapkit.cli import main

    _run(_small(steps=2, eval_every=2), tmp_path / "r")
    with pytest.raises(GapkitError, match="already holds a run"):
        _run(_small(steps=2), tmp_path / "r")
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["train", "--config", "tiny-nope", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}, {src!r}]
    from _synthetic_pairs import SyntheticPairs
    from gapkit.train import TrainConfig, train
    cfg = TrainConfig(**{cfg!r})
    train(cfg, sys.argv[1], resume=sys.argv[2] == "resume",
          dataset=SyntheticPairs(256), eval_dataset=SyntheticPairs(50, seed=1))
""")
_RESUME_CFG = dict(model="tiny-vit", steps=60, batch_size=32, eval_every=60, ckpt_every=4, eval_size=50,
                   warmup_steps=5, lr=1e-3, progress=False, threads=1, seed=3)


def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(tests=str(TESTS), src=str(SRC), cfg=_RESUME_CFG))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    py = [sys.executable, str(script)]
    # The uninterrupted reference runs in this process (same code, same single thread).
    from gapkit.train import train

    train(TrainConfig(**_RESUME_CFG), tmp_path / "ref", dataset=SyntheticPairs(256), eval_dataset=SyntheticPairs(50, seed=1))

    proc = subprocess.Popen(py + [str(tmp_path / "crash"), "fresh"], env=env)
    state = tmp_path / "crash" / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 12:
            break
        time.sleep(0.01)
    time.sleep(random.Random().uniform(0.0, 0.3))  # land at an arbitrary point, mid-step or mid-write
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(state.read_text())["step"]
    assert killed_at < 60
    subprocess.run(py + [str(tmp_path / "crash"), "resume"], check=True, env=env, timeout=300)

    ref = load_file(str(tmp_path / "ref" / "model.safetensors"))
    got = load_file(str(tmp_path / "crash" / "model.safetensors"))
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref), "resumed weights differ from the uninterrupted run"
    ro, go = (load_file(str(d / "checkpoint" / "optimizer.safetensors")) for d in (tmp_path / "ref", tmp_path / "crash"))
    assert all(torch.equal(ro[k], go[k]) for k in ro if k.startswith("state."))
    steps = [json.loads(x)["step"] for x in (tmp_path / "crash" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 60]  # no duplicated telemetry rows after the resume


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian fashion-mnist not installed")
def test_cli_trains_on_fashion_mnist_and_resumes(tmp_path, capsys):
    from gapkit.cli import main

    out = tmp_path / "run"
    args = ["train", "--config", "tiny-cnn", "--dataset", "fashion-mnist", "--out", str(out),
            "--set", "steps=4", "--set", "batch_size=32", "--set", "max_train_texts=256", "--set", "eval_size=50",
            "--set", "eval_every=2", "--set", "ckpt_every=2", "--set", "threads=1", "--set", "progress=false"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 4 and 0 <= summary["final"]["zero_shot_accuracy"] <= 1
    saved = TrainConfig.load(out / "config.json")
    assert (saved.model, saved.dataset, saved.steps) == ("tiny-cnn", "fashion-mnist", 4)
    assert main(["train", "--out", str(out), "--resume"]) == 0  # a finished run resumes to a no-op


def test_fit_heads_learns_a_cross_modal_map():
    from gapkit.train import fit_heads

    r = np.random.default_rng(0)
    img = r.standard_normal((400, 24)).astype(np.float32)
    mix = r.standard_normal((24, 12))
    txt = (img @ mix + 0.1 * r.standard_normal((400, 12))).astype(np.float32)  # texts see the images linearly

    def r_at_1(x, y):
        return float(((x @ y.T).argmax(1) == np.arange(len(x))).mean())

    heads = fit_heads(img, txt, loss="clip", steps=150, seed=0, embed_dim=16, batch_size=100, lr=1e-2)
    trained = r_at_1(heads.project_image(img), heads.project_text(txt))
    from gapkit.models import LiTHeads

    untrained = LiTHeads(24, 12, 16)
    assert trained > 0.8 and trained > r_at_1(untrained.project_image(img), untrained.project_text(txt)) + 0.5
    with pytest.raises(GapkitError, match="text_to_image"):
        fit_heads(img, txt[:10], steps=1)


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()
