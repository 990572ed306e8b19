"""Streaming fixers over a large memory-mapped matrix: peak RSS and throughput vs one numpy pass.

Target: applying any fixer to 10M x 512 memory-mapped rows keeps peak RSS under 1.5 GB.

    python benchmarks/bench_fixers.py                      # 10M x 512, all fixers (~1 h on 2 cores)
    python benchmarks/bench_fixers.py --rows 1000000 --dtype float32 --fixers center,shift

Storage: 10M x 512 float32 is 20 GB in + 20 GB out. When the disk cannot hold that with a safety
margin (checked with shutil.disk_usage), the script stores float16 (10 GB + 10 GB) and upcasts
per chunk (the fixers compute in float64 either way); it says which it used.

Both sides run in a fresh forked child each (os.fork + os.wait4), so each peak RSS (ru_maxrss)
belongs to one pass only:
  baseline: one plain numpy pass over the same memory map: out[s:e] = x[s:e] / ||row||, chunked
            (the least any streaming fixer must do: read, normalise, write).
  gapkit:   fixer.transform(x, "image", out=out_memmap), fitted beforehand on 100k rows.
Ratio = gapkit seconds / baseline seconds (median of --repeats). The baseline does not drop the
pages it touched, so its RSS shows what a naive memory-mapped pass costs.
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

from gapkit.fixers import available_fixers, create_fixer  # noqa: E402
from gapkit.fixers._stream import DEFAULT_CHUNK  # noqa: E402

GB = 1024**3
RSS_LIMIT_GB = 1.5


def make_input(path: Path, rows: int, dim: int, dtype: np.dtype, gap: float = 0.8) -> None:
    """Write an (rows, dim) .npy of unit-ish rows with a gap direction, block by block (a random
    64k-row block reused with a different row shift each time: data content does not matter for
    throughput, only that rows are non-zero and finite)."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((65_536, dim)).astype(np.float32)
    block[:, 0] += gap
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, dim))
    for i, s in enumerate(range(0, rows, block.shape[0])):
        e = min(s + block.shape[0], rows)
        out[s:e] = np.roll(block, i, axis=0)[: e - s]
    out.flush()
    del out


def baseline_pass(src: Path, dst: Path, chunk: int) -> None:
    x = np.load(src, mmap_mode="r")
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=x.dtype, shape=x.shape)
    for s in range(0, x.shape[0], chunk):
        block = np.asarray(x[s:s + chunk], dtype=np.float64)
        out[s:s + chunk] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()


def gapkit_pass(fixer, src: Path, dst: Path, chunk: int) -> None:
    x = np.load(src, mmap_mode="r")
    out = np.lib.format.open_memmap(dst, mode="w+", dtype=x.dtype, shape=x.shape)
    fixer.transform(x, "image", out=out, chunk_size=chunk)
    out.flush()


def in_child(fn, *args) -> tuple[float, float]:
    """Run fn(*args) in a forked child; return (seconds, peak RSS in GB) of that child alone."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            fn(*args)
        except BaseException as exc:  # report and exit non-zero, never return into the parent's code
            print(f"child failed: {exc!r}", file=sys.stderr)
            code = 1
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{getattr(fn, '__name__', fn)} failed in the child process")
    return seconds, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dtype", choices=("auto", "float16", "float32"), default="auto")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the big files go (deleted after)")
    ap.add_argument("--fixers", default=",".join(n for n in available_fixers() if n != "calibrated"),
                    help="comma-separated fixer names (calibrated leaves embeddings unchanged)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    args = ap.parse_args()

    free = shutil.disk_usage(args.dir).free
    need32 = 2 * args.rows * args.dim * 4
    dtype = np.dtype(args.dtype if args.dtype != "auto" else ("float32" if need32 < 0.5 * free else "float16"))
    need = 2 * args.rows * args.dim * dtype.itemsize
    print(f"disk free in {args.dir}: {free / GB:.1f} GB; input + output at {dtype}: {need / GB:.1f} GB")
    if need > 0.8 * free:
        raise SystemExit("not enough disk space: use --rows to shrink the run")
    work = Path(tempfile.mkdtemp(prefix="gapkit-bench-", dir=args.dir))
    try:
        src, dst = work / "x.npy", work / "out.npy"
        t0 = time.perf_counter()
        make_input(src, args.rows, args.dim, dtype)
        print(f"wrote {args.rows:,} x {args.dim} {dtype} rows in {time.perf_counter() - t0:.0f} s "
              f"({src.stat().st_size / GB:.1f} GB)")
        x = np.load(src, mmap_mode="r")
        calib = np.asarray(x[:100_000], dtype=np.float32)
        text = calib[::-1].copy()
        text[:, 0] -= 1.0  # a second cloud, so the fixers have a gap to fit
        base = [in_child(baseline_pass, src, dst, args.chunk) for _ in range(args.repeats)]
        b_sec = statistics.median(s for s, _ in base)
        b_rss = max(r for _, r in base)
        print(f"\n{'pass':<22}{'seconds':>10}{'rows/s':>14}{'peak RSS GB':>13}{'ratio':>8}")
        print(f"{'numpy baseline':<22}{b_sec:>10.1f}{args.rows / b_sec:>14,.0f}{b_rss:>13.2f}{1.0:>8.2f}")
        worst = 0.0
        for name in [n for n in args.fixers.split(",") if n]:
            fx = create_fixer(name).fit(calib, text)
            runs = [in_child(gapkit_pass, fx, src, dst, args.chunk) for _ in range(args.repeats)]
            sec = statistics.median(s for s, _ in runs)
            rss = max(r for _, r in runs)
            worst = max(worst, rss)
            print(f"{'gapkit ' + name:<22}{sec:>10.1f}{args.rows / sec:>14,.0f}{rss:>13.2f}{sec / b_sec:>8.2f}")
        verdict = "PASS" if worst < RSS_LIMIT_GB else "FAIL"
        print(f"\nworst gapkit peak RSS {worst:.2f} GB (limit {RSS_LIMIT_GB} GB): {verdict}; "
              f"storage {dtype}, {args.rows:,} rows, median of {args.repeats} repeat(s)")
        return 0 if verdict == "PASS" else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
