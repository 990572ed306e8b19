"""`gapkit evaluate`: one evaluation task on embeddings (raw or through a fixer) -> one JSON record."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import seed_arg, with_ci  # noqa: E402

HELP = "zero-shot / retrieval / mixed-modality / intra-modal / probe / fairness evaluation -> JSON record"
OUTPUT_ARGS = ("out", "save_fixer")
DESCRIPTION = """Evaluate embeddings on one task and write one CLIP_benchmark-compatible JSON record.

tasks and their inputs:
  retrieval        paired embeddings (--embeddings/--image+--text[/--text-to-image]/--sample)
  mixed-retrieval  paired embeddings; a corpus is built from them (--query-fraction, --fused, --seed);
                   or --index IDX --queries Q.jsonl: your own labelled queries against a search index
                   (raw vs the index's correction, paired bootstrap CI of the gain; docs/search.md)
  mixbench         paired embeddings: held-out labelled-query benchmark of --corrections vs raw,
                   exactly and through real indexes (--backends), with paired bootstrap CIs
  intra-text       paired embeddings with several captions per image (groups = the image)
  intra-image      --image and --labels (groups = the label)
  zero-shot        --image, --labels and --classifier (class embeddings (C, D) or (C, T, D))
  linear-probe     --image and --labels (stratified split, --test-fraction, --seed)
  fairness         --image, --groups, --classifier (prompt embeddings) and --prompt-categories
examples:
  gapkit evaluate --task retrieval --sample clip --out raw.json
  gapkit evaluate --task mixed-retrieval --embeddings test.npy --fixer center --fit calib.npy --out c.json
With a fixer, every retrieval / mixed / zero-shot value is also computed raw on the same queries:
the record carries KEY with its 95 % CI and KEY_diff (fixer - raw) with a paired bootstrap CI.
The mixed corpus follows the protocol of gapkit.evaluate.protocol (every caption kept).
  gapkit evaluate --task zero-shot --image img.npy --labels y.npy --classifier cls.npy --out zs.json
  gapkit evaluate --task mixed-retrieval --index runs/idx --queries queries.jsonl --out labelled.json
  gapkit evaluate --task mixbench --sample clip --backends faiss --out mixbench.json
"""

TASKS = ("retrieval", "mixed-retrieval", "mixbench", "intra-text", "intra-image", "zero-shot", "linear-probe", "fairness")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._common import add_embedding_args
    from ._fixer_args import add_fixer_args

    p.add_argument("--task", required=True, choices=TASKS)
    add_embedding_args(p, required=False)
    add_fixer_args(p, method_flag="--fixer")
    g = p.add_argument_group("task inputs")
    g.add_argument("--labels", metavar="PATH", help="(N,) integer labels (.npy, .json list, .txt one per line)")
    g.add_argument("--classifier", metavar="PATH", help="class / prompt embeddings (C, D) or (C, T, D), .npy etc.")
    g.add_argument("--groups", metavar="PATH",
                   help="fairness: (N,) group of each image (.txt one per line, .json list or 1-D .npy)")
    g.add_argument("--prompt-categories", metavar="PATH",
                   help="fairness: category of each prompt (.txt one per line, .json list or 1-D .npy), "
                        "e.g. human / non-human / crime")
    g.add_argument("--offensive", default="non-human,crime", help="fairness: comma-separated offensive categories")
    g.add_argument("--query-fraction", type=float, default=0.5, help="mixed-retrieval: share of pairs used as queries")
    g.add_argument("--fused", action="store_true", help="mixed-retrieval: add fused image+text documents")
    g.add_argument("--alpha", metavar="A[,A...]",
                   help="mixed-retrieval with --fused: the image's weight in a fused document, normalise(A x + "
                        "(1 - A) y), in [0, 1] (default 0.5); several values run a sweep (MixBench sweeps [0, 1])")
    g.add_argument("--gains", metavar="ROLE=G,...",
                   help="mixed-retrieval: graded relevance, the gain of a relevant document by its role "
                        "(image, text, fused), e.g. image=1,text=1,fused=2 (default: all 1, binary NDCG)")
    g.add_argument("--score", default="auto", choices=("auto", "probability", "percentile"),
                   help="mixed-retrieval with --fixer calibrated: which calibrated score ranks the corpus")
    g.add_argument("--index", metavar="IDX", help="mixed-retrieval: a search index (gapkit index build) to query")
    g.add_argument("--queries", metavar="PATH",
                   help="mixed-retrieval with --index: labelled queries, JSON Lines {text|vector, relevant|relevant_items}")
    g.add_argument("--corrections", default="role-center,center,calibrated",
                   help="mixbench: comma-separated corrections compared with raw cosine (default %(default)s)")
    g.add_argument("--backends", default="",
                   help="mixbench: comma-separated index backends ranked beside the exact search, each with its "
                        "ANN structure (faiss = HNSW, lancedb = IVF_HNSW_SQ), e.g. faiss,lancedb")
    g.add_argument("--fit-fraction", type=float, default=0.5,
                   help="mixbench: share of the images the corrections are fitted on (the rest is queried)")
    g.add_argument("--n-boot", type=int, default=1000, help="mixed-retrieval --index / mixbench: bootstrap resamples")
    g.add_argument("--test-fraction", type=float, default=0.3, help="linear-probe: held-out share")
    g.add_argument("--seed", type=seed_arg, default=0)
    r = p.add_argument_group("record")
    r.add_argument("--model", help="model name for the record (default: from the embed manifest, the "
                                   "sample's description, or the file name)")
    r.add_argument("--dataset", help="dataset name for the record (default: as --model)")
    r.add_argument("--out", required=True, metavar="PATH", help="record path (.json), or - for stdout")


def _read_list(path: str) -> list[str]:
    """Entries of a list file: a 1-D .npy array, a .json list, or UTF-8 text with one per line."""
    import json

    from ..embeddings import load_array
    from ..errors import GapkitError

    p = Path(path)
    if not p.is_file():
        raise GapkitError(f"file not found: {p}")
    if p.suffix.lower() == ".npy":
        a = load_array(p, mmap=False)
        if a.ndim != 1:
            raise GapkitError(f"{p}: expected a 1-D array (one entry per row), got shape {tuple(a.shape)}")
        return [str(v) for v in a.tolist()]
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GapkitError(f"{p}: not UTF-8 text; give a .txt file with one entry per line, a .json list "
                          "or a 1-D .npy array") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GapkitError(f"{p}: invalid JSON ({exc})") from None
        if not isinstance(data, list):
            raise GapkitError(f"{p}: expected a JSON list")
        return [str(v) for v in data]
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _read_labels(path: str) -> Any:
    """(N,) int64 class labels from .npy / .json / .txt; floats only when every value is whole."""
    import numpy as np

    from ..embeddings import load_mapping
    from ..errors import GapkitError

    y = load_mapping(path)
    if y.ndim != 1 or y.size == 0:
        raise GapkitError(f"{path}: labels must be a non-empty 1-D list, got shape {tuple(y.shape)}")
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    ok = np.issubdtype(y.dtype, np.floating) and bool(np.isfinite(y).all()) and bool((y == np.round(y)).all())
    if not ok:
        raise GapkitError(f"{path}: labels must be integers (dtype {y.dtype} has non-integer values)")
    return y.astype(np.int64)


def _read_matrix(path: str, name: str, mmap: bool = True) -> Any:
    """An embedding matrix file, checked by gapkit.validation.as_matrix (numeric, 2-D, finite)."""
    from ..embeddings import load_array
    from ..validation import as_matrix

    return as_matrix(load_array(path, mmap=mmap, side="image" if name.startswith("--image") else None), name)


def _alphas(args: argparse.Namespace) -> list[float]:
    """--alpha as a list of weights in [0, 1] (default [0.5]); several need --fused."""
    import math

    from ..errors import GapkitError

    if args.alpha is None:
        return [0.5]
    try:
        values = [float(v) for v in args.alpha.split(",")]
    except ValueError:
        raise GapkitError(f"--alpha: expected numbers in [0, 1] separated by commas, got {args.alpha!r}") from None
    if not values or any(not math.isfinite(v) or not 0 <= v <= 1 for v in values):
        raise GapkitError(f"--alpha: every value must be in [0, 1], got {args.alpha!r}")
    if not args.fused and len(values) > 1:
        args.fused = True  # a sweep is about fused documents
    if not args.fused:
        raise GapkitError("--alpha weighs fused documents: add --fused")
    return values


def _gains(text: str | None) -> dict[str, float] | None:
    """--gains image=1,text=1,fused=2 -> {role: gain}."""
    import math

    from ..errors import GapkitError

    if text is None:
        return None
    out: dict[str, float] = {}
    for part in text.split(","):
        role, sep, value = part.partition("=")
        try:
            g = float(value)
        except ValueError:
            g = math.nan
        if not sep or role.strip() not in ("image", "text", "fused") or not math.isfinite(g) or g < 0:
            raise GapkitError(f"--gains: expected ROLE=GAIN with ROLE in image, text, fused and GAIN >= 0, got {part!r}")
        out[role.strip()] = g
    return out


def _need(args: argparse.Namespace, *names: str) -> None:
    from ..errors import GapkitError

    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise GapkitError(f"task {args.task} needs {', '.join(missing)}")


def _apply(fx: Any, x: Any, modality: str) -> Any:
    if fx is None or fx.acts_on != "embeddings":
        return x
    return fx.transform(x, modality)


def _run_task(args: argparse.Namespace, fx: Any) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """Returns (metrics, inputs, model name, dataset name); metrics carry 95 % CIs and, with a
    fixer, the paired difference from the raw embeddings on the same queries (gapkit.evaluate.compare)."""
    metrics, inputs, per_query, pe = _task_values(args, fx)
    if per_query is not None:
        from ..evaluate.compare import uncertainty

        metrics.update(uncertainty(per_query(None), None if fx is None else per_query(fx), seed=args.seed))
    from ._common import names_of

    model, dataset = names_of(pe, inputs)
    return metrics, inputs, model, dataset


def _task_values(args: argparse.Namespace, fx: Any) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """(metrics, inputs, per_query(fixer) -> per-query values or None for tasks without one,
    the PairedEmbeddings read (None for single-matrix tasks))."""
    from ..embeddings import PairedEmbeddings
    from ..evaluate import compare as cmp
    from .. import evaluate as ev
    from ..embeddings import load_array
    from ..errors import GapkitError
    from ..validation import as_matrix
    from ._common import load_from_args

    if fx is not None and fx.acts_on != "embeddings" and args.task != "mixed-retrieval":
        raise GapkitError(f"fixer '{fx.name}' calibrates scores; it applies to --task mixed-retrieval only")
    if args.index is not None or args.queries is not None:
        return _labelled(args, fx)
    if args.task == "mixbench":
        return _mixbench(args, fx)
    if args.task in ("retrieval", "mixed-retrieval", "intra-text"):
        pe, inputs = load_from_args(args)
        if args.task == "mixed-retrieval":
            from ..evaluate.protocol import mixed_corpus

            alphas, gains = _alphas(args), _gains(args.gains)
            if len(alphas) > 1:
                sweep = cmp.alpha_sweep(pe, alphas, fx, args.seed, args.query_fraction, gains, args.score)
                return {"alpha_sweep": sweep}, inputs, None, pe
            corpus = mixed_corpus(pe, args.seed, args.query_fraction, fused=args.fused, alpha=alphas[0], gains=gains)
            return ev.mixed_retrieval(corpus, fx, kind=args.score), inputs, lambda f: cmp.mixed_per_query_of(
                pe, f, args.seed, query_fraction=args.query_fraction, fused=args.fused, kind=args.score,
                prefix="", alpha=alphas[0], gains=gains), pe
        img, txt = _apply(fx, pe.image, "image"), _apply(fx, pe.text, "text")
        if args.task == "retrieval":
            return ev.retrieval(img, txt, pe.text_to_image), inputs, lambda f: cmp.retrieval_per_query(pe, f), pe
        return ev.intra_modal_retrieval(txt, pe.mapping, prefix="text_retrieval_intra"), inputs, None, pe
    _need(args, "image")
    raw_img = _read_matrix(args.image, f"--image {args.image}")
    img = _apply(fx, raw_img, "image")
    inputs: dict[str, Any] = {"image": args.image}
    named = PairedEmbeddings(raw_img[:1], raw_img[:1])  # no manifest: names come from the file name
    if args.task in ("intra-image", "zero-shot", "linear-probe"):
        _need(args, "labels")
        labels = _read_labels(args.labels)
        inputs["labels"] = args.labels
        if args.task == "intra-image":
            return ev.intra_modal_retrieval(img, labels, prefix="image_retrieval_intra"), inputs, None, named
        if args.task == "linear-probe":
            return (ev.linear_probe(img, labels, test_fraction=args.test_fraction, seed=args.seed), inputs, None,
                    named)
    _need(args, "classifier")
    cls = load_array(args.classifier, mmap=False)
    inputs["classifier"] = args.classifier
    if cls.ndim not in (2, 3) or cls.size == 0:
        raise GapkitError(f"--classifier {args.classifier}: expected non-empty (C, D) or (C, T, D), got shape {tuple(cls.shape)}")
    as_matrix(cls.reshape(-1, cls.shape[-1]), f"--classifier {args.classifier}")  # numeric, finite, no zero rows
    if fx is not None:
        flat = cls.reshape(-1, cls.shape[-1])
        cls = _apply(fx, flat, "text").reshape(cls.shape)
    if args.task == "zero-shot":
        from ..metrics.class_prompts import class_prompt_metrics

        raw_cls = load_array(args.classifier, mmap=False)
        metrics = ev.zero_shot(img, labels, cls)
        # the gap of the (fixed) images against their class prompts: class-prompt mode (docs/metrics.md)
        gap = class_prompt_metrics(img, labels, cls)
        metrics.update({f"class_prompt_{k}": gap[k] for k in ("l2m", "l2i", "rmg", "centroid_cosine")})
        return metrics, inputs, lambda f: cmp.zero_shot_per_query(raw_img, labels, raw_cls, f), named
    _need(args, "groups", "prompt_categories")
    inputs.update(groups=args.groups, prompt_categories=args.prompt_categories)
    offensive = tuple(s for s in args.offensive.split(",") if s)
    return (ev.denigration(img, _read_list(args.groups), cls, _read_list(args.prompt_categories), offensive), inputs,
            None, named)


def _labelled(args: argparse.Namespace, fx: Any) -> tuple[dict[str, Any], dict[str, Any], None, Any]:
    """--task mixed-retrieval --index IDX --queries Q.jsonl."""
    import numpy as np

    from ..embeddings import PairedEmbeddings
    from ..errors import GapkitError
    from ..evaluate.labelled import evaluate_index, read_queries
    from ..search import open_index

    if args.task != "mixed-retrieval":
        raise GapkitError("--index / --queries belong to --task mixed-retrieval")
    _need(args, "index", "queries")
    given = [f"--{n}" for n in ("embeddings", "image", "text", "sample") if getattr(args, n, None) is not None]
    if given or fx is not None:
        raise GapkitError(f"with --index the index's documents and correction are evaluated; drop "
                          f"{', '.join(given + (['--fixer'] if fx is not None else []))}")
    _check_n_boot(args)
    queries = read_queries(args.queries)
    index = open_index(args.index)
    info = index.info()
    vec = np.asarray(index.vectors[:1], np.float32)
    named = PairedEmbeddings(vec, vec, metadata={"model": (info["encoder"] or {}).get("name") or f"index {args.index}",
                                                 "dataset": f"index {args.index}"})  # names for the record
    return evaluate_index(index, queries, n_boot=args.n_boot, seed=args.seed, progress=True), \
        {"index": args.index, "queries": args.queries, "index_hash": info["content_hash"]}, None, named


def _check_n_boot(args: argparse.Namespace) -> None:
    from ..errors import GapkitError

    if args.n_boot < 1:
        raise GapkitError(f"--n-boot must be >= 1, got {args.n_boot}")


def _mixbench(args: argparse.Namespace, fx: Any) -> tuple[dict[str, Any], dict[str, Any], None, Any]:
    """--task mixbench: held-out benchmark of several corrections, exact and through indexes."""
    import tempfile

    from ..errors import GapkitError
    from ..evaluate.mixbench import ANN_PARAMS, IndexRanker, exact_ranker, mixbench
    from ..evaluate.protocol import split_images
    from ._common import load_from_args

    if fx is not None:
        raise GapkitError("mixbench compares --corrections (it fits each itself); drop --fixer")
    _check_n_boot(args)
    corrections = [c.strip() for c in args.corrections.split(",") if c.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(ANN_PARAMS))
    if unknown:
        raise GapkitError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(ANN_PARAMS)}")
    from ..search.correction import check_kind

    for c in corrections:
        check_kind(c)
    pe, inputs = load_from_args(args)
    fit, test = split_images(pe, args.fit_fraction, args.seed)
    with tempfile.TemporaryDirectory(prefix="gapkit-mixbench-") as tmp:
        rankers = {"exact": exact_ranker, **{f"{b} (ANN)": IndexRanker(f"{tmp}/{b}", b, ANN_PARAMS[b], seed=args.seed)
                                             for b in backends}}
        res = mixbench(fit, test, corrections, rankers=rankers, query_fraction=args.query_fraction,
                       fused=True, seed=args.seed, n_boot=args.n_boot)
    return res, inputs, None, pe


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluation_record
    from ._common import write_output
    from ._fixer_args import fixer_from_args, save_fixer_if_asked

    from ..errors import GapkitError

    if (args.alpha is not None or args.gains is not None) and (args.task != "mixed-retrieval" or args.index is not None):
        raise GapkitError("--alpha / --gains apply to --task mixed-retrieval on paired embeddings (not --index)")
    _alphas(args), _gains(args.gains)  # checked before any work
    fx, fixer_desc = (None, {}) if args.method is None else fixer_from_args(args)
    metrics, inputs, model, dataset = _run_task(args, fx)
    params = {"seed": args.seed, **fixer_desc}
    if args.task == "mixed-retrieval" and args.index is not None:
        params.update(n_boot=args.n_boot)
    elif args.task == "mixed-retrieval":
        params.update(query_fraction=args.query_fraction, fused=args.fused, score=args.score,
                      alpha=_alphas(args), gains=_gains(args.gains))
    elif args.task == "mixbench":
        params.update(query_fraction=args.query_fraction, fit_fraction=args.fit_fraction, n_boot=args.n_boot,
                      corrections=args.corrections, backends=args.backends)
    rec = evaluation_record(args.task, metrics, model=args.model or model, dataset=args.dataset or dataset,
                            fixer=None if fx is None else fx.name, params=params, inputs=inputs, seed=args.seed)
    write_output(rec, args.out)
    save_fixer_if_asked(args, fx)
    print(summary_line(rec, args.out), file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


MAIN_KEYS = ("ndcg@10", "t2i_recall@1", "i2t_recall@1", "acc1", "zero_shot_acc1", "intra_recall@1")


def summary_line(rec: dict[str, Any], out: str) -> str:
    """'gapkit evaluate: mixed-retrieval (center) -> m.json; ndcg@10 0.225 [0.193, 0.260], vs raw +0.22 [...]'."""
    m = rec["metrics"]
    arms = _arms(m)
    if arms:  # mixbench / labelled queries: NDCG@10 of every arm, and its paired difference from raw
        parts = [f"{name} {v['ndcg@10']:.3f}" + (f" ({v['ndcg@10_diff']:+.3f} [{v['ndcg@10_diff_ci_low']:+.3f}, "
                                                  f"{v['ndcg@10_diff_ci_high']:+.3f}])" if "ndcg@10_diff" in v else "")
                 for name, v in arms.items()]
        return f"gapkit evaluate: {rec['task']} -> {'stdout' if out == '-' else out}; ndcg@10 " + "; ".join(parts)
    if "alpha_sweep" in m:  # one NDCG@10 per fused-document weight
        parts = [f"alpha {r['alpha']:g}: {with_ci(r, 'ndcg@10')}" for r in m["alpha_sweep"]]
        return (f"gapkit evaluate: {rec['task']} ({rec.get('fixer') or 'raw'}) -> {'stdout' if out == '-' else out}; "
                "ndcg@10 " + "; ".join(parts))
    parts = []
    for k in [k for k in MAIN_KEYS if k in m] or [k for k, v in m.items() if isinstance(v, float)][:2]:
        t = with_ci(m, k)
        if f"{k}_diff" in m:
            t += f", vs raw {m[k + '_diff']:+.3f} [{m[k + '_diff_ci_low']:+.3f}, {m[k + '_diff_ci_high']:+.3f}]"
        parts.append(t)
    arm = rec.get("fixer") or "raw"
    return f"gapkit evaluate: {rec['task']} ({arm}) -> {'stdout' if out == '-' else out}; " + "; ".join(parts)


def _arms(m: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{arm label: metrics} of nested results (mixbench: ranker/variant; labelled: raw/corrected)."""
    out: dict[str, dict[str, Any]] = {}
    for key, v in m.items():
        if isinstance(v, dict) and "ndcg@10" in v:
            out[key] = v
        elif isinstance(v, dict) and v and all(isinstance(x, dict) and "ndcg@10" in x for x in v.values()):
            out.update({f"{key}/{name}": x for name, x in v.items()})
    return out
