"""The Ray engine equals the single-process paths: measure, fix (and embed, below).

One local Ray instance serves the whole module (`ray.init(num_cpus=2)` costs ~20 s on a loaded
2-core machine); the shard folders are tiny so every Ray run takes about a second.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.engines import LocalEngine, get_engine, tree_order
from gapkit.errors import GapkitError
from gapkit.metrics import measure_stream

from .conftest import gapped_pairs

ray = pytest.importorskip("ray")

SIZES = (130, 250, 70, 190)  # rows per shard: unequal on purpose


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the test session (reused by every engine the tests create)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


def write_clip_retrieval(root, sizes=SIZES, dim=12, seed=0, dims=None):
    """A clip-retrieval folder with len(sizes) shards of gapped 1:1 pairs; returns (image, text)."""
    x, y = gapped_pairs(sum(sizes), dim, seed=seed)
    (root / "img_emb").mkdir(parents=True)
    (root / "text_emb").mkdir()
    start = 0
    for k, n in enumerate(sizes):
        d = dim if dims is None else dims[k]
        np.save(root / "img_emb" / f"img_emb_{k}.npy", x[start:start + n, :d])
        np.save(root / "text_emb" / f"text_emb_{k}.npy", y[start:start + n, :d])
        start += n
    return x, y


def _same_metrics(a, b, tol=1e-9):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and np.isnan(a[k]):
            assert np.isnan(b[k]), k
        else:
            assert b[k] == pytest.approx(a[k], rel=0, abs=tol), k


# ----------------------------------------------------------------------------------- engines
def test_tree_order_is_fixed_and_local_engine_maps_in_order():
    seen = []
    assert tree_order(lambda a, b: seen.append((a, b)) or a + b, ["a", "b", "c", "d", "e"]) == "abcde"
    assert seen == [("a", "b"), ("c", "d"), ("ab", "cd"), ("abcd", "e")]
    assert LocalEngine().map(abs, [-2, 3, -1]) == [2, 3, 1]
    with pytest.raises(GapkitError, match="unknown engine"):
        get_engine("spark")
    with pytest.raises(GapkitError, match="--engine ray"):
        get_engine("local", address="auto")


def test_import_gapkit_stays_light_and_missing_ray_is_one_line():
    code = ("import sys, gapkit, gapkit.engines, gapkit.shards\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n"
            "sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from gapkit.engines import get_engine\n"
            "try:\n    get_engine('ray')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "GapkitError the Ray engine needs Ray: pip install 'gapkit[ray]'"


# ----------------------------------------------------------------------------------- measure
def test_measure_ray_equals_single_pass(tmp_path, ray_session):
    write_clip_retrieval(tmp_path / "cr")
    for reservoir in (1000, 200):  # everything fits / a sample of the union (merged across shards)
        single = measure_stream(tmp_path / "cr", reservoir=reservoir, chunk_rows=64)
        local = measure_stream(tmp_path / "cr", reservoir=reservoir, chunk_rows=64, engine="local")
        on_ray = measure_stream(tmp_path / "cr", reservoir=reservoir, chunk_rows=64, engine="ray")
        _same_metrics(single, local)
        _same_metrics(single, on_ray)
        assert on_ray["n_image"] == sum(SIZES) and on_ray["stream_reservoir"] == min(reservoir, sum(SIZES))


def test_measure_cli_ray_writes_the_streaming_record(tmp_path, ray_session):
    write_clip_retrieval(tmp_path / "cr")
    common = ["measure", "--embeddings", str(tmp_path / "cr"), "--reservoir", "300"]
    assert main([*common, "--stream", "--out", str(tmp_path / "s.json")]) == 0
    assert main([*common, "--engine", "ray", "--out", str(tmp_path / "r.json")]) == 0
    s, r = (json.loads((tmp_path / f).read_text()) for f in ("s.json", "r.json"))
    assert r["kind"] == s["kind"] == "measure" and r["params"]["engine"] == "ray"
    assert (r["n_image"], r["n_text"], r["dim"]) == (s["n_image"], s["n_text"], s["dim"])
    _same_metrics(s["metrics"], r["metrics"])


def test_other_layouts_parquet_and_stacks(tmp_path, ray_session):
    from gapkit.embeddings import PairedEmbeddings, save_embeddings

    x, y = gapped_pairs(300, 8, seed=4)
    (tmp_path / "pq").mkdir()
    (tmp_path / "st").mkdir()
    for k, sl in enumerate((slice(0, 120), slice(120, 300))):
        save_embeddings(PairedEmbeddings(x[sl], y[sl]), tmp_path / "pq" / f"part-{k}.parquet")
        np.save(tmp_path / "st" / f"part-{k}.npy", np.stack([x[sl], y[sl]]))
    want = measure_stream([(x, y)], reservoir=500)
    for folder in ("pq", "st"):
        _same_metrics(want, measure_stream(tmp_path / folder, reservoir=500, engine="ray"), tol=1e-6)


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_mixed_dimensions_and_unreachable_cluster_are_one_line(tmp_path, capsys):
    write_clip_retrieval(tmp_path / "mixed", dims=(12, 12, 10, 12))
    assert main(["measure", "--embeddings", str(tmp_path / "mixed"), "--engine", "ray"]) == 2
    assert "mixed dimensions" in _one_error_line(capsys)
    write_clip_retrieval(tmp_path / "cr")
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for cmd in (["measure", "--embeddings", str(tmp_path / "cr")],
                ["fix", "--method", "center", "--fit", str(tmp_path / "cr"), "--apply", str(tmp_path / "cr"),
                 "--out", str(tmp_path / "fixed")]):
        assert main([*cmd, "--engine", "ray", "--address", f"127.0.0.1:{port}"]) == 2
        assert "no Ray cluster reachable at 127.0.0.1" in _one_error_line(capsys)
    assert not (tmp_path / "fixed").exists()


def test_object_store_released_across_runs(tmp_path, ray_session):
    write_clip_retrieval(tmp_path / "cr")
    worker = ray._private.worker.global_worker.core_worker
    measure_stream(tmp_path / "cr", engine="ray")
    before = len(worker.get_all_reference_counts())
    for _ in range(3):
        measure_stream(tmp_path / "cr", engine="ray")
    assert len(worker.get_all_reference_counts()) <= before


# ----------------------------------------------------------------------------------- fix
def _concat(folder):
    from gapkit.shards import list_shards, read_shard

    parts = [read_shard(s) for s in list_shards(folder)]
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


@pytest.mark.parametrize("method,params", [("center", []), ("standardize", []), ("topk", ["k=3"]),
                                           ("procrustes", []), ("noise", ["std=0.05"]), ("shift", ["lam=0.7"])])
def test_fix_ray_equals_sequential(tmp_path, ray_session, method, params):
    write_clip_retrieval(tmp_path / "cr")
    opts = [x for p in params for x in ("--param", p)]
    base = ["fix", "--method", method, *opts, "--fit", str(tmp_path / "cr"), "--apply", str(tmp_path / "cr")]
    assert main([*base, "--out", str(tmp_path / "seq")]) == 0
    assert main([*base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--save-fixer", str(tmp_path / "fx")]) == 0
    seq, out = _concat(tmp_path / "seq"), _concat(tmp_path / "ray")
    for a, b in zip(seq, out):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "ray" / "img_emb").iterdir()) == [f"img_emb_{k}.npy" for k in range(4)]
    from gapkit.fixers import create_fixer, load_fixer

    kw = dict(p.split("=") for p in params)
    direct = create_fixer(method, **{k: float(v) if "." in v else int(v) for k, v in kw.items()})
    x, y = _concat(tmp_path / "cr")
    direct.fit(x, y)
    saved = load_fixer(tmp_path / "fx")  # fitted from merged statistics == fitted on every row
    for attr in [a for a in vars(direct) if a.endswith("_") and isinstance(getattr(direct, a), np.ndarray)]:
        np.testing.assert_allclose(getattr(saved, attr), getattr(direct, attr), rtol=1e-9, atol=1e-12)


def test_fix_fixer_without_stats_fits_in_process_and_bad_input(tmp_path, ray_session, capsys):
    write_clip_retrieval(tmp_path / "cr")
    x, y = _concat(tmp_path / "cr")
    np.savez(tmp_path / "calib.npz", image=x[:200], text=y[:200])
    # shift with lam="close" searches over the calibration rows: it is fitted in process from a file
    assert main(["fix", "--method", "shift", "--fit", str(tmp_path / "calib.npz"), "--apply", str(tmp_path / "cr"),
                 "--out", str(tmp_path / "ray"), "--engine", "local"]) == 0
    capsys.readouterr()
    xs, ys = _concat(tmp_path / "ray")
    from gapkit.fixers import create_fixer

    fx = create_fixer("shift").fit(x[:200], y[:200])
    np.testing.assert_allclose(xs, fx.transform(x, "image"), atol=1e-6)
    np.testing.assert_allclose(ys, fx.transform(y, "text"), atol=1e-6)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["fix", "--method", "center", "--fit", str(tmp_path / "cr"), "--apply", str(tmp_path / "cr"),
                 "--out", str(tmp_path / "mine"), "--engine", "local"]) == 2
    assert "refusing to replace" in _one_error_line(capsys)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
