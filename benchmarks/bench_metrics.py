"""Benchmarks of gapkit.metrics against the naive O(N^2) NumPy reference, side by side.

    python benchmarks/bench_metrics.py            # full sizes (needs ~4 GB RAM and ~10 GB of /tmp)
    python benchmarks/bench_metrics.py --quick    # small sizes, a smoke run

1. Cone means + RMG at N = 20k, D = 512: gapkit's ||sum u||^2 algebra vs the naive Gram-matrix
   reference; time = median of repeats, peak memory = tracemalloc peak (NumPy reports its array
   buffers to tracemalloc) of one run of each, in this process. Target: >= 20x faster, >= 50x less
   memory. The tiled cone minimum is shown too (same O(N^2 D) work as the naive path, bounded memory).
2. The default `measure` report on 100k x 512 float32 pairs (median of repeats). Target: < 20 s on
   2 cores. Then its wall time over N (2.5k ... 100k): the cost must grow smoothly with N (no cliff
   at the exact/sampled switch); target 20k x 512 < 8 s.
3. A streaming pass (`measure_stream`) over >= 5M x 512 pairs stored as memory-mapped .npy shards
   in a clip-retrieval directory, in a child process whose peak RSS (VmHWM) is read from /proc.
   Shards are float16 by default (10 GB instead of 20 GB of disk; chunks are upcast to float32).
   Target: peak RSS < 1.5 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gapkit.metrics import cone_cosine_min, geometry_metrics, measure  # noqa: E402


def gapped(n: int, d: int, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Paired clouds with a gap and a cone: x = norm(z + a), y = norm(z + b + noise)."""
    r = np.random.default_rng(seed)
    a, b = r.standard_normal(d) * 0.08, r.standard_normal(d) * 0.08
    z = r.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    x = z + a
    y = z + b + 0.5 * r.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(dtype), y.astype(dtype)


# ------------------------------------------------------------------------ naive references
def naive_cone_rmg(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The usual research-code way: full N x N similarity matrices, diagonal masked out."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    mask = ~np.eye(len(x), dtype=bool)
    sx = x @ x.T
    cone_x = float(sx[mask].mean())
    del sx
    sy = y @ y.T
    cone_y = float(sy[mask].mean())
    del sy
    m = (1 - float(np.einsum("ij,ij->i", x, y).mean())) / 2
    return {"image_cone_cosine_mean": cone_x, "text_cone_cosine_mean": cone_y,
            "rmg": m / (m + ((1 - cone_x) / 2 + (1 - cone_y) / 2) / 2)}


def naive_cone_min(x: np.ndarray) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    np.fill_diagonal(s, np.inf)
    return float(s.min())


# ------------------------------------------------------------------------ measuring helpers
def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def side_by_side(name: str, naive, fast, repeats: int) -> dict[str, float]:
    t_naive, ref = timed(naive, repeats)
    t_fast, got = timed(fast, repeats)
    m_naive, m_fast = peak_bytes(naive), peak_bytes(fast)
    print(f"{name}:\n  naive  {t_naive:8.3f} s  {m_naive / 2**20:10.1f} MiB peak\n"
          f"  gapkit {t_fast:8.3f} s  {m_fast / 2**20:10.1f} MiB peak\n"
          f"  -> {t_naive / t_fast:.1f}x faster, {m_naive / m_fast:.0f}x less peak memory")
    return {"naive_s": t_naive, "gapkit_s": t_fast, "naive_mib": m_naive / 2**20, "gapkit_mib": m_fast / 2**20,
            "speedup": t_naive / t_fast, "memory_ratio": m_naive / m_fast, "ref": ref, "got": got}


def bench_cone(n: int, d: int, repeats: int) -> dict:
    x, y = gapped(n, d)
    keys = ("image_cone_cosine_mean", "text_cone_cosine_mean", "rmg")
    r = side_by_side(f"cone means + RMG, N={n}, D={d}", lambda: naive_cone_rmg(x, y),
                     lambda: {k: geometry_metrics(x, y)[k] for k in keys}, repeats)
    for k in keys:
        assert abs(r["ref"][k] - r["got"][k]) < 1e-5, (k, r["ref"][k], r["got"][k])
    m = side_by_side(f"cone minimum (tiled), N={n}, D={d}", lambda: naive_cone_min(x), lambda: cone_cosine_min(x), 1)
    assert abs(m["ref"] - m["got"]) < 1e-5
    return {"cone_rmg": {k: v for k, v in r.items() if k not in ("ref", "got")},
            "cone_min": {k: v for k, v in m.items() if k not in ("ref", "got")}}


def bench_report(n: int, d: int, repeats: int) -> dict:
    x, y = gapped(n, d, seed=1)
    cpu0 = time.process_time()
    t, out = timed(lambda: measure(x, y), repeats)
    cpu = (time.process_time() - cpu0) / repeats
    print(f"default measure() report, {n} x {d} float32 pairs: median {t:.2f} s wall over {repeats} runs, "
          f"{cpu:.2f} s CPU per run summed over threads ({len(out)} keys; target < 20 s on 2 cores)")
    per_family = {}
    from gapkit.metrics.report import FAMILIES

    for fam in FAMILIES:
        per_family[fam], _ = timed(lambda f=fam: measure(x, y, metrics=[f]), 1)
    print("  per family: " + ", ".join(f"{k} {v:.2f} s" for k, v in per_family.items()))
    return {"seconds": t, "cpu_seconds": cpu, "per_family_s": per_family, "n_keys": len(out)}


def bench_scaling(sizes: tuple[int, ...], d: int) -> dict:
    """The default report's wall time over N (one run each), to show the cost grows smoothly with N
    (no cliff at the exact/sampled switch, gapkit.metrics._tiles.EXACT_LIMIT). Target: 20k < 8 s."""
    from gapkit.metrics._tiles import EXACT_LIMIT

    out = {}
    for n in sizes:
        x, y = gapped(n, d, seed=2)
        out[n], _ = timed(lambda: measure(x, y), 1)
    print(f"default measure() report vs N (D = {d}, exact up to {EXACT_LIMIT}): "
          + ", ".join(f"{n}: {t:.2f} s" for n, t in out.items()))
    ratios = [out[b] / out[a] for a, b in zip(sizes, sizes[1:])]
    print("  ratio of successive sizes: " + ", ".join(f"{r:.2f}" for r in ratios))
    # side by side at 20k: the old default (exact up to 20,000 rows) vs the current one
    x, y = gapped(20_000, d, seed=2)
    t_old, _ = timed(lambda: measure(x, y, exact_limit=20_000), 1)
    t_new, _ = timed(lambda: measure(x, y), 1)
    print(f"  20k x {d}: exact up to 20,000 (old default) {t_old:.2f} s, now {t_new:.2f} s: {t_old / t_new:.2f}x faster")
    return {"seconds_by_n": out, "old_default_20k_s": t_old, "new_default_20k_s": t_new}


_CHILD = """
import json, sys, time
from gapkit.metrics import measure_stream
t = time.perf_counter()
out = measure_stream(sys.argv[1], progress=True)
secs = time.perf_counter() - t
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(json.dumps({'seconds': secs, 'peak_rss_kib': int(hwm), 'centroid_distance': out['centroid_distance'],
                  'n': out['n_image']}))
"""


def write_shards(root: Path, rows: int, d: int, shard_rows: int, dtype) -> int:
    """A clip-retrieval directory of `rows` pairs. Drawing 5M x 512 normals twice would dominate
    the benchmark, so one pool of `shard_rows` gapped pairs is drawn and every shard holds it in a
    fresh random row order (the values do not change the cost of a streaming pass)."""
    from tqdm import tqdm

    for sub in ("img_emb", "text_emb"):
        (root / sub).mkdir(parents=True)
    x, y = gapped(shard_rows, d, seed=100)
    x, y = x.astype(dtype), y.astype(dtype)
    rng = np.random.default_rng(0)
    done = 0
    for k in tqdm(range((rows + shard_rows - 1) // shard_rows), desc="writing shards", unit="shard"):
        idx = rng.permutation(shard_rows)[: min(shard_rows, rows - done)]
        np.save(root / "img_emb" / f"img_emb_{k}.npy", x[idx])
        np.save(root / "text_emb" / f"text_emb_{k}.npy", y[idx])
        done += idx.size
    return sum(f.stat().st_size for f in root.rglob("*.npy"))


def bench_stream(rows: int, d: int, dtype: str, tmp: str | None) -> dict:
    need = rows * d * np.dtype(dtype).itemsize * 2
    base = Path(tmp or tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < need * 1.2:
        print(f"streaming: skipped, {need / 2**30:.1f} GiB needed but {free / 2**30:.1f} GiB free under {base}")
        return {"skipped": True}
    root = Path(tempfile.mkdtemp(prefix="gapkit_bench_stream_", dir=base))
    try:
        size = write_shards(root / "cr", rows, d, 250_000, np.dtype(dtype))
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
        r = subprocess.run([sys.executable, "-c", _CHILD, str(root / "cr")], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        res = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rss = res["peak_rss_kib"] / 2**20
    print(f"streaming pass over {rows:,} x {d} {dtype} pairs ({size / 2**30:.1f} GiB of memory-mapped shards): "
          f"{res['seconds']:.1f} s, peak RSS {rss:.2f} GiB (target < 1.5 GiB; data/RSS = {size / 2**30 / rss:.1f}x)")
    return {"rows": rows, "dtype": dtype, "data_gib": size / 2**30, "seconds": res["seconds"], "peak_rss_gib": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stream-rows", type=int, default=None, help="rows of the streaming pass (default 5M)")
    ap.add_argument("--stream-dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--only", default="cone,report,scaling,stream", help="comma-separated parts to run")
    ap.add_argument("--tmp", default=None, help="directory for the temporary shards")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args()
    n_cone, n_report, n_stream = (4_000, 20_000, 300_000) if a.quick else (20_000, 100_000, 5_000_000)
    results = {"cpu_count": os.cpu_count()}
    parts = a.only.split(",")
    if "cone" in parts:
        results.update(bench_cone(n_cone, 512, a.repeats))
    if "report" in parts:
        results["report"] = bench_report(n_report, 512, a.repeats)
    if "scaling" in parts:
        results["scaling"] = bench_scaling((2_500, 5_000, 5_001, 10_000, 20_000) if a.quick else
                                           (2_500, 5_000, 5_001, 10_000, 20_000, 40_000, 100_000), 512)
    if "stream" in parts:
        results["stream"] = bench_stream(a.stream_rows or n_stream, 512, a.stream_dtype, a.tmp)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
