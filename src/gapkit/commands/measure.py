"""`gapkit measure`: every modality-gap metric of one pair of embedding sets.

    gapkit measure --sample clip                                   # readable table
    gapkit measure --embeddings STACK.npy --out metrics.json       # JSON record
    gapkit measure --image IMG.npy --text TXT.npy --text-to-image MAP.npy --out -
    gapkit measure --embeddings emb.npz --metrics rmg,uniformity --ci --exact --seed 1
    gapkit measure --embeddings CLIP_RETRIEVAL_DIR --stream --out m.json   # one pass, bounded RAM
    gapkit measure --embeddings SHARD_DIR --engine ray --address auto --out m.json  # one Ray task per shard

The JSON record holds {"metrics": {...}, "n_image", "n_text", "dim", "inputs", ...} plus the
fields of every gapkit record (kind, versions, command, seed, params, results).
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from ._common import add_embedding_args, add_engine_args, check_engine_args, load_from_args, with_ci, write_output

from ._common import seed_arg  # noqa: E402

HELP = "measure the modality gap of image/text embeddings (every metric of docs/metrics.md)"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_embedding_args(p)
    g = p.add_argument_group("metrics")
    from ..metrics.report import FAMILIES

    g.add_argument("--metrics", metavar="A,B", help="comma-separated families or keys (default: all): "
                   f"{', '.join(FAMILIES)}; or keys such as rmg,i2t_recall@1,logit_entropy")
    g.add_argument("--ci", action="store_true",
                   help="add 95%% CIs (<key>_ci_low/_ci_high; geometry: basic bootstrap with <key>_bias)")
    g.add_argument("--null", action="store_true",
                   help="add the modality-label permutation null of centroid_distance and rmg "
                        "(<key>_null_p95, <key>_p_value)")
    g.add_argument("--n-perm", type=int, default=1000, metavar="P", help="permutations for --null (default 1000)")
    g.add_argument("--n-boot", type=int, default=1000, metavar="B", help="bootstrap resamples (default 1000)")
    g.add_argument("--exact", action="store_true",
                   help="compute pairwise metrics exactly at any size (default: sampled estimate above 5,000 rows)")
    g.add_argument("--seed", type=seed_arg, default=0, help="seed of every sampled step (default 0)")
    g.add_argument("--logit-scale", type=float, default=100.0, help="1/temperature for logit_entropy (default 100)")
    g.add_argument("--train-fraction", type=float, default=0.5,
                   help="share of pairs used to train the separability classifier (default 0.5)")
    g.add_argument("--folds", type=int, default=None, help="k-fold separability instead of one split")
    g.add_argument("--stream", action="store_true",
                   help="one streaming pass over --embeddings (a clip-retrieval directory or a (2,N,D) .npy "
                        "stack, memory-mapped) with bounded memory; pairwise metrics from a random reservoir")
    g.add_argument("--reservoir", type=int, default=10_000, metavar="R",
                   help="pairs kept for the pairwise metrics with --stream (default 10000)")
    add_engine_args(p)
    p.add_argument("--out", metavar="FILE", help="write the JSON record to FILE ('-' = stdout); "
                   "without --out a table is printed")


def _metric_list(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        from ..errors import GapkitError

        raise GapkitError("--metrics is empty; give comma-separated metric names")
    return names


def run(args: argparse.Namespace) -> int:
    from ..errors import GapkitError
    from ..records import new_record

    if args.n_boot < 2:
        raise GapkitError(f"--n-boot must be at least 2, got {args.n_boot}")
    if args.n_perm < 10:
        raise GapkitError(f"--n-perm must be at least 10, got {args.n_perm}")
    check_engine_args(args)
    if args.engine:  # a sharded run is a streaming run: same metrics, same record
        args.stream = True
    params = {"metrics": args.metrics, "ci": args.ci, "n_boot": args.n_boot, "exact": args.exact,
              "logit_scale": args.logit_scale, "train_fraction": args.train_fraction, "folds": args.folds,
              "stream": args.stream, "null": args.null, "n_perm": args.n_perm}
    names: dict[str, str] = {}
    if args.stream:
        values, inputs = _stream(args)
        params["reservoir"] = args.reservoir
        if args.engine:
            params["engine"] = args.engine
    else:
        from ..metrics import measure
        from ._common import names_of

        pe, inputs = load_from_args(args)
        model, dataset = names_of(pe, inputs)
        names = {"model": model, "dataset": dataset, "title": f"gap of {model} on {dataset}"}
        values = measure(pe, metrics=_metric_list(args.metrics), ci=args.ci, n_boot=args.n_boot, seed=args.seed,
                         exact=args.exact, logit_scale=args.logit_scale, train_fraction=args.train_fraction,
                         folds=args.folds, progress=sys.stderr.isatty(), null=args.null, n_perm=args.n_perm)
    sizes = {k: values[k] for k in ("n_image", "n_text", "dim")}
    metrics = {k: v for k, v in values.items() if k not in sizes}
    record = new_record("measure", params=params, results=metrics, inputs=inputs, seed=args.seed,
                        metrics=metrics, **sizes, **names)
    if args.out:
        write_output(record, args.out)
        print(summary_line(record, args.out), file=sys.stderr if args.out == "-" else sys.stdout)
    else:
        print(format_table(record))
    return 0


def summary_line(record: dict[str, Any], out: str) -> str:
    """'gapkit measure: 500 images, 500 texts -> m.json; centroid_distance 0.851 [0.83, 0.87] (p 0.001) ...'."""
    m = record["metrics"]
    parts = []
    for k in ("centroid_distance", "rmg", "linear_separability", "t2i_recall@1"):
        if k in m and isinstance(m[k], float):
            t = with_ci(m, k, _fmt)
            if f"{k}_p_value" in m:
                t += f" (p {m[k + '_p_value']:.2g})"
            parts.append(t)
    where = "stdout" if out == "-" else out
    return f"gapkit measure: {record['n_image']} images, {record['n_text']} texts -> {where}; " + "; ".join(parts)


def _stream(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """measure_stream over --embeddings; the options that need every pair at once are refused."""
    from pathlib import Path

    from ..errors import GapkitError
    from ..metrics import measure_stream

    if not args.embeddings or args.image or args.text or args.sample:
        raise GapkitError("--stream reads one --embeddings path (a shard folder or a .npy stack; so does --engine)")
    if args.key is not None:
        raise GapkitError("--key does not apply with --stream/--engine (shard folders name their arrays)")
    if args.ci or args.exact or args.metrics or args.null:
        raise GapkitError("--stream computes its fixed set of metrics (so does --engine); --ci, --exact, --metrics "
                          "and --null do not apply")
    if args.reservoir < 2:
        raise GapkitError(f"--reservoir must be at least 2, got {args.reservoir}")
    if not Path(args.embeddings).exists():
        raise GapkitError(f"file not found: {args.embeddings}")
    values = measure_stream(args.embeddings, reservoir=args.reservoir, seed=args.seed,
                            progress=sys.stderr.isatty(), logit_scale=args.logit_scale, engine=args.engine,
                            address=args.address)
    return values, {"embeddings": args.embeddings}


def _fmt(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def format_table(record: dict[str, Any]) -> str:
    """A readable table: metrics grouped by family, each with its CI when present."""
    import re

    from ..metrics import FAMILIES

    m = record["metrics"]
    src = record["inputs"].get("sample") or record["inputs"].get("embeddings") or record["inputs"].get("image")
    lines = [f"gapkit measure  {src}  ({record['n_image']} images, {record['n_text']} texts, dim {record['dim']})"]
    keys = [k for k in m if not k.endswith(("_ci_low", "_ci_high", "_n_sampled", "_bias", "_null_p95", "_p_value",
                                            "_null_observed")) and k != "null_n_perm"]
    width = max(len(k) for k in keys) if keys else 10
    groups: dict[str, list[str]] = {}
    for k in keys:
        fam = next((f for f, (_, pat) in FAMILIES.items() if re.fullmatch(pat, k)), "other")
        groups.setdefault(fam, []).append(k)
    for fam, fam_keys in groups.items():
        lines += ["", f"{fam}:"]
        for k in fam_keys:
            line = f"  {k:<{width}}  {_fmt(m[k]):>9}"
            if f"{k}_ci_low" in m:
                line += f"   95% CI [{_fmt(m[k + '_ci_low'])}, {_fmt(m[k + '_ci_high'])}]"
            if f"{k}_bias" in m:
                line += f"   bias {m[k + '_bias']:+.4f}"
            if f"{k}_p_value" in m:
                line += f"   null 95th pct {_fmt(m[k + '_null_p95'])}, p = {m[k + '_p_value']:.3g}"
            if f"{k}_n_sampled" in m:
                line += f"   (estimate, {int(m[k + '_n_sampled'])} samples)"
            lines.append(line)
    lines += ["", "Definitions and sources: docs/metrics.md"]
    return "\n".join(lines)
