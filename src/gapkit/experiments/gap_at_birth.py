"""The gap at birth: real encoders measured before any contrastive training.

- Jina blog, Fig. 2: two separately pretrained towers put side by side (here EfficientNet-Lite0
  ImageNet + all-MiniLM-L6-v2, with untrained random projection heads, or each tower projected
  on its own top principal directions) already show a large modality gap.
- Liang et al. 2022, Fig. 2a/c: randomly initialised real architectures (open_clip ViT-B-32,
  RN50, pretrained=None) map every input into a narrow cone, a different cone per tower and per
  init, so a gap exists before training.

For each (encoder, dataset) the experiment embeds a seeded subset of images and all their
captions (cached on disk) and runs gapkit.metrics.measure. Record: one row per pair with
centroid_distance, paired_cosine_mean, rmg, the cone cosines and linear separability.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import GapkitError
from ..typecheck import check_positive
from . import Experiment

DEFAULT_ENCODERS = ("towers", "towers:pca", "open_clip:ViT-B-32", "open_clip:RN50")
QUICK_ENCODERS = ("towers", "open_clip:ViT-B-32")
METRICS = ("geometry", "separability")


def run(out_dir: Path, quick: bool = False, seed: int = 0, *, datasets: Sequence[str] = ("emoji", "openclipart"),
        encoders: Sequence[str] | None = None, n_images: int | None = None, inits: int = 1,
        batch_size: int = 32, cache_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure the gap of each encoder on each dataset's `n_images` (split test, seeded subset)."""
    from ..data import load_dataset
    from ..encoders import get_encoder
    from ..encoders.extraction import extract
    from ..metrics import measure
    from ..records import new_record, save_record

    encoders = tuple((QUICK_ENCODERS if quick else DEFAULT_ENCODERS) if encoders is None else encoders)
    n_images = int(n_images if n_images is not None else (48 if quick else 300))
    for key, value in (("n_images", n_images), ("inits", inits), ("batch_size", batch_size)):
        check_positive(key, value)
    if not encoders or not datasets:
        raise GapkitError("encoders and datasets must each name at least one")
    rows: list[dict[str, Any]] = []
    for name in encoders:
        random_init = name.startswith("open_clip")
        for init in range(inits if random_init else 1):
            enc = get_encoder(name, seed=seed + init)
            for dname in datasets:
                ds = load_dataset(dname, "test", seed=seed, limit=n_images, cache_dir=cache_dir)
                pe = extract(enc, ds, batch_size=batch_size, cache_dir=cache_dir, progress=progress)
                m = measure(pe.image, pe.text, pe.text_to_image, metrics=list(METRICS), seed=seed)
                rows.append({"encoder": enc.name, "init_seed": seed + init if random_init else None,
                             "dataset": dname, **m})
    out = Path(out_dir)
    record = new_record("experiment", params={"datasets": list(datasets), "encoders": list(encoders),
                                              "n_images": n_images, "inits": inits, "quick": quick},
                        results={"rows": rows}, seed=seed, experiment="gap-at-birth")
    save_record(record, out / "record.json")
    return record


EXPERIMENTS = {
    "gap-at-birth": Experiment(
        "gap-at-birth", run,
        "modality gap of pretrained towers with untrained heads and of random-init open_clip ViT-B-32/RN50 "
        "on emoji and openclipart, before any contrastive training",
        "Jina AI blog Fig. 2; Liang et al. 2022 Fig. 2a/c"),
}
