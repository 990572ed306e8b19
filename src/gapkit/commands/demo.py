"""`gapkit demo [--quick] [--out RUN_DIR]`: the whole study on the embedded default, offline."""
from __future__ import annotations

import argparse

from ._common import seed_arg  # noqa: E402

HELP = "run the whole study (measure -> explain -> fix -> evaluate -> HTML report) offline"
DESCRIPTION = """\
Run the modality-gap study end to end, offline, on data and models that ship with gapkit:

  samples      the bundled real CLIP ViT-B/16 embeddings of 500 COCO pairs (pretrained and random
               init): gap metrics with 95 % CIs, PCA/UMAP with pairs joined, cosine histograms,
               per-dimension gap
  cones        random-init encoders: each tower forms its own cone (Liang et al. 2022)
  explain      the papers' toy experiments: cone effect of random MLPs, mismatch loss landscape,
               CLIP on a sphere (gapkit reproduce ... --quick)
  features     a real pretrained two-tower (EfficientNet-Lite0 images + all-MiniLM-L6-v2 texts)
               on emoji and openclipart (Debian packages); features cached on disk
  birth        the gap at birth of fresh projection heads; one cone per random init
  tuning       LiT heads tuned contrastively with CLIP and with gap-closing variants
  evaluate     zero-shot (openclipart categories), retrieval R@1, mixed-modality NDCG@10
  fixers       post-hoc fixers (shift, centring, standardisation, top-k removal, Procrustes,
               calibrated scores) fitted on training embeddings, compared on test
  shift_sweep  evaluation as a curve over the gap (shifting along the gap vector)
  temperature  gap and evaluation vs a fixed training temperature
  report       report.html (self-contained) + JSON records in the run directory, printed at the end

Every stage is recorded as ran, skipped (with the reason, e.g. a component not installed) or
failed (the command then exits 1). --quick runs a small smoke version (tiny subsets, 60 training
steps, PCA only, no sphere run); the first full run spends most of its time extracting tower
features, which later runs read from the cache (~/.cache/gapkit or $GAPKIT_CACHE).

the same study on your own model and data (run as written on a 20-image pairs.csv):
  pairs.csv: one row per (image, caption), e.g. the header `image,caption` (also found: filepath,
  image_path, path, ... and title, text, ...; or --image-column/--caption-column/--sep); image
  paths relative to the file; several rows may share an image. Also jsonl, COCO JSON, Flickr,
  folders, webdataset tars (gapkit embed --help). Images above 16 MP are skipped (--max-pixels).
  1. embed (--out is a directory; one per split: calibration and evaluation):
       gapkit embed --encoder towers --dataset pairs.csv --split train --out run/calib
       gapkit embed --encoder towers --dataset pairs.csv --split test --out run/emb
     your model instead of the bundled towers: --encoder open_clip:ViT-B-32 --checkpoint my_ckpt.pt
     or --encoder hf:/path/to/hf-clip-dir. Or bring embeddings (skip step 1): .npy (2, N, D)
     stacks, .npz, .safetensors, .pt, parquet, clip-retrieval output.
  2. measure:   gapkit measure --embeddings run/emb --ci --out run/measure.json
  3. fix:       gapkit fix --method center --fit run/calib --apply run/emb --out run/fixed.npz
  4. evaluate:  gapkit evaluate --task mixed-retrieval --embeddings run/emb --fixer center
                  --fit run/calib --out run/mixed.json   (also retrieval, zero-shot, ...)
  5. report:    gapkit report run/ --html run/report.html
See docs/demo.md for the details.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="sub-minute smoke version (small subsets, PCA only)")
    p.add_argument("--out", metavar="RUN_DIR", default=None,
                   help="run directory (default: runs/demo-YYYYmmdd-HHMMSS)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed of every stage (default 0)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..demo import default_run_dir, run_demo
    from ..outputs import run_directory

    with run_directory(args.out or default_run_dir()) as out:
        rec = run_demo(out, quick=args.quick, seed=args.seed)
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
