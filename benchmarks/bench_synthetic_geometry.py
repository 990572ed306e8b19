"""Which synthetic generator looks like real CLIP embeddings? Statistics that decide ANN difficulty.

Real: the bundled CLIP ViT-B/16 sample (500 COCO pairs; the same rows as
shared/data/liang2022-embeddings/clip.npy). Synthetic: 500-row draws of
gapkit.search.synthetic.GappedGenerator, kind "gaussian" (one joint Gaussian, the old generator)
and "bootstrap" (smoothed bootstrap of the real pairs), over --seeds seeds (mean shown).
Statistics (gapkit.search.synthetic.geometry_stats): TwoNN intrinsic dimension, median cosine to
the 1st and 10th nearest neighbour, median pairwise cosine, relative contrast; plus the mean
cosine of matched image-caption pairs and the gap |mean(image) - mean(text)|.

    python benchmarks/bench_synthetic_geometry.py              # ~10 s
    python benchmarks/bench_synthetic_geometry.py --bandwidth 0.4 --noise 0.3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gapkit.samples import load_sample  # noqa: E402
from gapkit.search.synthetic import GappedGenerator, geometry_stats  # noqa: E402

COLS = ("twonn", "nn1_cos", "nnk_cos", "median_cos", "contrast")


def pair_stats(image: np.ndarray, text: np.ndarray) -> dict[str, float]:
    """Per modality geometry_stats plus the matched-pair cosine and the gap (unit rows)."""
    x = image / np.linalg.norm(image, axis=1, keepdims=True)
    y = text / np.linalg.norm(text, axis=1, keepdims=True)
    out = {f"image {k}": v for k, v in geometry_stats(x).items()}
    out.update({f"text {k}": v for k, v in geometry_stats(y).items()})
    out["matched_cos"] = float(np.mean(np.sum(x * y, axis=1)))
    out["gap"] = float(np.linalg.norm(x.mean(0) - y.mean(0)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--bandwidth", type=float, default=0.6)
    ap.add_argument("--noise", type=float, default=None, help="bootstrap noise (default: the generator's)")
    args = ap.parse_args()
    pe = load_sample("clip")
    rows = {"real CLIP (500 pairs)": pair_stats(np.asarray(pe.image), np.asarray(pe.text))}
    for kind, kw in (("gaussian", {}), ("bootstrap", {"bandwidth": args.bandwidth, **(
            {"image_noise": args.noise, "text_noise": args.noise} if args.noise is not None else {})})):
        runs = [pair_stats(p.image, p.text) for p in
                (GappedGenerator(seed=s, kind=kind, **kw).pairs(pe.n_image, 1) for s in range(args.seeds))]
        rows[f"{kind} (500, {args.seeds} seeds)"] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    keys = [f"{m} {c}" for m in ("image", "text") for c in COLS] + ["matched_cos", "gap"]
    print(f"{'statistic':18s}" + "".join(f"{name:>28s}" for name in rows))
    for key in keys:
        print(f"{key:18s}" + "".join(f"{r[key]:28.3f}" for r in rows.values()))


if __name__ == "__main__":
    main()
