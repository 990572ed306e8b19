"""Embedding extraction: gapkit's pipeline vs a bare model loop, and the cache.

1. Overhead. Baseline: the images are decoded and preprocessed beforehand (not timed); a bare
   loop calls encode_image on batches of the pre-loaded tensors and encode_text on caption
   batches. gapkit: `extract(..., use_cache=False)` from the dataset, i.e. decoding,
   preprocessing (DataLoader), batching, progress and bookkeeping included.
   Target: overhead = t_gapkit / t_bare - 1 <= 15 %.
2. Cache. The first `extract` on a fresh cache directory vs an identical second call (same
   encoder object; the weights hash is memoised). Target: >= 20x faster. The CLI path
   (`extract_by_spec`, which skips building the model on a hit) is timed as well.
3. Whole processes (what a user waits for). `gapkit embed` as a subprocess on a fresh cache
   directory (the model is built and run), then the identical command again (a cache hit, which
   imports neither torch nor the model library: gapkit.encoders.cache). Both for a paired dataset
   and for --texts (one side). Target: the cached process >= 20x faster than the first.

Medians of repeats, both arms in one process. Model: open_clip ViT-B-32 (random init, the cost
of a real CLIP) on emoji images and their captions.

    PYTHONPATH=src python benchmarks/bench_embed.py [--n 96] [--repeats 3] [--arch ViT-B-32] [--threads 2]
    PYTHONPATH=src python benchmarks/bench_embed.py --only process --n 32    # part 3 alone
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96, help="images (their captions come along)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("inprocess", "process"), help="run one part (default: all)")
    ap.add_argument("--process-jobs", default="paired,texts", help="part 3: paired and/or texts (default both)")
    args = ap.parse_args()
    if args.only != "process":
        in_process(args)
    if args.only != "inprocess":
        whole_process(args)


def whole_process(args: argparse.Namespace) -> None:
    """Part 3: `gapkit embed` uncached vs cached, each a fresh interpreter; medians of --repeats."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_study import timed as _timed  # one subprocess timer for the whole-process benchmarks
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    jobs = {"paired dataset": ["--dataset", "emoji", "--split", "all", "--limit", str(args.n)]}
    with tempfile.TemporaryDirectory() as tmp:
        q = Path(tmp) / "queries.txt"
        q.write_text("".join(f"query number {k}: a small picture of a thing\n" for k in range(args.n)))
        jobs["--texts (one side)"] = ["--texts", str(q)]
        wanted = args.process_jobs.split(",")
        jobs = {k: v for k, v in jobs.items() if ("texts" if "texts" in k else "paired") in wanted}
        print(f"\nwhole process: gapkit embed --encoder open_clip:{args.arch}, {args.repeats} repeats, "
              f"load average {os.getloadavg()[0]:.1f}")
        for name, job in jobs.items():
            first, second = [], []
            for r in range(args.repeats):
                cache = Path(tmp) / f"cache-{name[:4]}-{r}"
                base = [sys.executable, "-m", "gapkit", "embed", "--encoder", f"open_clip:{args.arch}", *job,
                        "--cache-dir", str(cache), "--batch-size", str(args.batch_size), "--quiet"]
                dt, _ = _timed([*base, "--out", str(Path(tmp) / f"o1-{r}")], env)
                first.append(dt)
                dt, log = _timed([*base, "--out", str(Path(tmp) / f"o2-{r}")], env)
                if "from cache" not in log:
                    raise SystemExit(f"the repeat was not a cache hit: {log[-400:]}")
                second.append(dt)
            f, s = statistics.median(first), statistics.median(second)
            print(f"{name:>20}: first (model) median {f:.2f} s {sorted(round(x, 2) for x in first)}   "
                  f"cached median {s:.2f} s {sorted(round(x, 2) for x in second)}   -> {f / s:.1f}x (target >= 20x)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


def in_process(args: argparse.Namespace) -> None:
    """Parts 1 and 2 (one process, one encoder object)."""
    import torch

    from gapkit.data import load_dataset
    from gapkit.encoders import get_encoder
    from gapkit.encoders.extraction import extract, extract_by_spec

    torch.set_num_threads(args.threads)
    ds = load_dataset("emoji", "all", limit=args.n)
    enc = get_encoder(f"open_clip:{args.arch}", seed=0)
    bs = args.batch_size
    pre = torch.stack([enc.preprocess(ds.image(i)) for i in range(ds.n_images)])  # pre-loaded, untimed

    def bare() -> None:
        with torch.inference_mode():
            for s in range(0, len(pre), bs):
                enc.encode_image(pre[s:s + bs])
            for s in range(0, len(ds.captions), bs):
                enc.encode_text(ds.captions[s:s + bs])

    def pipeline() -> None:
        extract(enc, ds, batch_size=bs, num_workers=args.workers, use_cache=False, progress=False)

    bare()  # warm-up (allocator, threads)
    t_bare, t_pipe = [], []
    for _ in range(args.repeats):  # interleaved so machine load hits both arms alike
        for fn, acc in ((bare, t_bare), (pipeline, t_pipe)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    mb, mp = statistics.median(t_bare), statistics.median(t_pipe)
    print(f"{args.arch}, {ds.n_images} images + {len(ds.captions)} captions, batch {bs}, {args.threads} threads")
    print(f"bare loop on pre-loaded tensors: median {mb:.2f} s   gapkit extract: median {mp:.2f} s")
    print(f"pipeline overhead: {100 * (mp / mb - 1):+.1f} %  (target <= 15 %)")

    t_first, t_second, t_cli = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            extract(enc, ds, batch_size=bs, num_workers=args.workers, cache_dir=cache, progress=False)
            t_first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            extract(enc, ds, batch_size=bs, num_workers=args.workers, cache_dir=cache, progress=False)
            t_second.append(time.perf_counter() - t0)
            spec = {"encoder": f"open_clip:{args.arch}", "seed": 0}
            extract_by_spec(lambda: enc, spec, ds, cache_dir=cache, progress=False)  # records the alias
            t0 = time.perf_counter()
            extract_by_spec(lambda: enc, spec, ds, cache_dir=cache, progress=False)
            t_cli.append(time.perf_counter() - t0)
    f, s, c = (statistics.median(t) for t in (t_first, t_second, t_cli))
    print(f"first extract (cold cache): median {f:.2f} s   second (cache hit): median {s * 1000:.1f} ms "
          f"-> {f / s:.0f}x faster (target >= 20x)")
    print(f"CLI-level hit (no model needed): median {c * 1000:.1f} ms -> {f / c:.0f}x faster")


if __name__ == "__main__":
    main()
