"""Batch samplers over caption rows (one training pair = caption j with image text_to_image[j]).

Both samplers yield lists of caption indices and can be passed to a torch DataLoader as
`batch_sampler=`. Every pass (`iter`) uses a new seed (seed, epoch), so epochs differ but a run
is reproducible.

- RandomBatchSampler: a permutation of all captions cut into batches (the usual CLIP batch).
- DuplicateHeavyBatchSampler: each batch holds `batch_size // per_group` groups with `per_group`
  captions each, where a group is an image (several captions of the same image) or a class. In a
  contrastive loss those same-group pairs are false negatives: the Jina blog's experiment shows
  they widen the modality gap.

`false_negative_rate(batch, groups)` = share of off-diagonal (i, j) pairs in a batch whose rows
belong to the same group: ~0 for random batches of a large dataset, (per_group - 1) / (B - 1)
for duplicate-heavy batches.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..errors import GapkitError


def _check_batch(batch_size: int, n: int) -> None:
    if batch_size < 2:
        raise GapkitError(f"batch_size must be >= 2 for contrastive batches, got {batch_size}")
    if n < batch_size:
        raise GapkitError(f"{n} captions are fewer than one batch of {batch_size}")


class RandomBatchSampler:
    """Shuffled batches of caption indices; the last partial batch is dropped when drop_last."""

    def __init__(self, n_items: int, batch_size: int, seed: int = 0, drop_last: bool = True) -> None:
        _check_batch(batch_size, n_items)
        self.n_items, self.batch_size, self.seed, self.drop_last = n_items, batch_size, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(self.n_items, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_items)
        self.epoch += 1
        for k in range(len(self)):
            yield perm[k * self.batch_size:(k + 1) * self.batch_size].tolist()


class DuplicateHeavyBatchSampler:
    """Batches made of groups: `per_group` captions from each of batch_size // per_group groups.

    `groups` is the (M,) group id of every caption: `dataset.text_to_image` groups by image,
    `dataset.labels[dataset.text_to_image]` by class. A group with fewer than `per_group` captions
    contributes all of them and is topped up by repeats of its own captions (still the same image).
    The number of batches per pass equals the random sampler's, so both arms see as many steps.
    """

    def __init__(self, groups: Sequence[int] | np.ndarray, batch_size: int, per_group: int = 4,
                 seed: int = 0) -> None:
        g = np.asarray(groups)
        if g.ndim != 1:
            raise GapkitError(f"groups must be a 1-D array of group ids, got shape {g.shape}")
        _check_batch(batch_size, g.size)
        if not 2 <= per_group <= batch_size or batch_size % per_group:
            raise GapkitError(f"per_group must be >= 2 and divide batch_size {batch_size}, got {per_group}")
        _, inverse = np.unique(g, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        self.members = np.split(order, bounds)  # caption indices of each group
        if len(self.members) < batch_size // per_group:
            raise GapkitError(f"{len(self.members)} groups are fewer than the {batch_size // per_group} a batch needs")
        self.batch_size, self.per_group, self.seed, self.n_items = batch_size, per_group, seed, g.size
        self.epoch = 0

    def __len__(self) -> int:
        return self.n_items // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n_groups = self.batch_size // self.per_group
        for _ in range(len(self)):
            batch: list[int] = []
            for gi in rng.choice(len(self.members), size=n_groups, replace=False):
                mem = self.members[gi]
                batch += rng.choice(mem, size=self.per_group, replace=mem.size < self.per_group).tolist()
            yield batch


def false_negative_rate(batch: Sequence[int], groups: np.ndarray) -> float:
    """Share of ordered off-diagonal pairs (i != j) of the batch whose captions share a group."""
    g = np.asarray(groups)[np.asarray(batch)]
    same = (g[:, None] == g[None, :]).sum() - g.size
    return float(same / (g.size * (g.size - 1)))
