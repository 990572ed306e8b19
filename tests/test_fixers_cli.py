"""`gapkit fix`, `gapkit evaluate` and `gapkit build` end to end."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.embeddings import PairedEmbeddings, load_embeddings, save_embeddings
from tests.conftest import gapped_pairs


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture
def stack(tmp_path):
    x, y = gapped_pairs(n=120, d=16)
    p = tmp_path / "pairs.npy"
    np.save(p, np.stack([x, y]))
    return p, x, y


def test_fix_keeps_stack_layout_and_pipes_into_measure(stack, tmp_path, capsys):
    p, x, y = stack
    out = tmp_path / "fixed.npy"
    assert main(["fix", "--method", "center", "--fit", str(p), "--apply", str(p), "--out", str(out),
                 "--save-fixer", str(tmp_path / "fx")]) == 0
    a = np.load(out)
    assert a.shape == (2, 120, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a[0], unit(unit(x) - unit(x).mean(0)), atol=1e-5)
    assert load_embeddings(out).metadata["layout"] == "stack"
    assert "gap" in capsys.readouterr().err
    # the output pipes into `gapkit measure`, which sees the closed gap
    rec_path = tmp_path / "m.json"
    assert main(["measure", "--embeddings", str(out), "--metrics", "centroid_distance", "--out", str(rec_path)]) == 0
    rec = json.loads(rec_path.read_text())
    assert rec["n_image"] == 120
    assert rec["metrics"]["centroid_distance"] < 0.1 < np.linalg.norm(unit(x).mean(0) - unit(y).mean(0))
    # the saved fixer applied again gives the same file content
    out2 = tmp_path / "fixed2.npy"
    assert main(["fix", "--method", str(tmp_path / "fx"), "--apply", str(p), "--out", str(out2)]) == 0
    np.testing.assert_array_equal(np.load(out2), a)


def test_a_fixer_name_beats_a_folder_of_that_name(stack, tmp_path, monkeypatch):
    """`--method center` is the center fixer even where ./center is a folder (e.g. a run folder);
    `--method ./center` loads the saved fixer in it."""
    p, x, _ = stack
    monkeypatch.chdir(tmp_path)
    assert main(["fix", "--method", "shift", "--param", "lam=0.5", "--fit", str(p), "--apply", str(p),
                 "--out", "a.npy", "--save-fixer", "center"]) == 0  # a folder called center: a saved shift
    assert main(["fix", "--method", "center", "--fit", str(p), "--apply", str(p), "--out", "b.npy"]) == 0
    np.testing.assert_allclose(np.load("b.npy")[0], unit(unit(x) - unit(x).mean(0)), atol=1e-5)
    assert main(["fix", "--method", "./center", "--apply", str(p), "--out", "c.npy"]) == 0
    np.testing.assert_array_equal(np.load("c.npy"), np.load("a.npy"))


def test_fix_multi_caption_npz_keeps_mapping(tmp_path):
    rng = np.random.default_rng(0)
    img = unit(rng.standard_normal((10, 8)))
    m = np.repeat(np.arange(10), 2)
    txt = unit(img[m] + 0.3 * rng.standard_normal((20, 8)))
    src = tmp_path / "multi.npz"
    save_embeddings(PairedEmbeddings(img, txt, m), src)
    out = tmp_path / "out.safetensors"
    assert main(["fix", "--method", "procrustes", "--fit", str(src), "--apply", str(src), "--out", str(out)]) == 0
    pe = load_embeddings(out)
    np.testing.assert_array_equal(pe.text_to_image, m)
    np.testing.assert_allclose(pe.image, img, atol=1e-6)  # Procrustes leaves images alone


def test_fix_single_modality_file(stack, tmp_path):
    p, x, y = stack
    np.save(tmp_path / "t.npy", y)
    out = tmp_path / "t_fixed.npy"
    assert main(["fix", "--method", "shift", "--param", "lam=0.5", "--fit", str(p),
                 "--apply-text", str(tmp_path / "t.npy"), "--out", str(out)]) == 0
    assert np.load(out).shape == y.shape


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "unknown fixer 'nope'"),
    (["--method", "center"], "must be fitted"),
    (["--method", "calibrated"], "calibrates scores"),
    (["--method", "shift", "--param", "lam"], "KEY=VALUE"),
])
def test_fix_errors_exit_2_without_output(argv, message, stack, tmp_path, capsys):
    p, _, _ = stack
    out = tmp_path / "never.npy"
    fit = [] if "must be fitted" in message else ["--fit", str(p)]
    assert main(["fix", *argv, *fit, "--apply", str(p), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_fix_dimension_mismatch_exit_2(stack, tmp_path, capsys):
    p, x, y = stack
    other = tmp_path / "other.npy"
    np.save(other, np.stack([x[:, :8], y[:, :8]]))
    assert main(["fix", "--method", "center", "--fit", str(p), "--apply", str(other),
                 "--out", str(tmp_path / "o.npy")]) == 2
    assert "does not match the fitted dimension 16" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_evaluate_and_build(stack, tmp_path):
    p, x, y = stack
    raw, fixed = tmp_path / "r" / "raw.json", tmp_path / "r" / "center.json"
    assert main(["evaluate", "--task", "retrieval", "--embeddings", str(p), "--model", "toy",
                 "--dataset", "gapped", "--out", str(raw)]) == 0
    assert main(["evaluate", "--task", "mixed-retrieval", "--embeddings", str(p), "--fixer", "center",
                 "--fit", str(p), "--model", "toy", "--dataset", "gapped", "--out", str(fixed)]) == 0
    rec = json.loads(raw.read_text())
    assert rec["task"] == "retrieval" and rec["model"] == "toy" and rec["fixer"] is None
    assert 0 <= rec["metrics"]["t2i_recall@1"] <= 1
    table = tmp_path / "table.csv"
    assert main(["build", str(tmp_path / "r"), "--out", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert {r["task"] for r in rows} == {"retrieval", "mixed-retrieval"}
    by_task = {r["task"]: r for r in rows}
    assert by_task["mixed-retrieval"]["fixer"] == "center"
    assert by_task["retrieval"]["ndcg@10"] == ""  # metrics a record lacks stay empty
    assert float(by_task["retrieval"]["i2t_recall@1"]) == rec["metrics"]["i2t_recall@1"]


def test_evaluate_zero_shot_and_fairness_files(tmp_path):
    rng = np.random.default_rng(1)
    cls = unit(rng.standard_normal((4, 8)))
    labels = rng.integers(0, 4, 50)
    img = unit(cls[labels] + 0.2 * rng.standard_normal((50, 8)))
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "cls.npy", cls)
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "zs.json"
    assert main(["evaluate", "--task", "zero-shot", "--image", str(tmp_path / "img.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--classifier", str(tmp_path / "cls.npy"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["acc1"] > 0.9
    (tmp_path / "groups.txt").write_text("\n".join("AB"[i % 2] for i in range(50)))
    (tmp_path / "cats.json").write_text(json.dumps(["human", "human", "non-human", "crime"]))
    out = tmp_path / "fair.json"
    assert main(["evaluate", "--task", "fairness", "--image", str(tmp_path / "img.npy"), "--groups",
                 str(tmp_path / "groups.txt"), "--classifier", str(tmp_path / "cls.npy"),
                 "--prompt-categories", str(tmp_path / "cats.json"), "--out", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert m["denigration_all_total"] == pytest.approx(np.isin(labels, [2, 3]).mean(), abs=0.1)


def test_evaluate_missing_input_exit_2(tmp_path, capsys):
    np.save(tmp_path / "img.npy", np.eye(3))
    assert main(["evaluate", "--task", "zero-shot", "--image", str(tmp_path / "img.npy"),
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "needs --labels" in capsys.readouterr().err


def test_build_rejects_non_record(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"kind": "measure"}')
    assert main(["build", str(tmp_path / "x.json"), "--out", str(tmp_path / "t.csv")]) == 2
    assert "not an evaluation record" in capsys.readouterr().err
