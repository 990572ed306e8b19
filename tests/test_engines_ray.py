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
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
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


def test_embed_unreachable_cluster_leaves_no_folder(tmp_path, tiny_cfg, capsys):  # probed before any work
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["embed", "--encoder", f"open_clip:{tiny_cfg}", "--dataset", "emoji", "--limit", "5", "--quiet",
                 "--cache-dir", str(tmp_path / "c"), "--engine", "ray", "--address", f"127.0.0.1:{port}",
                 "--out", str(tmp_path / "e")]) == 2
    assert "no Ray cluster reachable" in _one_error_line(capsys)
    assert not (tmp_path / "e").exists()


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


@pytest.mark.parametrize("method,params", [("center", []), ("role-center", []), ("standardize", []), ("topk", ["k=3"]),
                                           ("procrustes", []), ("noise", ["std=0.05"]), ("shift", ["lam=0.7"])])
def test_fix_ray_equals_sequential(tmp_path, ray_session, method, params):
    write_clip_retrieval(tmp_path / "cr")
    opts = [x for p in params for x in ("--param", p)]
    base = ["fix", "--method", method, *opts, "--fit", str(tmp_path / "cr"), "--apply", str(tmp_path / "cr")]
    assert main([*base, "--out", str(tmp_path / "seq")]) == 0
    assert main([*base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--save-fixer", str(tmp_path / "fx")]) == 0
    seq, out = _concat(tmp_path / "seq"), _concat(tmp_path / "ray")
    if method != "role-center":  # in process, `fix` fits role-center with the evaluation protocol's query split
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
    if method != "noise":  # the fixed shards are the direct fixer's transform (noise: seeded per global row)
        np.testing.assert_allclose(out[0], direct.transform(x, "image"), rtol=0, atol=1e-6)
        np.testing.assert_allclose(out[1], direct.transform(y, "text"), rtol=0, atol=1e-6)


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


# ----------------------------------------------------------------------------------- embed
TINY = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "gapkit-tiny-ray.json"
    p.write_text(json.dumps(TINY))
    return p


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def emoji(data_cache):
    from gapkit.data import load_dataset

    return load_dataset("emoji", "test", seed=0, limit=11, cache_dir=data_cache)


class SlowMaker:
    """device -> the tiny open_clip encoder, whose encode_image sleeps a little: a window in which the
    test can kill the encoder actor mid-run. Pickled by value to the Ray workers."""

    def __init__(self, cfg, delay=0.0):
        self.cfg, self.delay = str(cfg), delay

    def __call__(self, device):
        import time

        from gapkit.encoders import get_encoder

        enc = get_encoder(f"open_clip:{self.cfg}", seed=0, device=device)
        inner, delay = enc.encode_image, self.delay

        def slow(images):
            time.sleep(delay)
            return inner(images)

        enc.encode_image = slow
        return enc


def _pairs_of(folder):
    import pyarrow.parquet as pq

    x, y = _concat(folder)
    metas = sorted((folder / "metadata").glob("*.parquet"), key=lambda f: int(f.stem.split("_")[-1]))
    meta = {c: sum((pq.read_table(f).column(c).to_pylist() for f in metas), []) for c in ("image_id", "caption")}
    return x, y, meta


def _assert_equals_sequential(folder, seq):
    x, y, meta = _pairs_of(folder)
    np.testing.assert_allclose(x, seq.image[seq.text_to_image], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, seq.text, rtol=1e-5, atol=1e-6)
    assert meta["caption"] == list(seq.captions)
    assert meta["image_id"] == [seq.image_ids[i] for i in seq.text_to_image]


def _encoder_actor_pids():
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if b"MapWorker" in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def test_embed_ray_killed_worker_resumes_and_equals_sequential(tmp_path, ray_session, tiny_cfg, emoji):
    """Kill the encoder actor once shard 0 is written: the run ends in one line (or Ray restarts the
    actor), a rerun keeps the finished shard and completes the rest, the result equals the
    sequential extraction, decoding ran outside the actors, and a third run has nothing to do."""
    import signal
    import threading
    import time

    from gapkit.encoders import extract
    from gapkit.encoders.sharded_extraction import embed_to_shards, shard_paths
    from gapkit.engines.ray_engine import RayEngine

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # SlowMaker travels to the workers
    seq = extract(SlowMaker(tiny_cfg)("cpu"), emoji, batch_size=8, use_cache=False, progress=False)
    out = tmp_path / "shards"
    eng = RayEngine()  # joins the test session's instance
    result = {}

    def job():
        try:
            result["manifest"] = embed_to_shards(SlowMaker(tiny_cfg, 0.3), emoji, out, engine=eng, batch_size=3,
                                                 shard_rows=9, progress=False)
        except GapkitError as exc:
            result["error"] = str(exc)

    t = threading.Thread(target=job)
    t.start()
    killed = []
    deadline = time.time() + 240
    while t.is_alive() and time.time() < deadline:  # kill the encoder actor once shard 0 is written
        if not killed and shard_paths(out, 0)[2].exists():
            for pid in _encoder_actor_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    t.join(timeout=60)
    assert killed, "the run ended before the test could kill a worker"
    assert "error" not in result or "\n" not in result["error"]  # failed in one line, or Ray restarted the actor
    first = [p.stat().st_mtime_ns for p in shard_paths(out, 0)]
    again = embed_to_shards(SlowMaker(tiny_cfg), emoji, out, engine=eng, batch_size=3, shard_rows=9, progress=False)
    assert again["n_shards"] == -(-len(emoji.captions) // 9) and again["resumed_shards"] >= 1
    assert [p.stat().st_mtime_ns for p in shard_paths(out, 0)] == first  # the finished shard was kept
    _assert_equals_sequential(out, seq)
    # decoding ran in Ray Data CPU tasks, not fused into the encoder actors' processes
    assert eng.stage_pids["prepare"] and eng.stage_pids["apply"]
    assert not eng.stage_pids["prepare"] & eng.stage_pids["apply"]
    third = embed_to_shards(SlowMaker(tiny_cfg), emoji, out, engine=eng, batch_size=3, shard_rows=9, progress=False)
    assert third["resumed_shards"] == third["n_shards"]  # every shard complete: no Ray work at all
    assert measure_stream(out, engine="ray")["n_image"] == len(emoji.captions)


def test_embed_cli_local_engine_resume_lock_and_plan(tmp_path, tiny_cfg, emoji, data_cache, capsys):
    import fcntl

    from gapkit.encoders import extract
    from gapkit.encoders.sharded_extraction import shard_paths
    from gapkit.outputs import LOCK_FILE

    seq = extract(SlowMaker(tiny_cfg)("cpu"), emoji, batch_size=8, use_cache=False, progress=False)
    out = tmp_path / "e"
    cmd = ["embed", "--encoder", f"open_clip:{tiny_cfg}", "--dataset", "emoji", "--limit", "11",
           "--cache-dir", str(data_cache), "--quiet", "--engine", "local", "--batch-size", "4",
           "--shard-rows", "9", "--out", str(out)]
    assert main(cmd) == 0
    _assert_equals_sequential(out, seq)
    others = [k for k in range(json.loads((out / "manifest.json").read_text())["n_shards"]) if k != 1]
    keep = [p.stat().st_mtime_ns for k in others for p in shard_paths(out, k)]
    shard_paths(out, 1)[1].unlink()  # a shard interrupted between its files
    assert main(cmd) == 0
    assert [p.stat().st_mtime_ns for k in others for p in shard_paths(out, k)] == keep
    _assert_equals_sequential(out, seq)
    capsys.readouterr()
    with open(out / LOCK_FILE, "a+") as f:  # another running job holds the folder
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(cmd) == 2
        assert "in use by another gapkit run" in _one_error_line(capsys)
    assert main([*cmd[:-2], "--seed", "1", "--out", str(out)]) == 2  # other weights: not this job's folder
    assert "another embedding job" in _one_error_line(capsys)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    assert main([*cmd[:-1], str(tmp_path / "mine")]) == 2
    assert "refusing to replace" in _one_error_line(capsys)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _stop_group(proc):
    """Stop one `ray start --block` node: SIGTERM to its process group (only the processes this test
    started), SIGKILL if it is still there after 30 s."""
    import signal

    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.slow  # starts a real two-node Ray cluster on this machine (~3 min on 2 loaded cores)
def test_two_node_cluster_embed(tmp_path, tiny_cfg):
    """`ray start --head` + a second `ray start --address` on other ports (one CPU each), then
    `gapkit embed --engine ray --address`: both nodes did work (the manifest names the nodes that ran
    decode tasks or the encoder actor); both nodes are always stopped, by their process groups."""
    import time

    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    head, *ports = _free_ports(7)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), RAY_AUTH_MODE="disabled")  # a private test cluster
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    nodes = []
    try:
        nodes.append(subprocess.Popen([ray_bin, "start", "--head", "--port", str(head), "--include-dashboard",
                                       "false", *common], env=env, start_new_session=True,
                                      stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.time() + 180
        while True:  # wait for the head's GCS port
            try:
                socket.create_connection(("127.0.0.1", head), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline and nodes[0].poll() is None, (tmp_path / "head.log").read_text()[-2000:]
                time.sleep(1)
        flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
        other_ports = [x for f, port in zip(flags, ports) for x in (f, str(port))]  # the head took the defaults
        nodes.append(subprocess.Popen([ray_bin, "start", "--address", f"127.0.0.1:{head}", *other_ports, *common],
                                      env=env, start_new_session=True,
                                      stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT))
        out = tmp_path / "shards"
        cmd = [sys.executable, "-m", "gapkit", "embed", "--encoder", f"open_clip:{tiny_cfg}", "--dataset", "emoji",
               "--limit", "11", "--cache-dir", str(tmp_path / "c"), "--quiet", "--engine", "ray", "--address",
               f"127.0.0.1:{head}", "--batch-size", "2", "--shard-rows", "6", "--out", str(out)]
        deadline = time.time() + 180
        while "Ray runtime started" not in (tmp_path / "worker.log").read_text():  # the second node joined
            assert time.time() < deadline and nodes[1].poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(1)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        man = json.loads((out / "manifest.json").read_text())
        assert len(man["nodes"]) == 2, man["nodes"]
        assert man["n_rows"] == _concat(out)[1].shape[0]
    finally:
        for proc in reversed(nodes):
            _stop_group(proc)
        # `ray start --head` wrote our address here (a later ray.init() would try to join the dead head);
        # `ray stop` would remove it, but it stops every Ray process on the machine, not only ours.
        marker = "/tmp/ray/ray_current_cluster"
        try:
            with open(marker) as f:
                ours = f.read().strip().endswith(f":{head}")
            if ours:
                os.unlink(marker)
        except OSError:
            pass
