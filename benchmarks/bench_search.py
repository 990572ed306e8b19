"""Mixed-modality search at scale: ANN backend vs exact NumPy brute force, side by side.

Targets (issue 10, 1M x 512 float32, 2 cores): single-query p50 <= 20 ms and p99 <= 60 ms with
recall@10 >= 0.95 against exact search; a calibrated query (top k per role + P(match) + merge)
<= 1.25x the raw ANN query; building streams from memory-mapped shards with peak RSS <= 2.5 GB.

    python benchmarks/bench_search.py                         # 1M documents (500k images + 500k texts)
    python benchmarks/bench_search.py --rows 20000 --queries 50 --backend faiss

Data: gapkit.search.synthetic (the bundled CLIP ViT-B/16 geometry resampled with noise: the real
gap, cone and pairing), --generator bootstrap (default: a smoothed bootstrap of the real pairs,
clustered like real embeddings; see bench_synthetic_geometry.py) or gaussian (one joint Gaussian,
the hard case for ANN), written as a clip-retrieval folder of 250k-row shards; calibration data
(2 captions per image, --fit) from another seed. Queries: held-out captions (text role) of
--query-seed; tune query-time parameters with another seed than the one you report.
Steps, all in one process except the build (a forked child, so its peak RSS = ru_maxrss of the
build alone):
  build      build_index(folder, correction="calibrated", fit=..., backend=...) streamed
  exact      NumPy brute force over the stored unit vectors (chunked matmul per role + merge):
             the baseline, and the ground truth for recall
  raw ANN    index.search_vectors(q, raw=True): per-role ANN top k + merge (raw cosine)
  calibrated index.search_vectors(q): per-role ANN top k + P(match) + merge
Latencies are per single query (p50 / p99 over --queries); ratios are medians side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gapkit.embeddings import save_embeddings  # noqa: E402
from gapkit.search import build_index, open_index  # noqa: E402
from gapkit.search.backends.base import merge_topk, topk_desc  # noqa: E402
from gapkit.search.synthetic import GappedGenerator  # noqa: E402

GB = 1024**3


def build_in_child(kw: dict) -> tuple[float, float]:
    """Run build_index(**kw) in a forked child; return (seconds, peak RSS GiB of the child)."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            build_index(**kw)
        except BaseException as exc:  # report and exit non-zero; never return into the parent's code
            print(f"build failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        os._exit(code)
    t0 = time.perf_counter()
    _, status, usage = os.wait4(pid, 0)
    secs = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the build failed (see above)")
    return secs, usage.ru_maxrss * 1024 / GB  # ru_maxrss is in KiB on Linux


def exact_topk(vectors: np.ndarray, offsets: dict, counts: dict, q: np.ndarray, k: int,
               transform=None, chunk: int = 131_072) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over every document: per role chunked q V^T (optionally mapped by
    transform(role, scores)), global top k. Returns (scores (k,), rows (k,))."""
    parts = []
    for role, n in counts.items():
        if not n:
            continue
        for s in range(0, n, chunk):
            v = np.asarray(vectors[offsets[role] + s: offsets[role] + min(s + chunk, n)])
            sc = (v @ q).astype(np.float64)[None, :]
            if transform is not None:
                sc = transform(role, sc)
            ts, ti = topk_desc(sc, k)
            parts.append((ts, np.where(ti >= 0, ti + offsets[role] + s, -1)))
    s, rows = merge_topk(parts, k)
    return s[0], rows[0]


def timed(fn, qs) -> tuple[list[float], list]:
    lat, out = [], []
    for q in qs:
        t0 = time.perf_counter()
        out.append(fn(q))
        lat.append((time.perf_counter() - t0) * 1000)
    return lat, out


def boot_ci(values: np.ndarray, stat, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % interval of stat(values) with the queries resampled."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, np.float64)
    draws = [stat(v[rng.integers(0, v.size, v.size)]) for _ in range(n_boot)]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def pct(x: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(x), p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="documents (half images, half texts)")
    ap.add_argument("--queries", type=int, default=200, help="single queries timed per method")
    ap.add_argument("--exact-queries", type=int, default=50, help="queries for the (slow) exact baseline and recall")
    ap.add_argument("--backend", default="lancedb")
    ap.add_argument("--generator", choices=("bootstrap", "gaussian"), default="bootstrap",
                    help="synthetic geometry: bootstrap (realistic, clustered) or gaussian (hard case)")
    ap.add_argument("--query-seed", type=int, default=123, help="seed of the held-out query captions")
    ap.add_argument("--backend-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--workdir", help="keep data and index here (default: a temporary directory)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--reuse-index", action="store_true", help="with --workdir: query the index built by an earlier run")
    ap.add_argument("--search-param", action="append", default=[], metavar="KEY=VALUE",
                    help="query-time backend option (lancedb: nprobes, refine_factor, ef; faiss: ef_search, nprobe, refine)")
    ap.add_argument("--sweep", action="append", default=[], metavar="K=V[,K=V...]",
                    help="one query-time setting per --sweep, timed one after another on the same index and queries")
    args = ap.parse_args()
    from gapkit.params import parse_key_values

    bparams = parse_key_values(args.backend_param, "--backend-param")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-search-"))
    work.mkdir(parents=True, exist_ok=True)
    n_pairs = args.rows // 2
    gen = GappedGenerator(seed=0, kind=args.generator)
    t0 = time.perf_counter()
    folder = work / f"data-{args.generator}"
    if not folder.exists():
        gen.write_clip_retrieval(folder, n_pairs)
    fit = work / f"fit-{args.generator}.npz"
    if not fit.exists():
        save_embeddings(GappedGenerator(seed=99, kind=args.generator).pairs(min(20_000, max(500, n_pairs // 10)), 2), fit)
    print(f"data: {2 * n_pairs} x {gen.dim} float32 in {time.perf_counter() - t0:.1f} s -> {folder}", flush=True)
    print(f"data: {gen.describe()}", flush=True)
    out = work / f"index-{args.backend}-{args.generator}"
    secs = rss = float("nan")
    if not (args.reuse_index and out.exists()):
        if out.exists():
            shutil.rmtree(out)
        secs, rss = build_in_child(dict(source=str(folder), out=out, roles=("image", "text"), correction="calibrated",
                                        fit=str(fit), backend=args.backend, backend_params=bparams))
        print(f"build: {secs:.1f} s, peak RSS {rss:.2f} GiB (target <= 2.5)", flush=True)
    idx = open_index(out)
    base = parse_key_values(args.search_param, "--search-param")
    settings = [{**base, **parse_key_values(sw.split(","), "--sweep")} for sw in args.sweep] or [base]
    qs = GappedGenerator(seed=args.query_seed, kind=args.generator).pairs(max(args.queries, args.exact_queries), 1).text
    qs = (qs / np.linalg.norm(qs, axis=1, keepdims=True)).astype(np.float32)
    k = args.k
    fx = idx.correction.fixer
    pair = {"image": "image-text", "text": "text-text"}
    counts = {r: c for r, c in idx.counts.items() if c}

    def calibrate(role, sc):
        return fx.probability(sc, pair[role])

    eq = qs[: args.exact_queries]
    lat_exact, exact_raw = timed(lambda q: exact_topk(idx.vectors, idx.offsets, counts, q, k), eq)
    exact_raw = [r for _, r in exact_raw]
    exact_cal = [exact_topk(idx.vectors, idx.offsets, counts, q, k, calibrate)[1] for q in eq]
    common = {
        "rows": 2 * n_pairs, "dim": gen.dim, "generator": gen.describe(), "query_seed": args.query_seed,
        "backend": args.backend, "kinds": idx.backends["raw"].meta().get("kinds"),
        "build_seconds": None if np.isnan(secs) else round(secs, 1),
        "build_peak_rss_gib": None if np.isnan(rss) else round(rss, 3),
        "exact_p50_ms": pct(lat_exact, 50), "exact_p99_ms": pct(lat_exact, 99), "cpus": os.cpu_count(),
    }
    print(f"exact NumPy     p50 {common['exact_p50_ms']:8.1f} ms  p99 {common['exact_p99_ms']:8.1f} ms   (baseline)")
    results = []
    for setting in settings:
        if setting:
            idx.backends["raw"].set_search_params(**setting)
        res = {**common, **query_row(idx, qs[: args.queries], k, counts, exact_raw, exact_cal, lat_exact),
               "search_params": setting, "backend_params": dict(idx.backends["raw"].params)}
        results.append(res)
        print(f"--- {setting or 'build-time parameters'}  (load average {res['load_average'][0]:.2f} on {res['cpus']} cpus)")
        print(f"raw ANN         p50 {res['raw_ann_p50_ms']:8.2f} ms  p99 {res['raw_ann_p99_ms']:8.2f} ms   "
              f"recall@10 {res['recall@10_raw']:.3f} [{res['recall@10_raw_ci95'][0]:.3f}, {res['recall@10_raw_ci95'][1]:.3f}]"
              f"   exact/ANN {res['exact_over_raw_p50']:.1f}x")
        print(f"calibrated ANN  p50 {res['calibrated_p50_ms']:8.2f} ms  p99 {res['calibrated_p99_ms']:8.2f} ms   "
              f"recall@10 {res['recall@10_calibrated']:.3f} [{res['recall@10_calibrated_ci95'][0]:.3f}, "
              f"{res['recall@10_calibrated_ci95'][1]:.3f}]   calibrated/raw {res['calibrated_over_raw_p50']:.2f}x "
              f"(paired median {res['calibrated_over_raw_paired']:.2f}x [{res['calibrated_over_raw_paired_ci95'][0]:.2f}, "
              f"{res['calibrated_over_raw_paired_ci95'][1]:.2f}]; target <= 1.25)")
        print(f"one partition   p50 {res['one_partition_ann_p50_ms']:8.2f} ms   (a single ANN call, role {res['one_partition_role']})",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results if args.sweep else results[0], indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


def query_row(idx, qs: np.ndarray, k: int, counts: dict, exact_raw: list, exact_cal: list, lat_exact: list) -> dict:
    """Time raw and calibrated single queries in pairs (the same query back to back, the order
    alternating, so neither cache warmth nor load drift favours one), one backend call, and
    recall@10 against exact."""
    for q in qs[:5]:  # warm caches of the ANN structures
        idx.search_vectors(q, "text", k=k, raw=True)
        idx.search_vectors(q, "text", k=k)
    lat_raw, lat_cal, ann_raw, ann_cal = [], [], [], []
    for i, q in enumerate(qs):
        # both read the same IVF cells and re-rank rows, and the second finds them cached: the
        # order alternates, so neither is always the one that pays for the first (disk) reads
        for raw in ((True, False) if i % 2 == 0 else (False, True)):
            (t,), (h,) = timed(lambda v: idx.search_vectors(v, "text", k=k, raw=raw)[0], [q])
            (lat_raw if raw else lat_cal).append(t)
            (ann_raw if raw else ann_cal).append(h)
    role = max(counts, key=counts.get)
    lat_one, _ = timed(lambda q: idx.backends["raw"].search(q[None], k, role), qs)

    def recall(ann, exact) -> np.ndarray:
        return np.array([len({idx.row_of(h.id) for h in a} & set(e.tolist())) / k for a, e in zip(ann, exact)])

    n = len(exact_raw)
    rec_raw, rec_cal = recall(ann_raw[:n], exact_raw), recall(ann_cal[:n], exact_cal)
    ratio = np.asarray(lat_cal) / np.asarray(lat_raw)
    return {
        "raw_ann_p50_ms": pct(lat_raw, 50), "raw_ann_p99_ms": pct(lat_raw, 99),
        "calibrated_p50_ms": pct(lat_cal, 50), "calibrated_p99_ms": pct(lat_cal, 99),
        "one_partition_ann_p50_ms": pct(lat_one, 50), "one_partition_role": role,
        "recall@10_raw": float(rec_raw.mean()), "recall@10_raw_ci95": boot_ci(rec_raw, np.mean),
        "recall@10_calibrated": float(rec_cal.mean()), "recall@10_calibrated_ci95": boot_ci(rec_cal, np.mean),
        "calibrated_over_raw_p50": statistics.median(lat_cal) / statistics.median(lat_raw),
        "calibrated_over_raw_paired": float(np.median(ratio)), "calibrated_over_raw_paired_ci95": boot_ci(ratio, np.median),
        "exact_over_raw_p50": statistics.median(lat_exact) / statistics.median(lat_raw),
        "load_average": os.getloadavg(),
    }


if __name__ == "__main__":
    main()
