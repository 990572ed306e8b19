"""`gapkit index build|info` and `gapkit search`: working paths and every bad input of issue 10
(one stderr line, exit 2, nothing half-written)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.embeddings import save_embeddings
from gapkit.search.synthetic import GappedGenerator


def rejected(argv, capsys, *needles, out=None):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if "doc/s]" not in ln]  # a progress bar may precede the error
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], err
    if out is not None:
        assert not out.exists(), f"{out} was written"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An embeddings file (2 captions per image), a calibrated and a plain index, a query vector."""
    d = tmp_path_factory.mktemp("cli")
    pe = GappedGenerator(seed=0).pairs(150, 2)
    save_embeddings(pe, d / "emb.npz")
    assert main(["index", "build", "--embeddings", str(d / "emb.npz"), "--correction", "calibrated",
                 "--backend", "exact", "--quiet", "--out", str(d / "cal")]) == 0
    assert main(["index", "build", "--sample", "clip", "--roles", "image,text", "--backend", "faiss", "--quiet",
                 "--out", str(d / "clip")]) == 0
    np.save(d / "q.npy", GappedGenerator(seed=3).pairs(1, 1).text[0])
    np.save(d / "q64.npy", np.ones(64, np.float32))
    return d


def test_build_info_and_search_work(built, capsys):
    capsys.readouterr()
    assert main(["index", "info", str(built / "cal")]) == 0
    out = capsys.readouterr().out
    assert "documents    600 (image 150, text 300, fused 150)" in out and "calibrated pairs" in out
    assert main(["index", "info", str(built / "cal"), "--json", "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["verified"] and info["correction"]["kind"] == "calibrated"
    assert main(["search", str(built / "cal"), "--query-vector", str(built / "q.npy"), "--k", "5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["#", "role", "score", "P(match)", "raw"] and len(table) == 7
    assert main(["search", str(built / "cal"), "--query-vector", str(built / "q.npy"), "--k", "5", "--json",
                 "--min-probability", "0.001"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert all(h["probability"] >= 0.001 for h in res["hits"])
    assert main(["search", str(built / "clip"), "--query-vector", str(built / "q.npy"), "--role", "image", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 10 and {h["role"] for h in hits} == {"image"}


def test_bad_index_directories(built, tmp_path, capsys):
    rejected(["search", str(tmp_path / "missing"), "--query-vector", str(built / "q.npy")], capsys, "no search index")
    bad = tmp_path / "bad"
    shutil.copytree(built / "cal", bad)
    (bad / "index.json").write_text("[1, 2")
    rejected(["search", str(bad), "--query-vector", str(built / "q.npy")], capsys, "invalid JSON")
    meta = json.loads((built / "cal" / "index.json").read_text())
    (bad / "index.json").write_text(json.dumps({**meta, "gapkit_version": "9.9.9"}))
    rejected(["index", "info", str(bad)], capsys, "built by gapkit 9.9.9", "rebuild the index")


@pytest.mark.parametrize("args,needle", [
    (["--query-vector", "{d}/q64.npy"], "query vector has dimension 64, the index has 512"),
    ([""], "the query text is empty"),
    (["a red apple"], "has no encoder"),
    (["--image", "{d}/q.npy"], "has no encoder"),
    (["--query-vector", "{d}/q.npy", "--k", "0"], "--k must be a positive integer"),
    (["--query-vector", "{d}/q.npy", "--role", "audio"], "unknown role 'audio'"),
    (["--query-vector", "{d}/q.npy", "--min-probability", "2"], "min_probability must be in [0, 1]"),
    (["--query-vector", "{d}/nope.npy"], "file not found"),
    ([], "give exactly one query"),
    (["text", "--query-vector", "{d}/q.npy"], "give exactly one query"),
])
def test_bad_search_inputs(built, capsys, args, needle):
    rejected(["search", str(built / "cal"), *[a.format(d=built) for a in args]], capsys, needle)


def test_min_probability_needs_a_calibrated_index(built, capsys):
    rejected(["search", str(built / "clip"), "--query-vector", str(built / "q.npy"), "--min-probability", "0.5"],
             capsys, "needs a calibrated index")


@pytest.mark.parametrize("args,needle", [
    (["--sample", "clip", "--correction", "calibrated"], "several captions per image"),
    (["--sample", "clip", "--correction", "bogus"], "unknown correction 'bogus'"),
    (["--sample", "clip", "--backend", "milvus"], "unknown search backend 'milvus'"),
    (["--sample", "clip", "--roles", "image,audio"], "unknown document roles ['audio']"),
    (["--sample", "clip", "--backend", "faiss", "--backend-param", "kind=ivfpq"], "kind must be one of"),
    (["--sample", "clip", "--embeddings", "x.npz"], "exactly one of --embeddings, --sample, --dataset"),
    (["--dataset", "emoji"], "--dataset needs --encoder"),
    (["--sample", "clip", "--correction", "calibrated", "--prior", "2"], "must be in (0, 1)"),
])
def test_bad_build_inputs_write_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "idx"
    rejected(["index", "build", *args, "--quiet", "--out", str(out)], capsys, needle, out=out)
