"""The demo's second speed pass, part by part: the old way and gapkit's, side by side in one process.

1. Cosine-mean bootstrap CIs of 500 CLIP pairs (1,000 resamples): re-running cosine_summary on
   copied resamples (bootstrap_ci, the old path) vs per-image sums under resample weights
   (cosine_bootstrap).
2. FAISS HNSW insertion of 1,300 x 256 rows on two OpenMP threads vs one (the backend's choice
   below HNSW_SERIAL_MAX).
3. A calibrated fit on 1,779 images / 3,972 captions (256-d): unit rows gathered and normalised
   per sampled block (UNIT_COPY_MAX = 0, the old path) vs once per fit.
Medians of --repeats, printed with the ratio old / new.

    PYTHONPATH=src python benchmarks/bench_demo_parts.py [--repeats 5]
"""
from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
from _timing import median_seconds


def show(name: str, old: float, new: float) -> None:
    print(f"{name:44s} old {old * 1e3:9.1f} ms   new {new * 1e3:9.1f} ms   ratio {old / new:6.1f}x", flush=True)


def cosine_ci(repeats: int) -> None:
    from gapkit.metrics._prep import prepare
    from gapkit.metrics.bootstrap import bootstrap_ci, cosine_bootstrap
    from gapkit.metrics.cosines import cosine_summary
    from gapkit.samples import load_sample

    pe = load_sample("clip")
    p = prepare(pe.image, pe.text, pe.text_to_image)
    old = median_seconds(lambda: bootstrap_ci(lambda q: cosine_summary(q), p, 1000, 0), max(1, repeats // 2))
    new = median_seconds(lambda: cosine_bootstrap(p, 1000, 0), repeats)
    show("1. cosine-mean CIs, 500 pairs, B = 1000", old, new)


def hnsw(repeats: int) -> None:
    import faiss

    x = np.random.default_rng(0).standard_normal((1300, 256)).astype(np.float32)

    def build(threads: int) -> Callable[[], object]:
        def run() -> object:
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(threads)
            try:
                index = faiss.IndexHNSWFlat(256, 32, faiss.METRIC_INNER_PRODUCT)
                index.add(x)
            finally:
                faiss.omp_set_num_threads(before)
            return index
        return run

    show("2. FAISS HNSW insertion, 1,300 x 256", median_seconds(build(2), repeats), median_seconds(build(1), repeats))


def calibrated(repeats: int) -> None:
    from gapkit.fixers import calibrate, create_fixer

    rng = np.random.default_rng(0)
    img = rng.standard_normal((1779, 256)).astype(np.float32)
    txt = rng.standard_normal((3972, 256)).astype(np.float32)
    m = np.concatenate([np.arange(1779), rng.integers(0, 1779, 3972 - 1779)])
    keep = calibrate.UNIT_COPY_MAX

    def fit(cap: int) -> Callable[[], object]:
        def run() -> object:
            calibrate.UNIT_COPY_MAX = cap
            try:
                return create_fixer("calibrated").fit(img, txt, m)
            finally:
                calibrate.UNIT_COPY_MAX = keep
        return run

    show("3. calibrated fit, 1,779 / 3,972 rows", median_seconds(fit(0), repeats), median_seconds(fit(keep), repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cosine_ci(args.repeats)
    hnsw(args.repeats)
    calibrated(args.repeats)


if __name__ == "__main__":
    main()
