"""The Ray engine against the single-process paths, side by side in one process.

    python benchmarks/bench_ray.py            # 16 shards x 10k x 512 (float16), emoji 48 images
    python benchmarks/bench_ray.py --full     # 16 shards x 128k x 512 = 2.05M pairs (~4 GB of /tmp)
    python benchmarks/bench_ray.py --full --skip-embed --shards-dir /tmp/shards2m   # keep the shards for reruns

1. `measure` over 16 memory-mapped clip-retrieval shards: the single-process streaming pass
   (`measure_stream(folder)`) vs one Ray task per shard merged in a tree (`engine="ray"`) on a
   local Ray instance with 2 CPUs, run with at most 1 and at most 2 shard tasks in flight. A Ray
   worker is one CPU with one thread, so the overhead baseline is the single process limited to one
   thread (threadpoolctl); the all-threads single pass is printed once for reference. Timed: the
   pass over the shards (accumulators, merges), i.e. what the engine distributes; the final
   compute() on the merged state is identical driver-side work and is timed once. Each repeat runs
   the three back to back (same machine load); ratios are medians of the per-repeat ratios; Ray
   start-up and the workers' imports (a two-shard warm-up) are not counted. Targets (issue 13): Ray
   with 1 worker <= 1.2x the single process; 2 workers >= 1.6x the throughput of 1 worker (needs
   two idle cores).
2. `embed` with the built-in towers (towers:random) on an emoji subset: the sequential `extract`
   vs `embed_to_shards(engine="ray")` with 2 encoder actors. Wall time of the whole call (Ray
   Data start-up and the actors' model loads included: that is what a user waits for), and the
   encode-only throughput of the sequential path for the cost model in docs/scale.md.
Every number is printed with the machine load (os.getloadavg) beside it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))



def write_shards(root: Path, n_shards: int, rows: int, dim: int = 512, seed: int = 0) -> None:
    """A clip-retrieval folder of gapped float16 pairs, written shard by shard (bounded memory)."""
    r = np.random.default_rng(seed)
    a, b = r.standard_normal(dim) * 0.08, r.standard_normal(dim) * 0.08
    for sub in ("img_emb", "text_emb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k in range(n_shards):
        z = r.standard_normal((rows, dim), dtype=np.float32) / np.sqrt(dim)
        np.save(root / "img_emb" / f"img_emb_{k}.npy", (z + a).astype(np.float16))
        np.save(root / "text_emb" / f"text_emb_{k}.npy",
                (z + b + 0.5 * r.standard_normal((rows, dim), dtype=np.float32) / np.sqrt(dim)).astype(np.float16))


def load() -> str:
    return "load %.1f/%.1f/%.1f on %d cores" % (*os.getloadavg(), os.cpu_count() or 0)


def single_pass(root: Path, reservoir: int, threads: int | None = None) -> object:
    """The single-process streaming pass of measure_stream (accumulation only), with the BLAS/OpenMP
    pools limited to `threads` (None: as configured)."""
    from threadpoolctl import threadpool_limits

    from gapkit.metrics.streaming import StreamAccumulator, iter_chunks

    with threadpool_limits(limits=threads):
        acc = StreamAccumulator(reservoir, 0)
        for a, b in iter_chunks(root):
            acc.update(a, b)
    return acc


def engine_pass(root: Path, reservoir: int, engine: object, first: int | None = None) -> object:
    """measure_shards' pass: one task per shard (the first `first` shards only, when given),
    accumulators merged in a tree (accumulation only)."""
    from gapkit.metrics.streaming import ShardJob, merge_accumulators, shard_accumulator
    from gapkit.shards import list_shards

    jobs = [ShardJob(s, reservoir, 0) for s in list_shards(root)[:first]]
    return engine.map_reduce(shard_accumulator, jobs, merge_accumulators)


def bench_measure(root: Path, n_rows: int, repeats: int, reservoir: int = 2000) -> None:
    """Times the pass that reads every shard (what the engine distributes); `compute()` on the merged
    state is the same driver-side work for every engine and is timed once.

    One local Ray instance with 2 CPUs; "1 worker" = the same engine with at most one shard task in
    flight (max_in_flight=1). A Ray worker runs with one thread (Ray sets OMP_NUM_THREADS=1 for a
    1-CPU task), so the engine-overhead baseline is the single process on one thread too; the
    single process on all its threads is timed once more for reference. Each repeat runs single
    process, Ray 1 worker and Ray 2 workers back to back, so the three see the same machine load;
    the ratios are medians of the per-repeat ratios."""
    import ray

    from gapkit.engines.ray_engine import RayEngine

    print(f"\n== measure over {len(list(root.glob('img_emb/*.npy')))} shards, {n_rows:,} x 512 float16 pairs ({load()})")
    t = time.perf_counter()
    single_pass(root, reservoir).compute()
    print(f"  (one pass + compute() on the merged state: {time.perf_counter() - t:.2f} s; also the page-cache warm-up)",
          flush=True)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    print(f"  ray.init: {time.perf_counter() - t0:.1f} s (not counted)")
    engines = {1: RayEngine(max_in_flight=1), 2: RayEngine()}
    runs = {"single": lambda: single_pass(root, reservoir, threads=1),
            "ray1": lambda: engine_pass(root, reservoir, engines[1]),
            "ray2": lambda: engine_pass(root, reservoir, engines[2])}
    try:
        for eng in engines.values():  # warm-up: worker processes and their imports (two shards)
            engine_pass(root, reservoir, eng, first=2)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(repeats):
            for name, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
            print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()) + f"  ({load()})",
                  flush=True)
    finally:
        ray.shutdown()
    t = time.perf_counter()
    single_pass(root, reservoir)
    all_threads = time.perf_counter() - t
    med = {k: statistics.median(v) for k, v in times.items()}
    over = statistics.median(a / b for a, b in zip(times["ray1"], times["single"]))
    speed = statistics.median(a / b for a, b in zip(times["ray1"], times["ray2"]))
    print(f"  single process, 1 thread      : {med['single']:7.2f} s  ({n_rows / med['single']:,.0f} pairs/s)")
    print(f"  single process, all threads   : {all_threads:7.2f} s  (once, for reference; {load()})")
    print(f"  Ray, 1 worker                 : {med['ray1']:7.2f} s  ({n_rows / med['ray1']:,.0f} pairs/s)")
    print(f"  Ray, 2 workers                : {med['ray2']:7.2f} s  ({n_rows / med['ray2']:,.0f} pairs/s)")
    print(f"  Ray 1 worker / single process : {over:5.2f}x time   (target <= 1.2x; median of per-repeat ratios)")
    print(f"  Ray 2 workers vs 1 worker     : {speed:5.2f}x throughput (target >= 1.6x; needs two idle cores; {load()})")


def bench_embed(n_images: int, tmp: Path) -> None:
    import ray

    from gapkit.commands.embed import EncoderMaker
    from gapkit.data import load_dataset
    from gapkit.encoders import extract
    from gapkit.encoders.sharded_extraction import embed_to_shards

    ds = load_dataset("emoji", "test", seed=0, limit=n_images)
    make = EncoderMaker("towers:random", None, 0)
    print(f"\n== embed: towers:random on {ds.n_images} emoji images, {len(ds.captions)} captions ({load()})")
    enc = make("cpu")
    t = time.perf_counter()
    seq = extract(enc, ds, batch_size=16, use_cache=False, progress=False)
    t_seq = time.perf_counter() - t
    pairs = len(ds.captions)
    print(f"  sequential extract            : {t_seq:7.2f} s  ({ds.n_images / t_seq:.1f} images/s + captions; "
          "model already loaded)")
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        t = time.perf_counter()
        embed_to_shards(make, ds, tmp / "emb", engine="ray", batch_size=16, shard_rows=64, actors=2, progress=False)
        t_ray = time.perf_counter() - t
    finally:
        ray.shutdown()
    print(f"  Ray Data, 2 encoder actors    : {t_ray:7.2f} s  ({pairs / t_ray:.1f} pairs/s; actor start-up and two "
          "model loads included)")
    print(f"  Ray / sequential              : {t_ray / t_seq:5.2f}x time ({load()})")
    from gapkit.shards import list_shards, read_shard

    x = np.concatenate([read_shard(s)[0] for s in list_shards(tmp / "emb")])
    print(f"  max |ray - sequential| image rows: {np.abs(x - seq.image[seq.text_to_image]).max():.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="16 x 128k x 512 pairs (>= 2M)")
    ap.add_argument("--rows", type=int, default=None, help="rows per shard (default 10k, --full 128k)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embed-images", type=int, default=48)
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-measure", action="store_true")
    ap.add_argument("--shards-dir", metavar="DIR", help="keep the measure shards here and reuse them on the next run "
                    "(default: a temporary folder, deleted at the end)")
    args = ap.parse_args()
    rows = args.rows or (128_000 if args.full else 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="gapkit-bench-ray-"))
    shards = Path(args.shards_dir) if args.shards_dir else tmp / "shards"
    try:
        if not args.skip_measure:
            if not (shards / "text_emb" / "text_emb_15.npy").exists():
                t = time.perf_counter()
                write_shards(shards, 16, rows)
                print(f"wrote 16 shards x {rows:,} rows in {time.perf_counter() - t:.1f} s")
            n = sum(np.load(f, mmap_mode="r").shape[0] for f in (shards / "img_emb").glob("*.npy"))
            bench_measure(shards, n, args.repeats)
        if not args.skip_embed:
            bench_embed(args.embed_images, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
