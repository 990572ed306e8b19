"""UMAP figures with numba's on-disk cache switched on for umap-learn / pynndescent, vs without.

umap-learn and pynndescent compile most of their numba functions without `cache=True`, so every
process pays the compilation before its first fit. `gapkit.report.figures.embedding.umap_2d`
switches numba's on-disk cache on for them (`_cache_compiled`). Each timing below is one fresh
process fitting UMAP on the same (1,100 x 512) rows, all with one fresh NUMBA_CACHE_DIR (so any
cache files already beside the installed packages are not used):

    baseline   umap.UMAP(...).fit_transform in a process that does not switch caching on (what
               every process paid before): after one untimed run, which fills the cache of the
               functions umap-learn itself marks cache=True, each run still compiles the rest
    cold       umap_2d in the first process: compiles and writes the cache
    warm       umap_2d in a later process: loads the cached machine code
The ratio baseline / warm is what a demo or report run saves once the cache exists.

    PYTHONPATH=src python benchmarks/bench_umap_cache.py [--rows 1100] [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

_CHILD = """
import sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
x = np.random.default_rng(0).standard_normal(({rows}, 512)).astype(np.float32)
t = time.perf_counter()
if sys.argv[1] == "baseline":
    import umap
    umap.UMAP(n_components=2, n_neighbors=15, metric="cosine", random_state=0).fit_transform(x)
else:
    from gapkit.report.figures.embedding import umap_2d
    umap_2d(x, seed=0)
print(time.perf_counter() - t)
"""


def child_seconds(kind: str, rows: int, cache_dir: str) -> float:
    """Seconds one fresh process spends importing umap and fitting (kind: baseline | gapkit)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", _CHILD.format(rows=rows), kind], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1100)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as base_dir, tempfile.TemporaryDirectory() as gk_dir:
        cold = child_seconds("gapkit", args.rows, gk_dir)
        child_seconds("baseline", args.rows, base_dir)  # umap-learn's own cache=True functions
        base, warm = [], []
        for _ in range(args.repeats):  # interleaved: a change of machine load hits both alike
            base.append(child_seconds("baseline", args.rows, base_dir))
            warm.append(child_seconds("gapkit", args.rows, gk_dir))
    b, w = statistics.median(base), statistics.median(warm)
    print(f"UMAP fit of {args.rows} x 512 rows in a fresh process (medians of {args.repeats}; "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"  baseline (no on-disk cache): {b:7.1f} s   {[round(v, 1) for v in base]}")
    print(f"  gapkit, first process      : {cold:7.1f} s   (compiles, writes the cache)")
    print(f"  gapkit, later process      : {w:7.1f} s   {[round(v, 1) for v in warm]}")
    print(f"  ratio baseline / later     : {b / w:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
