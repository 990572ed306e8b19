"""Streaming measurement: one pass over shards far larger than memory, with bounded RSS.

`StreamAccumulator.update(image_chunk, text_chunk)` folds 1:1 pairs into
  - exact sums: the geometry state (centroids, paired cosines, cone means, RMG), the gap
    statistics state and each modality's D x D Gram matrix (spectrum, effective rank);
  - a uniform random reservoir of `reservoir` pairs (each pair gets a uniform random key; the
    `reservoir` smallest keys are kept), so merging two accumulators keeps a uniform sample of
    the union.
`merge(other)` combines accumulators built in other processes (or threads) on other shards.
`compute()` returns the exact streamed metrics, and for the pairwise ones:
  - when every pair fits in the reservoir, the reservoir IS the data and every family runs
    exactly as in `measure` (so streaming == one-shot);
  - otherwise uniformity (computed exactly on the reservoir: a U-statistic on a uniform random
    subset of rows is an unbiased estimate of the full one; its CI comes from the U-statistic
    variance, see gapkit.metrics.pairwise), linear separability and the distribution gap come from
    the reservoir; retrieval, logit entropy, the cone minimum and the top-k-removal distances
    depend on every pair at once and are left out (run `measure` on a subset for those).
`measure_stream(shards)` reads shards chunk by chunk (memory-mapped .npy, clip-retrieval dirs,
or an iterable of (image, text) arrays), upcasts each chunk (float16 shards are fine) and hands
the mapped pages back to the OS after each chunk, so RSS stays bounded however large the data.
"""
from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import GapkitError
from ._prep import Pairs, prepare
from .gapstats import GapStatsState, gapstats_compute, gapstats_state
from .geometry import GeometryState, geometry_compute, geometry_state
from .spectrum import moment_metrics, moment_state

DEFAULT_RESERVOIR = 10_000
DEFAULT_CHUNK = 16_384


class Reservoir:
    """A uniform random sample of at most `size` (image, text) row pairs, mergeable."""

    def __init__(self, size: int, dim: int) -> None:
        self.size = size
        self.keys = np.zeros(0)
        self.image = np.zeros((0, dim), dtype=np.float32)
        self.text = np.zeros((0, dim), dtype=np.float32)

    def _keep(self, keys: np.ndarray, image: np.ndarray, text: np.ndarray) -> None:
        if keys.size > self.size:
            idx = np.argpartition(keys, self.size - 1)[: self.size]
            keys, image, text = keys[idx], image[idx], text[idx]
        self.keys, self.image, self.text = keys, image, text

    def update(self, image: np.ndarray, text: np.ndarray, rng: np.random.Generator) -> None:
        keys = rng.random(image.shape[0])
        if self.keys.size >= self.size:  # only rows that beat the current worst key can enter
            take = keys < self.keys.max()
            keys, image, text = keys[take], image[take], text[take]
        self._keep(np.concatenate([self.keys, keys]), np.concatenate([self.image, image.astype(np.float32)]),
                   np.concatenate([self.text, text.astype(np.float32)]))

    def merge(self, other: "Reservoir") -> None:
        self._keep(np.concatenate([self.keys, other.keys]), np.concatenate([self.image, other.image]),
                   np.concatenate([self.text, other.text]))


class StreamAccumulator:
    """update(image_chunk, text_chunk) / merge(other) / compute() (see module doc)."""

    def __init__(self, reservoir: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        self.reservoir_size = reservoir
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.geometry: GeometryState | None = None
        self.gapstats: GapStatsState | None = None
        self.reservoir: Reservoir | None = None

    def update(self, image: Any, text: Any) -> "StreamAccumulator":
        p = prepare(image, text)
        g, s = geometry_state(p), gapstats_state(p, moment_state(p.image), moment_state(p.text))
        if self.reservoir is None:
            self.reservoir = Reservoir(self.reservoir_size, p.dim)
        elif p.dim != self.reservoir.image.shape[1]:
            raise GapkitError(f"chunk has dim {p.dim}, earlier chunks had {self.reservoir.image.shape[1]}")
        self.geometry = g if self.geometry is None else self.geometry + g
        self.gapstats = s if self.gapstats is None else self.gapstats + s
        self.reservoir.update(p.image, p.text, self.rng)
        return self

    def merge(self, other: "StreamAccumulator") -> "StreamAccumulator":
        if other.geometry is None:
            return self
        if self.geometry is None:
            self.geometry, self.gapstats, self.reservoir = other.geometry, other.gapstats, other.reservoir
            return self
        self.geometry = self.geometry + other.geometry
        self.gapstats = self.gapstats + other.gapstats
        self.reservoir.merge(other.reservoir)
        return self

    @property
    def n(self) -> int:
        return 0 if self.geometry is None else int(self.geometry.n_image)

    def compute(self, **measure_kw: Any) -> dict[str, float]:
        """Streamed metrics as one flat dict (keys as in `measure`)."""
        if self.geometry is None:
            raise GapkitError("no pairs were streamed (empty input)")
        res = self.reservoir
        sample = Pairs(res.image, res.text, np.arange(res.keys.size, dtype=np.int64), True)
        if res.keys.size == self.n:  # the reservoir holds every pair: measure exactly
            from .report import measure

            out = measure(sample, seed=self.seed, **measure_kw)
        else:
            out = {"n_image": self.n, "n_text": self.n, "dim": sample.dim}
            out.update(self._from_reservoir(sample))
        out.update(geometry_compute(self.geometry))
        out.update(gapstats_compute(self.gapstats))
        out.update(self._spectrum())
        out.update({"n_image": self.n, "n_text": self.n, "stream_reservoir": float(res.keys.size)})
        return out

    def _spectrum(self) -> dict[str, float]:
        return moment_metrics(self.gapstats.image, self.gapstats.text)

    def _from_reservoir(self, sample: Pairs) -> dict[str, float]:
        from .distribution import distribution_metrics
        from .pairwise import cross_stat, within_stat
        from .separability import linear_separability

        n = sample.n_image
        out: dict[str, float] = {}
        for name, u in (("image", sample.image), ("text", sample.text)):
            out.update(within_stat(u, exact=True, subset_of=n)[0].as_dict(f"uniformity_{name}"))
        out.update(cross_stat(sample, exact=True, subset_of=n).as_dict("uniformity_cross"))
        out["linear_separability"] = linear_separability(sample, seed=self.seed)
        out.update(distribution_metrics(sample, seed=self.seed))
        return out


def _release(a: np.ndarray) -> None:
    """Hand the pages of a memory-mapped array back to the OS (they stay in the page cache);
    without this, every page ever read counts towards the process's RSS."""
    mm = getattr(a, "_mmap", None)  # numpy.memmap keeps its mmap object here
    if isinstance(mm, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def _shard_pairs(shards: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image, text) arrays of each shard, memory-mapped where the format allows."""
    from ..embeddings import iter_clip_retrieval_shards, load_embeddings

    if isinstance(shards, (str, Path)):
        p = Path(shards)
        if p.is_dir():
            yield from iter_clip_retrieval_shards(p)
            return
        shards = [p]
    for item in shards:
        if isinstance(item, (str, Path)):
            pe = load_embeddings(item, mmap=True)
            if not pe.one_to_one:
                raise GapkitError(f"{item}: streaming needs 1:1 pairs (this file has a text_to_image map)")
            yield pe.image, pe.text
        else:
            image, text = item
            yield image, text


def iter_chunks(shards: Any, chunk_rows: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Upcast (chunk_rows, D) float32 chunks of every shard, releasing mapped pages as it goes."""
    for image, text in _shard_pairs(shards):
        if image.shape[0] != text.shape[0]:
            raise GapkitError(f"a shard has {image.shape[0]} image rows but {text.shape[0]} text rows")
        for s in range(0, image.shape[0], chunk_rows):
            dt = np.float64 if image.dtype == np.float64 else np.float32
            yield np.array(image[s : s + chunk_rows], dtype=dt), np.array(text[s : s + chunk_rows], dtype=dt)
            _release(image)
            _release(text)


def measure_stream(shards: Any, *, reservoir: int = DEFAULT_RESERVOIR, seed: int = 0,
                   chunk_rows: int = DEFAULT_CHUNK, progress: bool = False, **measure_kw: Any) -> dict[str, float]:
    """Stream 1:1 pairs from `shards` and return the metrics of `StreamAccumulator.compute`.

    `shards`: a clip-retrieval output directory, one file or a list of files in any format of
    gapkit.embeddings ((2, N, D) .npy stacks are memory-mapped), or an iterable of (image, text)
    arrays (memmaps welcome).
    """
    acc = StreamAccumulator(reservoir, seed)
    chunks: Iterable = iter_chunks(shards, chunk_rows)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="streaming", unit="chunk")
    for image, text in chunks:
        acc.update(image, text)
    return acc.compute(**measure_kw)
