"""`gapkit study`: the gap of your model on your data, every fixer compared with raw on held-out
queries, and a recommendation with its evidence."""
from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "your model on your data: gap with CIs and a null, every fixer vs raw on held-out queries, a recommendation"
DESCRIPTION = """Embed a dataset once (cached), split its images in memory with a seed (or K folds), measure
the gap (CIs, bias, permutation null), fit every fixer on the calibration images only, compare each
with the raw embeddings on the held-out images (retrieval both ways, mixed-modality retrieval,
zero-shot when labels exist: values with 95 % CIs and paired differences), and write
  OUT/report.html          one report ending in a recommendation with its evidence
  OUT/study.json           the comparison table, warnings and recommendation
  OUT/gap/record.json      the gap of all pairs
  OUT/evaluations/*.json   one evaluation record per arm (`gapkit build OUT --out table.csv`)
Instead of --encoder/--dataset, --embeddings takes embeddings already computed (an embed
directory or any file `gapkit measure` reads).

examples:
  gapkit study --encoder towers --dataset emoji --limit 200 --out runs/study-emoji
  gapkit study --encoder open_clip:ViT-B-32 --dataset pairs.csv --labels category --folds 5 --out runs/s
  gapkit study --embeddings runs/emoji-towers --fixers center,role-center,calibrated --out runs/s2
  gapkit study --sample clip --calib-fraction 0.3 --out runs/clip-study
"""

ZERO_SHOT_TEMPLATES = ("a photo of {}.", "a picture of {}.", "an illustration of {}.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .embed import add_model_data_args

    g = p.add_argument_group("model and data (embedded once, cached)")
    add_model_data_args(g, default_split="all")
    g.add_argument("--embeddings", metavar="PATH", help="embeddings already computed (embed directory or file)")
    from ._common import add_key_arg

    add_key_arg(g, "; with --embeddings")
    g.add_argument("--sample", metavar="NAME", help="a bundled real sample, e.g. clip")
    g.add_argument("--labels", metavar="COLUMN",
                   help="CSV/TSV column (JSONL key) holding each image's class: enables zero-shot "
                        "(built-in datasets with classes use theirs without this option)")
    s = p.add_argument_group("study")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--folds", type=int, metavar="K", help="K-fold by image: every image is evaluated once")
    how.add_argument("--calib-fraction", type=float, default=0.5, metavar="F",
                     help="share of images used to fit the fixers (default 0.5); the rest is evaluated")
    s.add_argument("--fixers", metavar="A,B", help="fixers to compare (default: shift, center, role-center, "
                   "standardize, topk, procrustes, calibrated)")
    s.add_argument("--n-boot", type=int, default=1000, metavar="B", help="bootstrap resamples (default 1000)")
    s.add_argument("--n-perm", type=int, default=1000, metavar="P", help="permutations of the null (default 1000)")
    s.add_argument("--model", help="model name for the records (default: from the embeddings' manifest)")
    s.add_argument("--dataset-name", help="dataset name for the records (default: from the manifest)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (written atomically)")


def _names(args: argparse.Namespace, pe: Any, inputs: dict[str, Any]) -> tuple[str, str]:
    from ._common import names_of

    model, data = names_of(pe, inputs)
    return args.model or model, args.dataset_name or data


def _from_embeddings(args: argparse.Namespace) -> Any:
    from ..embeddings import load_embeddings
    from ..samples import load_sample, sample_path
    from ..study import StudyData

    if args.key is not None and not args.embeddings:
        from ..errors import GapkitError

        raise GapkitError("--key applies to --embeddings only")
    if args.sample:
        pe = load_sample(args.sample)
        inputs = {"sample": args.sample, "embeddings": str(sample_path(args.sample))}
    else:
        pe = load_embeddings(args.embeddings, key=args.key)
        inputs = {"embeddings": args.embeddings}
    return StudyData(pe, *_names(args, pe, inputs), inputs=inputs)


def _from_encoder(args: argparse.Namespace) -> Any:
    from ..study import StudyData
    from .embed import embed_from_args

    pe, ds = embed_from_args(args)
    model, data = _names(args, pe, {"embeddings": str(args.dataset)})
    labels, names = ds.labels, ds.class_names
    if args.labels:
        from ..study.labels import read_label_column

        labels, names = read_label_column(ds, args.labels, args.root)
    inputs = {"encoder": args.encoder, "checkpoint": args.checkpoint, "dataset": str(args.dataset),
              "split": args.split, "limit": args.limit, "cache_key": pe.metadata.get("cache_key")}
    data_ = StudyData(pe, model, data, inputs={k: v for k, v in inputs.items() if v is not None})
    if labels is not None and names:
        from ..study.labels import prompt_embeddings

        data_.labels, data_.class_names = labels, list(names)
        data_.class_prompts = prompt_embeddings(args, names, ZERO_SHOT_TEMPLATES)
        data_.inputs["zero_shot_templates"] = list(ZERO_SHOT_TEMPLATES)
    return data_


def run(args: argparse.Namespace) -> int:
    from ..errors import GapkitError
    from ..study import run_study

    sources = [bool(args.embeddings), bool(args.sample), bool(args.encoder or args.dataset)]
    if sum(sources) != 1:
        raise GapkitError("give --encoder and --dataset, or --embeddings PATH, or --sample NAME")
    if sources[2] and not (args.encoder and args.dataset):
        raise GapkitError("give both --encoder and --dataset")
    if args.labels and not sources[2]:
        raise GapkitError("--labels reads a column of the dataset file; use it with --encoder and --dataset")
    for name in ("n_boot", "n_perm"):
        if getattr(args, name) < 10:
            raise GapkitError(f"--{name.replace('_', '-')} must be at least 10, got {getattr(args, name)}")
    data = _from_encoder(args) if sources[2] else _from_embeddings(args)
    rec = run_study(data, args.out, fixers=args.fixers, folds=args.folds,
                    calib_fraction=args.calib_fraction, seed=args.seed, n_boot=args.n_boot, n_perm=args.n_perm,
                    verbose=not args.quiet)
    print(f"gapkit study: {args.out}/report.html ({rec['results']['seconds']:.1f} s)", file=sys.stderr)
    return 0
