"""Fashion-MNIST (Debian `dataset-fashion-mnist`): 60k train + 10k test 28x28 grey images, 10 classes.

The idx files are parsed once and cached as .npy (loading then takes milliseconds). Captions are
prompt templates filled with the class name ("a photo of a sneaker."): one per template per image.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import GapkitError
from .cache import cache_root, fingerprint
from .dataset import ArrayImages, ImageTextDataset
from .debian import FASHION_MNIST_DIR, require

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# The words used inside prompts (lower case, no slash): what a caption writer would say.
PROMPT_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
PROMPT_TEMPLATES = [
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a product photo of a {}.",
    "a centered photo of a {}.",
]
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic 0x00 0x00 dtype ndim, big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise GapkitError(f"{path}: unreadable idx file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise GapkitError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(dims)):
        raise GapkitError(f"{path}: idx header says {dims} but the file holds {len(raw) - start} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def load_fashion_mnist(split: str = "test", cache_dir: str | os.PathLike | None = None
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, 28, 28), labels int64 (N,), class_names) for split "train" (60k) or "test" (10k)."""
    if split not in _FILES:
        raise GapkitError(f"fashion-mnist has splits 'train' and 'test', not {split!r}")
    root = require(FASHION_MNIST_DIR)
    img_file, lab_file = (root / f for f in _FILES[split])
    for f in (img_file, lab_file):
        if not f.is_file():
            raise GapkitError(f"{f} not found: reinstall with `sudo apt-get install --reinstall dataset-fashion-mnist`")
    key = fingerprint([img_file, lab_file], "fashion-mnist", 1)
    cdir = cache_root(cache_dir) / "fashion-mnist" / f"{split}-{key}"
    if (cdir / "labels.npy").is_file():
        return (np.load(cdir / "images.npy", mmap_mode="r"), np.load(cdir / "labels.npy"), list(CLASS_NAMES))
    images, labels = read_idx(img_file), read_idx(lab_file).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise GapkitError(f"fashion-mnist {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    _save_arrays(cdir, images=images, labels=labels)
    return images, labels, list(CLASS_NAMES)


def _save_arrays(cdir: Path, **arrays: np.ndarray) -> None:
    from ..atomic import atomic_dir

    try:
        with atomic_dir(cdir) as tmp:
            for name, a in arrays.items():
                np.save(tmp / f"{name}.npy", a)
    except OSError:  # read-only cache: fine, we just parse again next time
        pass


def build_fashion_mnist(split: str = "test", templates: list[str] | None = None,
                        cache_dir: str | os.PathLike | None = None) -> ImageTextDataset:
    """Fashion-MNIST as an ImageTextDataset: each image gets one caption per template."""
    images, labels, names = load_fashion_mnist(split, cache_dir=cache_dir)
    templates = templates or PROMPT_TEMPLATES[:1]
    n, t = len(labels), len(templates)
    # Caption j*t + k is template k of image j: an image's captions are contiguous.
    captions = [tpl.format(PROMPT_NAMES[c]) for c in labels.tolist() for tpl in templates]
    return ImageTextDataset(
        images=ArrayImages(images), captions=captions, text_to_image=np.repeat(np.arange(n), t),
        image_ids=[f"{split}/{i}" for i in range(n)], labels=labels, class_names=names,
        name="fashion-mnist", info={"split": split, "templates": templates, "prompt_names": PROMPT_NAMES},
    )
