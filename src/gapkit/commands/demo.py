"""`gapkit demo [--quick] [--out RUN_DIR]`: the whole study on the embedded default, offline."""
from __future__ import annotations

import argparse

HELP = "run the whole study (measure -> explain -> fix -> evaluate -> HTML report) offline"
DESCRIPTION = """\
Run the modality-gap study end to end on data and models that ship with gapkit, offline:

  1. the bundled real CLIP ViT-B/16 embeddings of 500 COCO pairs (pretrained and random init):
     gap metrics with confidence intervals, PCA/UMAP, cosine histograms, per-dimension gap
  2. the cone effect: random-init towers each form their own cone (Liang et al. 2022)
  3. a real pretrained two-tower (EfficientNet-Lite0 images + all-MiniLM-L6-v2 texts) on emoji and
     openclipart: the gap at birth of freshly initialised projection heads
  4. contrastive tuning of the heads (LiT) with the CLIP loss and with gap-closing losses
  5. post-hoc fixers (shift along the gap vector, per-modality centring, ...)
  6. zero-shot classification, image<->text retrieval, mixed-modality retrieval
  7. an HTML report + JSON records in the run directory, whose path is printed at the end

Every stage is recorded as ran, skipped (with the reason, e.g. a component not installed) or
failed. --quick runs a sub-minute smoke version (small subsets, fewer steps, PCA only).

the same study on your own model and data:
  gapkit embed --encoder open_clip:ViT-B-32 --checkpoint my.pt --data pairs.csv --out emb.npz
  gapkit embed --encoder hf:/path/to/hf-clip-dir --data pairs.csv --out emb.npz
      (pairs.csv: columns image,caption; one row per caption; several rows may share an image)
  gapkit measure --embeddings emb.npz --out run/measure.json
  gapkit fix ... / gapkit evaluate ...   (see their --help)
  gapkit report run/ --html run/report.html
See docs/demo.md for the details.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="sub-minute smoke version (small subsets, PCA only)")
    p.add_argument("--out", metavar="RUN_DIR", default=None,
                   help="run directory (default: runs/demo-YYYYmmdd-HHMMSS)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every stage (default 0)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..demo import run_demo

    rec = run_demo(args.out, quick=args.quick, seed=args.seed)
    stages = rec["results"]["stages"]
    ran = sum(s["status"] == "ran" for s in stages.values())
    skipped = [n for n, s in stages.items() if s["status"] == "skipped"]
    failed = [n for n, s in stages.items() if s["status"] == "failed"]
    print(f"stages: {ran} ran, {len(skipped)} skipped{' (' + ', '.join(skipped) + ')' if skipped else ''}, "
          f"{len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}")
    print(f"report: {rec['report']}")
    print(f"run directory: {rec['run_dir']}")
    if failed:
        print("gapkit demo: some stages failed; see the report's 'Pipeline stages' table", file=sys.stderr)
        return 1
    return 0
