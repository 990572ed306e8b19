"""gapkit.data: images + captions from the offline real datasets and from user files.

    >>> from gapkit.data import load_dataset, load_fashion_mnist
    >>> ds = load_dataset("emoji", split="test", seed=0)     # doctest: +SKIP
    >>> ds.n_images, len(ds.captions), ds.image(0).size      # doctest: +SKIP

Every loader returns an `ImageTextDataset` (lazy RGB images, captions, text_to_image map, optional
labels/class names, image ids). Samplers for contrastive batches live in `gapkit.data.samplers`.
"""
from __future__ import annotations

from .cache import cache_root
from .dataset import ImageTextDataset, resolve_under
from .fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from .fashion_mnist import PROMPT_TEMPLATES as FASHION_MNIST_TEMPLATES
from .fashion_mnist import load_fashion_mnist
from .load import BUILTIN, load_dataset, split_indices
from .problems import DataWarning

__all__ = [
    "ImageTextDataset", "load_dataset", "load_fashion_mnist", "split_indices", "cache_root", "resolve_under",
    "BUILTIN", "DataWarning", "FASHION_MNIST_CLASSES", "FASHION_MNIST_TEMPLATES",
]
