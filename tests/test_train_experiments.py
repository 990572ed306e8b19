"""Training experiments (quick variants on synthetic data) and the training figures."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _synthetic_pairs import SyntheticPairs, single_thread  # noqa: E402


@pytest.fixture
def synthetic_data(monkeypatch):
    """Experiments load data by name; here every split is the synthetic set (no disk, fast)."""
    monkeypatch.setattr("gapkit.train.loop.load_split",
                        lambda config, split: SyntheticPairs(256 if split == "train" else 100, seed=split == "test"))


def test_seed_ci_matches_student_t():
    from gapkit.experiments.training import seed_ci

    ci = seed_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert ci["mean"] == 2.0 and ci["ci_high"] == pytest.approx(2.0 + half) and ci["n"] == 3
    assert np.isnan(seed_ci([1.0])["ci_low"])


def test_liang_init_amendment_quick(tmp_path, synthetic_data):
    from gapkit.experiments import get_experiment

    rec = get_experiment("liang-init-amendment").run(tmp_path, quick=True, seed=0, model="tiny-cnn", eval_every=10,
                                                        eval_size=60, max_train_texts=256)
    gap = rec["results"]["gap"]
    assert gap["amended"]["init"]["mean"] < 0.3 * gap["original"]["init"]["mean"]
    assert gap["original"]["init"]["n"] == 2
    saved = json.loads((tmp_path / "record.json").read_text())
    assert saved["params"]["experiment"] == "liang-init-amendment"
    assert (tmp_path / "gap_over_steps.png").stat().st_size > 10_000
    assert len(list((tmp_path / "runs").iterdir())) == 4


def test_training_figures_from_run_dirs(tmp_path):
    from gapkit.report.figures.training import arm_bars, metric_over_steps, metric_vs_temperature, runs_from_dirs

    for name, gaps in (("a", [1.0, 0.8, 0.6]), ("b", [0.1, 0.3, 0.5])):
        d = tmp_path / name
        d.mkdir()
        d.joinpath("metrics.jsonl").write_text("".join(
            json.dumps({"step": 10 * i, "centroid_distance": g}) + "\n" for i, g in enumerate(gaps)))
    fig = metric_over_steps(runs_from_dirs([tmp_path / "a", tmp_path / "b"]), "centroid_distance")
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(("a", "b"))]
    assert [list(ln.get_ydata()) for ln in lines] == [[1.0, 0.8, 0.6], [0.1, 0.3, 0.5]]
    summ = {f"tau={t:.4g}": {"centroid_distance": {"mean": g, "ci_low": g - 0.1, "ci_high": g + 0.1},
                             "zero_shot_accuracy": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}}
            for t, g in ((0.01, 1.0), (1.0, 0.2))}
    assert metric_vs_temperature(summ, [0.01, 1.0]).axes[0].get_lines()[0].get_ydata().tolist() == [1.0, 0.2]
    assert len(arm_bars(summ, ["centroid_distance"]).axes[0].patches) == 2


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()
