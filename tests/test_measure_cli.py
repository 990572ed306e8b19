"""`gapkit measure`: the JSON contract, the table, and one clear line + exit 2 for every bad input."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from gapkit.cli import main

from .conftest import gapped_pairs
from .test_metrics_measure import CONTRACT_KEYS


@pytest.fixture
def files(tmp_path):
    x, y = gapped_pairs(40, 8)
    np.save(tmp_path / "stack.npy", np.stack([x, y]))
    np.save(tmp_path / "img.npy", x)
    np.save(tmp_path / "txt.npy", y)
    np.save(tmp_path / "txt_multi.npy", np.concatenate([y, y[:10]]))
    np.save(tmp_path / "map.npy", np.concatenate([np.arange(40), np.arange(10)]))
    return tmp_path


def test_json_contract_from_a_stack(files, capsys):
    out = files / "m.json"
    assert main(["measure", "--embeddings", str(files / "stack.npy"), "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    for key in CONTRACT_KEYS:
        assert key in rec["metrics"], key
    assert (rec["n_image"], rec["n_text"], rec["dim"]) == (40, 40, 8)
    assert rec["inputs"]["embeddings"] == str(files / "stack.npy")
    assert rec["kind"] == "measure" and rec["seed"] == 0 and "versions" in rec
    assert rec["results"] == rec["metrics"]


def test_separate_files_with_mapping_to_stdout(files, capsys):
    code = main(["measure", "--image", str(files / "img.npy"), "--text", str(files / "txt_multi.npy"),
                 "--text-to-image", str(files / "map.npy"), "--metrics", "rmg,i2t_recall@1", "--ci",
                 "--n-boot", "50", "--out", "-"])
    assert code == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["n_text"] == 50 and rec["inputs"]["text_to_image"] == str(files / "map.npy")
    assert set(rec["metrics"]) == {"rmg", "rmg_ci_low", "rmg_ci_high", "rmg_bias", "i2t_recall@1",
                                   "i2t_recall@1_ci_low", "i2t_recall@1_ci_high"}


def test_table_without_out(capsys):
    assert main(["measure", "--sample", "clip", "--metrics", "geometry"]) == 0
    text = capsys.readouterr().out
    assert "centroid_distance" in text and "0.8514" in text and "500 images" in text


def _bad_inputs(d):
    x, y = gapped_pairs(10, 4)
    np.save(d / "nan.npy", np.stack([np.where(np.eye(10, 4) > 0, np.nan, x), y]))
    z = x.copy()
    z[3] = 0
    np.save(d / "zero.npy", np.stack([z, y]))
    np.save(d / "oned.npy", x[:, 0])
    np.save(d / "threed.npy", np.stack([x, y, x]))
    np.save(d / "dim5.npy", np.ones((10, 5), np.float32))
    np.save(d / "short.npy", y[:7])
    np.save(d / "map_oor.npy", np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 99]))
    np.save(d / "map_len.npy", np.arange(4))
    np.save(d / "empty.npy", np.zeros((0, 4), np.float32))
    np.save(d / "img.npy", x)
    np.save(d / "txt.npy", y)
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "emb.pkl").write_bytes(pickle.dumps({"image": x, "text": y}))
    (d / "emb.csv").write_text("1,2,3\n")
    (d / "broken.npy").write_bytes(b"not numpy at all")
    i, t = str(d / "img.npy"), str(d / "txt.npy")
    return {
        "missing file": (["--embeddings", str(d / "nope.npy")], "not found"),
        "unknown format": (["--embeddings", str(d / "emb.csv")], "unknown format"),
        "unreadable file": (["--embeddings", str(d / "broken.npy")], "unreadable"),
        "NaN values": (["--embeddings", str(d / "nan.npy")], "NaN"),
        "all-zero row": (["--embeddings", str(d / "zero.npy")], "row 3 is all zeros"),
        "1-D array": (["--image", str(d / "oned.npy"), "--text", t], "2-D"),
        "3-D array": (["--image", str(d / "threed.npy"), "--text", t], "2-D"),
        "dims differ": (["--image", i, "--text", str(d / "dim5.npy")], "dims differ"),
        "counts differ": (["--image", i, "--text", str(d / "short.npy")], "pair counts differ"),
        "mapping out of range": (["--image", i, "--text", t, "--text-to-image", str(d / "map_oor.npy")], "out of range"),
        "mapping wrong length": (["--image", i, "--text", t, "--text-to-image", str(d / "map_len.npy")], "length"),
        "empty array": (["--image", str(d / "empty.npy"), "--text", t], "empty"),
        "pickle file": (["--embeddings", str(d / "emb.pkl")], "pickle"),
        "pickled objects in .npy": (["--image", str(d / "obj.npy"), "--text", t], "pickle"),
        "bad metric name": (["--image", i, "--text", t, "--metrics", "nope"], "unknown metric"),
        "empty metric list": (["--image", i, "--text", t, "--metrics", ","], "empty"),
        "no input": ([], "give exactly one input"),
        "two inputs": (["--sample", "clip", "--image", i, "--text", t], "exactly one input"),
        "bad n-boot": (["--image", i, "--text", t, "--ci", "--n-boot", "1"], "n-boot"),
        "bad train fraction": (["--image", i, "--text", t, "--train-fraction", "2"], "train_fraction"),
        "unknown sample": (["--sample", "nope"], "unknown sample"),
    }


def test_every_bad_input_is_one_line_exit_2_no_output(tmp_path, capsys):
    for name, (argv, needle) in _bad_inputs(tmp_path).items():
        out = tmp_path / f"out_{len(name)}.json"
        code = main(["measure", *argv, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1 and err.startswith("gapkit measure: error:"), (name, err)
        assert needle.lower() in err.lower(), (name, err)
        assert not out.exists(), name
        assert not list(tmp_path.glob(".out_*")), name  # no temporary left behind


def test_bad_input_through_a_real_process(tmp_path):
    np.save(tmp_path / "oned.npy", np.ones(5))
    r = subprocess.run([sys.executable, "-m", "gapkit", "measure", "--image", str(tmp_path / "oned.npy"),
                        "--text", str(tmp_path / "oned.npy"), "--out", str(tmp_path / "m.json")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "expected a 2-D array" in r.stderr
    assert not (tmp_path / "m.json").exists()


def test_stream_option_matches_in_memory(files, tmp_path, capsys):
    x, y = gapped_pairs(40, 8)
    for sub, arr in (("img_emb", x), ("text_emb", y)):
        (tmp_path / "cr" / sub).mkdir(parents=True)
        np.save(tmp_path / "cr" / sub / f"{sub}_0.npy", arr)
    assert main(["measure", "--embeddings", str(tmp_path / "cr"), "--stream", "--out", "-"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert main(["measure", "--embeddings", str(files / "stack.npy"), "--out", "-"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert streamed["params"]["stream"] is True and streamed["n_image"] == 40
    for key in ("centroid_distance", "rmg", "uniformity_cross", "i2t_recall@1"):  # all 40 pairs fit
        assert streamed["metrics"][key] == pytest.approx(full["metrics"][key], abs=1e-6), key
    code = main(["measure", "--stream", "--image", str(files / "img.npy"), "--text", str(files / "txt.npy")])
    assert code == 2 and "--stream reads one --embeddings" in capsys.readouterr().err
