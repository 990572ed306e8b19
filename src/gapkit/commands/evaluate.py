"""`gapkit evaluate`: one evaluation task on embeddings (raw or through a fixer) -> one JSON record."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import seed_arg  # noqa: E402

HELP = "zero-shot / retrieval / mixed-modality / intra-modal / probe / fairness evaluation -> JSON record"
OUTPUT_ARGS = ("out", "save_fixer")
DESCRIPTION = """Evaluate embeddings on one task and write one CLIP_benchmark-compatible JSON record.

tasks and their inputs:
  retrieval        paired embeddings (--embeddings/--image+--text[/--text-to-image]/--sample)
  mixed-retrieval  paired embeddings; a corpus is built from them (--query-fraction, --fused, --seed)
  intra-text       paired embeddings with several captions per image (groups = the image)
  intra-image      --image and --labels (groups = the label)
  zero-shot        --image, --labels and --classifier (class embeddings (C, D) or (C, T, D))
  linear-probe     --image and --labels (stratified split, --test-fraction, --seed)
  fairness         --image, --groups, --classifier (prompt embeddings) and --prompt-categories
examples:
  gapkit evaluate --task retrieval --sample clip --out raw.json
  gapkit evaluate --task mixed-retrieval --embeddings test.npy --fixer center --fit calib.npy --out c.json
  gapkit evaluate --task zero-shot --image img.npy --labels y.npy --classifier cls.npy --out zs.json
"""

TASKS = ("retrieval", "mixed-retrieval", "intra-text", "intra-image", "zero-shot", "linear-probe", "fairness")


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
    g.add_argument("--score", default="auto", choices=("auto", "probability", "percentile"),
                   help="mixed-retrieval with --fixer calibrated: which calibrated score ranks the corpus")
    g.add_argument("--test-fraction", type=float, default=0.3, help="linear-probe: held-out share")
    g.add_argument("--seed", type=seed_arg, default=0)
    r = p.add_argument_group("record")
    r.add_argument("--model", default="unknown", help="model name for the record")
    r.add_argument("--dataset", default="unknown", help="dataset name for the record")
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

    return as_matrix(load_array(path, mmap=mmap), name)


def _need(args: argparse.Namespace, *names: str) -> None:
    from ..errors import GapkitError

    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise GapkitError(f"task {args.task} needs {', '.join(missing)}")


def _apply(fx: Any, x: Any, modality: str) -> Any:
    if fx is None or fx.acts_on != "embeddings":
        return x
    return fx.transform(x, modality)


def _run_task(args: argparse.Namespace, fx: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (metrics, inputs)."""
    from .. import evaluate as ev
    from ..embeddings import load_array
    from ..errors import GapkitError
    from ..validation import as_matrix
    from ._common import load_from_args

    if fx is not None and fx.acts_on != "embeddings" and args.task != "mixed-retrieval":
        raise GapkitError(f"fixer '{fx.name}' calibrates scores; it applies to --task mixed-retrieval only")
    if args.task in ("retrieval", "mixed-retrieval", "intra-text"):
        pe, inputs = load_from_args(args)
        if args.task == "mixed-retrieval":
            corpus = ev.corpus_from_pairs(pe, args.query_fraction, args.seed, fused=args.fused)
            return ev.mixed_retrieval(corpus, fx, kind=args.score), inputs
        img, txt = _apply(fx, pe.image, "image"), _apply(fx, pe.text, "text")
        if args.task == "retrieval":
            return ev.retrieval(img, txt, pe.text_to_image), inputs
        return ev.intra_modal_retrieval(txt, pe.mapping, prefix="text_retrieval_intra"), inputs
    _need(args, "image")
    img = _apply(fx, _read_matrix(args.image, f"--image {args.image}"), "image")
    inputs: dict[str, Any] = {"image": args.image}
    if args.task in ("intra-image", "zero-shot", "linear-probe"):
        _need(args, "labels")
        labels = _read_labels(args.labels)
        inputs["labels"] = args.labels
        if args.task == "intra-image":
            return ev.intra_modal_retrieval(img, labels, prefix="image_retrieval_intra"), inputs
        if args.task == "linear-probe":
            return ev.linear_probe(img, labels, test_fraction=args.test_fraction, seed=args.seed), inputs
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
        return ev.zero_shot(img, labels, cls), inputs
    _need(args, "groups", "prompt_categories")
    inputs.update(groups=args.groups, prompt_categories=args.prompt_categories)
    offensive = tuple(s for s in args.offensive.split(",") if s)
    return ev.denigration(img, _read_list(args.groups), cls, _read_list(args.prompt_categories), offensive), inputs


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluation_record
    from ._common import write_output
    from ._fixer_args import fixer_from_args, save_fixer_if_asked

    fx, fixer_desc = (None, {}) if args.method is None else fixer_from_args(args)
    metrics, inputs = _run_task(args, fx)
    params = {"seed": args.seed, **fixer_desc}
    if args.task == "mixed-retrieval":
        params.update(query_fraction=args.query_fraction, fused=args.fused, score=args.score)
    rec = evaluation_record(args.task, metrics, model=args.model, dataset=args.dataset,
                            fixer=None if fx is None else fx.name, params=params, inputs=inputs, seed=args.seed)
    write_output(rec, args.out)
    save_fixer_if_asked(args, fx)
    return 0
