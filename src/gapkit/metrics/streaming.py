"""Streaming measurement: one pass over shards far larger than memory, with bounded RSS.

`StreamAccumulator.update(image_chunk, text_chunk)` folds 1:1 pairs into
  - exact sums: the geometry state (centroids, paired cosines, cone means, RMG), the gap
    statistics state and each modality's D x D Gram matrix (spectrum, effective rank);
  - a uniform random reservoir of `reservoir` pairs: pair number r (its global row) gets the key
    u(seed, r), a hash of (seed, r) mapped to [0, 1) (SplitMix64), and the `reservoir` smallest keys
    are kept. The key depends on the row, not on the order rows arrive in, so any split of the
    rows into shards and chunks, merged in any order, keeps exactly the same sample.
`merge(other)` combines accumulators built in other processes (or threads) on other shards; give
each shard's `update` its global first row (`first_row=`) so the keys match a single pass.
`compute()` orders the reservoir by global row before measuring it, so the result is the same
number however the rows were split (the exact sums differ only by float64 rounding).
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
from dataclasses import dataclass
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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_keys(seed: int, rows: np.ndarray) -> np.ndarray:
    """u(seed, r) in [0, 1) for every global row r: SplitMix64 of (seed * golden + r), top 53 bits.

    A counter-based hash instead of a sequential RNG, so a row's key does not depend on which
    shard, chunk or process saw it (Steele et al. 2014, "Fast splittable pseudorandom number
    generators", the SplitMix64 finaliser).
    """
    with np.errstate(over="ignore"):
        z = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.asarray(rows, dtype=np.uint64) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class Reservoir:
    """A uniform random sample of at most `size` (image, text) row pairs, mergeable.

    keys (k,), rows (k,) global row numbers, image / text (k, D) float32.
    """

    def __init__(self, size: int, dim: int) -> None:
        self.size = size
        self.keys = np.zeros(0)
        self.rows = np.zeros(0, dtype=np.int64)
        self.image = np.zeros((0, dim), dtype=np.float32)
        self.text = np.zeros((0, dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.image.shape[1])

    def _keep(self, keys: np.ndarray, rows: np.ndarray, image: np.ndarray, text: np.ndarray) -> None:
        if keys.size > self.size:
            idx = np.argpartition(keys, self.size - 1)[: self.size]
            keys, rows, image, text = keys[idx], rows[idx], image[idx], text[idx]
        self.keys, self.rows, self.image, self.text = keys, rows, image, text

    def update(self, image: np.ndarray, text: np.ndarray, rows: np.ndarray, seed: int) -> None:
        """Offer pairs with global row numbers `rows` (n,); keys are row_keys(seed, rows)."""
        keys = row_keys(seed, rows)
        if self.keys.size >= self.size:  # only rows that beat the current worst key can enter
            take = keys < self.keys.max()
            keys, rows, image, text = keys[take], rows[take], image[take], text[take]
        self._keep(np.concatenate([self.keys, keys]), np.concatenate([self.rows, rows]),
                   np.concatenate([self.image, image.astype(np.float32)]),
                   np.concatenate([self.text, text.astype(np.float32)]))

    def merge(self, other: "Reservoir") -> None:
        if other.dim != self.dim:
            raise GapkitError(f"cannot merge pairs of dim {other.dim} into pairs of dim {self.dim} "
                              "(mixed dimensions across shards)")
        self._keep(np.concatenate([self.keys, other.keys]), np.concatenate([self.rows, other.rows]),
                   np.concatenate([self.image, other.image]), np.concatenate([self.text, other.text]))

    def in_row_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(image, text) of the sample sorted by global row (ties by key): a split-independent order."""
        order = np.lexsort((self.keys, self.rows))
        return self.image[order], self.text[order]


class StreamAccumulator:
    """update(image_chunk, text_chunk) / merge(other) / compute() (see module doc)."""

    def __init__(self, reservoir: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        self.reservoir_size = reservoir
        self.seed = seed
        self.next_row = 0  # global row of the next pair when update() is not told
        self.geometry: GeometryState | None = None
        self.gapstats: GapStatsState | None = None
        self.reservoir: Reservoir | None = None

    def update(self, image: Any, text: Any, first_row: int | None = None) -> "StreamAccumulator":
        """Fold 1:1 pairs (n, D), (n, D); they are global rows first_row .. first_row + n - 1
        (default: right after the rows this accumulator saw last)."""
        p = prepare(image, text)
        g, s = geometry_state(p), gapstats_state(p, moment_state(p.image), moment_state(p.text))
        if self.reservoir is None:
            self.reservoir = Reservoir(self.reservoir_size, p.dim)
        elif p.dim != self.reservoir.image.shape[1]:
            raise GapkitError(f"chunk has dim {p.dim}, earlier chunks had {self.reservoir.image.shape[1]}")
        self.geometry = g if self.geometry is None else self.geometry + g
        self.gapstats = s if self.gapstats is None else self.gapstats + s
        start = self.next_row if first_row is None else int(first_row)
        self.reservoir.update(p.image, p.text, np.arange(start, start + p.n_image, dtype=np.int64), self.seed)
        self.next_row = start + p.n_image
        return self

    def merge(self, other: "StreamAccumulator") -> "StreamAccumulator":
        if other.geometry is None:
            return self
        if self.geometry is None:
            self.geometry, self.gapstats, self.reservoir = other.geometry, other.gapstats, other.reservoir
            return self
        self.reservoir.merge(other.reservoir)  # checks the dimensions first
        self.geometry = self.geometry + other.geometry
        self.gapstats = self.gapstats + other.gapstats
        return self

    @property
    def n(self) -> int:
        return 0 if self.geometry is None else int(self.geometry.n_image)

    def compute(self, **measure_kw: Any) -> dict[str, float]:
        """Streamed metrics as one flat dict (keys as in `measure`)."""
        if self.geometry is None:
            raise GapkitError("no pairs were streamed (empty input)")
        res = self.reservoir
        sample = Pairs(*res.in_row_order(), np.arange(res.keys.size, dtype=np.int64), True)
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
    from ..embeddings import load_embeddings
    from ..shards import list_shards, read_shard

    if isinstance(shards, (str, Path)):
        p = Path(shards)
        if p.is_dir():
            for shard in list_shards(p):
                yield read_shard(shard)
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


def shard_chunks(image: np.ndarray, text: np.ndarray,
                 chunk_rows: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(start, image chunk, text chunk) of one shard, upcast to float32 (float64 stays float64),
    releasing mapped pages as it goes. Chunks restart at every shard, so a per-shard task sees the
    same chunks as a single pass (and the same float rounding)."""
    if image.shape[0] != text.shape[0]:
        raise GapkitError(f"a shard has {image.shape[0]} image rows but {text.shape[0]} text rows")
    dt = np.float64 if image.dtype == np.float64 else np.float32
    for s in range(0, image.shape[0], chunk_rows):
        yield s, np.array(image[s : s + chunk_rows], dtype=dt), np.array(text[s : s + chunk_rows], dtype=dt)
        _release(image)
        _release(text)


def iter_chunks(shards: Any, chunk_rows: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Upcast (chunk_rows, D) float32 chunks of every shard, releasing mapped pages as it goes."""
    for image, text in _shard_pairs(shards):
        for _, a, b in shard_chunks(image, text, chunk_rows):
            yield a, b


@dataclass(frozen=True)
class ShardJob:
    """What one shard task needs: the shard (with its global first row) and the accumulator settings."""

    shard: Any  # gapkit.shards.Shard
    reservoir: int = DEFAULT_RESERVOIR
    seed: int = 0
    chunk_rows: int = DEFAULT_CHUNK


def shard_accumulator(job: ShardJob) -> StreamAccumulator:
    """The StreamAccumulator of one shard (runs on a worker; reads the shard itself)."""
    from ..shards import read_shard

    acc = StreamAccumulator(job.reservoir, job.seed)
    image, text = read_shard(job.shard)
    for start, a, b in shard_chunks(image, text, job.chunk_rows):
        acc.update(a, b, first_row=job.shard.first_row + start)
    return acc


def merge_accumulators(a: StreamAccumulator, b: StreamAccumulator) -> StreamAccumulator:
    """a.merge(b): the reduction the engines run in a tree."""
    return a.merge(b)


def measure_stream(shards: Any, *, reservoir: int = DEFAULT_RESERVOIR, seed: int = 0,
                   chunk_rows: int = DEFAULT_CHUNK, progress: bool = False, engine: Any = None,
                   address: str | None = None, **measure_kw: Any) -> dict[str, float]:
    """Stream 1:1 pairs from `shards` and return the metrics of `StreamAccumulator.compute`.

    `shards`: a shard folder (clip-retrieval layout, embed dirs, parquet or .npy stacks, see
    gapkit.shards), one file or a list of files in any format of gapkit.embeddings ((2, N, D) .npy
    stacks are memory-mapped), or an iterable of (image, text) arrays (memmaps welcome).
    `engine`: None reads everything in this process, one chunk after the other; "local" or "ray"
    (with `address`, see gapkit.engines) run one task per shard of a shard folder and merge the
    accumulators in a tree; the metrics equal the single pass to float64 rounding.
    """
    if engine is not None:
        return measure_shards(shards, reservoir=reservoir, seed=seed, chunk_rows=chunk_rows, progress=progress,
                              engine=engine, address=address, **measure_kw)
    acc = StreamAccumulator(reservoir, seed)
    chunks: Iterable = iter_chunks(shards, chunk_rows)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="streaming", unit="chunk")
    for image, text in chunks:
        acc.update(image, text)
    return acc.compute(**measure_kw)


def measure_shards(folder: Any, *, engine: Any = "local", address: str | None = None,
                   reservoir: int = DEFAULT_RESERVOIR, seed: int = 0, chunk_rows: int = DEFAULT_CHUNK,
                   progress: bool = False, **measure_kw: Any) -> dict[str, float]:
    """One task per shard of `folder` computes its StreamAccumulator; the engine merges them in a
    fixed tree; the driver computes the metrics from the merged state (see measure_stream)."""
    from ..engines import get_engine
    from ..shards import list_shards

    if not isinstance(folder, (str, Path)) or not Path(folder).is_dir():
        raise GapkitError("a sharded measurement reads one shard folder (clip-retrieval, embed dirs, parquet "
                          "or .npy stacks)")
    jobs = [ShardJob(s, reservoir, seed, chunk_rows) for s in list_shards(folder)]
    eng = get_engine(engine, address=address, progress=progress)
    try:
        acc = eng.map_reduce(shard_accumulator, jobs, merge_accumulators, desc="measure")
    finally:
        if eng is not engine:
            eng.close()
    return acc.compute(**measure_kw)
