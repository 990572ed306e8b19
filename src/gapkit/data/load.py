"""`load_dataset(name_or_path, split, seed)`: the one entry point for images + captions.

Names: "fashion-mnist" (official train/test split; "val" is not defined), "emoji", "openclipart";
anything else is a path to user data (see `gapkit.data.readers.open_user_dataset`).

Splits of datasets without an official split are deterministic functions of `seed`: the images are
permuted with numpy's default_rng(seed) and cut at 70 % / 80 % into train / val / test ("all" keeps
everything). Splitting is by image, so all captions of an image land in the same split. `limit`
keeps a seeded random subset of that many images of the split (kept in dataset order).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import GapkitError
from .cache import cached_build, fingerprint
from .dataset import ImageTextDataset
from .problems import call_with_options

SPLIT_FRACTIONS = {"train": (0.0, 0.7), "val": (0.7, 0.8), "test": (0.8, 1.0), "all": (0.0, 1.0)}
# Bump when a builder's output changes, so old prepared caches are not reused.
BUILDER_VERSION = 1
# Version of the openclipart builder and the user readers alone (2: images above max_pixels are
# skipped, CSV columns are auto-detected), so emoji caches stay valid.
FILE_READER_VERSION = 2


def split_indices(n: int, split: str, seed: int = 0) -> np.ndarray:
    """Sorted image indices of `split` among n images: a seeded permutation cut at 70 % / 80 %."""
    if split not in SPLIT_FRACTIONS:
        raise GapkitError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_FRACTIONS)}")
    if split == "all":
        return np.arange(n)
    lo, hi = SPLIT_FRACTIONS[split]
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[int(round(lo * n)): int(round(hi * n))])


def _limit(ds: ImageTextDataset, limit: int | None, seed: int) -> ImageTextDataset:
    if limit is None or limit >= ds.n_images:
        return ds
    if limit <= 0:
        raise GapkitError(f"limit must be positive, got {limit}")
    pick = np.sort(np.random.default_rng([seed, 1]).choice(ds.n_images, size=limit, replace=False))
    return ds.subset(pick)


def _builtin(name: str, cache_dir: Any, refresh: bool, **kw: Any) -> ImageTextDataset:
    if name == "emoji":
        from .emoji import build_emoji, emoji_sources

        key = f"emoji-{fingerprint(emoji_sources(), BUILDER_VERSION, kw)}"
        return cached_build(key, lambda: call_with_options(build_emoji, "emoji", **kw), cache_dir, refresh)
    from .debian import OPENCLIPART_PNG_DIR, OPENCLIPART_SVG_DIR, require
    from .openclipart import build_openclipart

    roots = [require(OPENCLIPART_PNG_DIR), require(OPENCLIPART_SVG_DIR)]
    key = f"openclipart-{fingerprint(roots, BUILDER_VERSION, FILE_READER_VERSION, kw)}"
    return cached_build(key, lambda: call_with_options(build_openclipart, "openclipart", **kw), cache_dir, refresh)


BUILTIN: dict[str, str] = {
    "fashion-mnist": "Fashion-MNIST 60k/10k grey 28x28, 10 classes, templated captions (dataset-fashion-mnist)",
    "emoji": "~1.5k Noto Color Emoji glyphs, 2-3 captions each from Unicode names + CLDR (fonts-noto-color-emoji, unicode-cldr-core)",
    "openclipart": "~8.1k clip-art PNGs, 22 categories, captions from SVG metadata (openclipart-png, openclipart-svg)",
}


def load_dataset(name: str | os.PathLike, split: str = "test", seed: int = 0, *,
                 limit: int | None = None, cache_dir: str | os.PathLike | None = None,
                 refresh: bool = False, **kw: Any) -> ImageTextDataset:
    """Load a built-in dataset by name or a user dataset by path, then take `split` (and `limit`).

    Extra keywords go to the builder or reader (e.g. templates=[...] for fashion-mnist,
    sep=",", img_key=..., caption_key=..., strict=True for user data, max_pixels=... for
    openclipart and user data: images above it are skipped with a counted warning).
    """
    key = str(name)
    if key == "fashion-mnist":
        from .fashion_mnist import build_fashion_mnist

        if split not in ("train", "test"):
            raise GapkitError(f"fashion-mnist has the official splits 'train' and 'test', not {split!r}")
        ds = call_with_options(build_fashion_mnist, "fashion-mnist", split, cache_dir=cache_dir, **kw)
    elif key in BUILTIN:
        full = _builtin(key, cache_dir, refresh, **kw)
        ds = full.subset(split_indices(full.n_images, split, seed))
    else:
        from .readers import open_user_dataset

        full = _cached_user(Path(key), cache_dir, refresh, kw, open_user_dataset)
        ds = full.subset(split_indices(full.n_images, split, seed))
    ds.info.update(split=split, seed=seed, limit=limit)
    return _limit(ds, limit, seed)


def _cached_user(path: Path, cache_dir: Any, refresh: bool, kw: dict[str, Any],
                 reader: Callable[..., ImageTextDataset]) -> ImageTextDataset:
    """User data is verified (every image opened) once; the verified index is cached by fingerprint."""
    if not path.exists():
        known = ", ".join(BUILTIN)
        raise GapkitError(f"dataset {str(path)!r} is neither a built-in name ({known}) nor an existing path")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    key = f"user-{path.name}-{fingerprint([path.resolve(), *files], BUILDER_VERSION, FILE_READER_VERSION, kw)}"
    ds = cached_build(key, lambda: reader(path, **kw), cache_dir, refresh)
    if not refresh and not _files_still_under_root(ds):
        # an image was replaced by a link since the index was cached: rebuild, so the readers'
        # root check (which refuses links out of the root) runs again instead of trusting the cache
        ds = cached_build(key, lambda: reader(path, **kw), cache_dir, refresh=True)
    return ds


def _files_still_under_root(ds: ImageTextDataset) -> bool:
    """True when every cached image path still resolves to itself inside the dataset root."""
    paths = getattr(ds.images, "paths", None)
    root = ds.info.get("root")
    if paths is None or not root:
        return True
    root_r = os.path.realpath(root)
    prefix = root_r.rstrip(os.sep) + os.sep
    return all(os.path.realpath(p) == p and p.startswith(prefix) for p in paths)
