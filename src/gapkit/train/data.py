"""Training data as in-memory tensors, and the deterministic batch order.

An ImageTextDataset (gapkit.data) is decoded once into uint8 pixels (N, C, S, S) at the model's
image size and int64 token ids (M, L). One epoch visits every caption once; caption j is paired
with image text_to_image[j], so multi-caption data (emoji, COCO) contribute one pair per caption.

The batch order is a pure function of (seed, step): epoch e uses the permutation drawn by
numpy's default_rng([seed, e]). A resumed run therefore needs nothing but the step to continue
with exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..errors import GapkitError
from ..models.preprocess import pil_to_uint8


@dataclass
class PairData:
    """Images (N, C, S, S) uint8, tokens (M, L) int64, text_to_image (M,) int64, and labels."""

    images: torch.Tensor
    tokens: torch.Tensor
    text_to_image: torch.Tensor
    captions: list[str]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None

    @property
    def n_texts(self) -> int:
        return int(self.tokens.shape[0])

    def subset_texts(self, idx: np.ndarray) -> "PairData":
        """Keep the captions `idx` and only the images they refer to (re-indexed)."""
        t2i = self.text_to_image.numpy()[idx]
        keep, new_t2i = np.unique(t2i, return_inverse=True)
        return PairData(self.images[torch.from_numpy(keep)], self.tokens[torch.from_numpy(idx)],
                        torch.from_numpy(new_t2i.astype(np.int64)), [self.captions[i] for i in idx],
                        None if self.labels is None else self.labels[keep], self.class_names)


def prepare(dataset: Any, image_size: int, tokenizer: Callable[[list[str]], torch.Tensor],
            channels: int = 3, max_texts: int = 0, seed: int = 0) -> PairData:
    """Decode a dataset (n_images, image(i), captions, text_to_image, labels, class_names).

    With max_texts > 0 a seeded subset of that many captions is kept, and only the images those
    captions refer to are decoded.
    """
    for attr in ("n_images", "image", "captions", "text_to_image"):
        if not hasattr(dataset, attr):
            raise GapkitError(f"dataset object lacks '{attr}' (expected a gapkit.data ImageTextDataset)")
    captions = list(dataset.captions)
    t2i = np.asarray(dataset.text_to_image, dtype=np.int64)
    if len(captions) == 0:
        raise GapkitError("dataset has no captions")
    rows = np.arange(len(captions))
    if max_texts and max_texts < len(captions):
        rows = np.sort(np.random.default_rng([seed, 7]).choice(len(captions), max_texts, replace=False))
    keep, new_t2i = np.unique(t2i[rows], return_inverse=True)
    images = np.stack([pil_to_uint8(dataset.image(int(i)), image_size, channels) for i in keep])
    labels = getattr(dataset, "labels", None)
    return PairData(torch.from_numpy(images), tokenizer([captions[j] for j in rows]),
                    torch.from_numpy(new_t2i.astype(np.int64)), [captions[j] for j in rows],
                    None if labels is None else np.asarray(labels)[keep], getattr(dataset, "class_names", None))


def eval_subset(data: PairData, n_images: int, seed: int) -> PairData:
    """A fixed subset: `n_images` images drawn with `seed` and all of their captions."""
    n = int(data.images.shape[0])
    if n_images >= n:
        return data
    chosen = np.random.default_rng([seed, 11]).choice(n, n_images, replace=False)
    keep = np.flatnonzero(np.isin(data.text_to_image.numpy(), chosen))
    return data.subset_texts(keep)


class StepBatches:
    """Step-indexed view of an epoch-based gapkit.data sampler: `batch(step)`, `position(step)`.

    The gapkit.data samplers draw epoch e from default_rng([seed, e]); setting their `epoch`
    before iterating makes the batch of any step a pure function of (seed, step).
    """

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.per_epoch = len(sampler)
        if self.per_epoch < 1:
            raise GapkitError("the sampler yields no batch per epoch")
        self._cache: tuple[int, list[list[int]]] | None = None

    def position(self, step: int) -> dict[str, int]:
        return {"epoch": step // self.per_epoch, "batch": step % self.per_epoch}

    def batch(self, step: int) -> np.ndarray:
        pos = self.position(step)
        if self._cache is None or self._cache[0] != pos["epoch"]:
            self.sampler.epoch = pos["epoch"]
            self._cache = (pos["epoch"], list(iter(self.sampler)))
        return np.asarray(self._cache[1][pos["batch"]], dtype=np.int64)


SAMPLERS = ("random", "duplicates")


def make_batches(name: str, data: PairData, batch_size: int, seed: int, **kw: Any) -> StepBatches:
    """"random" (a permutation per epoch) or "duplicates" (false-negative-heavy batches: groups of
    `per_group` captions of one image, or of one class with group="class"); gapkit.data.samplers."""
    from ..data.samplers import DuplicateHeavyBatchSampler, RandomBatchSampler

    if name == "random":
        return StepBatches(RandomBatchSampler(data.n_texts, batch_size, seed))
    if name == "duplicates":
        group = kw.pop("group", "image")
        t2i = data.text_to_image.numpy()
        if group == "class":
            if data.labels is None:
                raise GapkitError("sampler duplicates with group='class' needs a dataset with labels")
            groups = data.labels[t2i]
        elif group == "image":
            groups = t2i
        else:
            raise GapkitError(f"sampler group must be 'image' or 'class', got '{group}'")
        return StepBatches(DuplicateHeavyBatchSampler(groups, batch_size, seed=seed, **kw))
    raise GapkitError(f"unknown sampler '{name}'; known: {', '.join(SAMPLERS)}")
