"""What the synthetic CLIP geometry costs an ANN index: FAISS IVF / HNSW vs exact NumPy, side by side.

One partition of --rows captions from gapkit.search.synthetic (the bundled CLIP ViT-B/16 geometry;
--generator gaussian: one Gaussian plus isotropic noise, the hard case; bootstrap: a smoothed
bootstrap of the real pairs, clustered like real embeddings), --queries held-out captions asked
one at a time. For each index
and query-time setting: recall@10 against the exact top 10, the p50 latency, and the ratio of the
exact NumPy brute force's p50 to it. The table in docs/search.md ("What the synthetic geometry
costs an ANN index") was measured with the defaults (100k rows; the HNSW builds take minutes).

    python benchmarks/bench_ann_geometry.py                   # 100k rows (~15 min on 2 cores)
    python benchmarks/bench_ann_geometry.py --rows 20000      # quick look (~1 min)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gapkit.search.backends.faiss_backend import rerank_exact  # noqa: E402
from gapkit.search.synthetic import GappedGenerator  # noqa: E402


def timed_search(search, q: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Single queries: (top-10 rows per query, p50 ms)."""
    got, ms = [], []
    for i in range(q.shape[0]):
        t = time.perf_counter()
        got.append(search(q[i:i + 1]))
        ms.append((time.perf_counter() - t) * 1000)
    return got, statistics.median(ms)


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--generator", choices=("gaussian", "bootstrap"), default="gaussian")
    ap.add_argument("--only", help="comma-separated index names to build (default: all)")
    args = ap.parse_args()
    docs = GappedGenerator(seed=3, kind=args.generator).pairs(args.rows, 1).text.astype(np.float32)  # unit rows
    q = GappedGenerator(seed=4, kind=args.generator).pairs(args.queries, 1).text.astype(np.float32)
    print(GappedGenerator(seed=3, kind=args.generator).describe())
    exact, exact_ms = timed_search(lambda v: np.argsort(-(v @ docs.T)[0])[:10], q)
    want = [set(e.tolist()) for e in exact]
    print(f"{args.rows:,} x {docs.shape[1]} captions, {args.queries} single queries; exact NumPy p50 "
          f"{exact_ms:.2f} ms (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

    def recall(got: list[np.ndarray]) -> float:
        return float(np.mean([len(set(g[0].tolist()) & w) / 10 for g, w in zip(got, want)]))

    nlist = max(1, int(4 * np.sqrt(args.rows)))
    builds = {
        f"IVF-Flat, {nlist} cells": (lambda: faiss.IndexIVFFlat(faiss.IndexFlatIP(512), 512, nlist,
                                                                faiss.METRIC_INNER_PRODUCT), "nprobe", (16, 32, 64)),
        "HNSW32": (lambda: faiss.IndexHNSWFlat(512, 32, faiss.METRIC_INNER_PRODUCT), "ef", (64, 128, 256)),
        "HNSW32 + SQ8": (lambda: faiss.IndexHNSWSQ(512, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT),
                         "ef", (64, 128, 256)),
        f"IVF-SQ8, {nlist} cells, re-rank 4k": (lambda: faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(512), 512, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT),
            "nprobe", (16, 32, 64, 128)),
    }
    only = None if not args.only else [w.strip() for w in args.only.split(",")]
    for name, (make, knob, values) in builds.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        index = make()
        if knob == "ef":
            index.hnsw.efConstruction = 80
        t = time.perf_counter()
        if not index.is_trained:
            index.train(docs[: min(args.rows, 39 * nlist if knob == "nprobe" else 50_000)])
        index.add(docs)
        print(f"{name}: build {time.perf_counter() - t:.0f} s", flush=True)
        for v in values:
            if knob == "ef":
                index.hnsw.efSearch = v
            else:
                index.nprobe = v
            if "re-rank" in name:  # the gapkit FAISS backend's ivfsq: top 40 by SQ8 codes, exact top 10
                got, ms = timed_search(lambda x: rerank_exact(docs, x, index.search(x, 40)[1], 10)[1], q)
            else:
                got, ms = timed_search(lambda x: index.search(x, 10)[1], q)
            print(f"  {knob} {v:4d}: recall@10 {recall(got):.3f}, p50 {ms:6.2f} ms, "
                  f"exact / ANN {exact_ms / ms:5.1f}x", flush=True)


if __name__ == "__main__":
    main()
