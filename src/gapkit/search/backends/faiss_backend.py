"""FAISS backend (faiss-cpu): one index per role, inner product on unit vectors (= cosine).

kind:
  flat   IndexFlatIP, exact (same top-k as the NumPy reference up to float rounding)
  hnsw   IndexHNSWFlat(D, m, METRIC_INNER_PRODUCT); ef_construction at build, ef_search at query
  ivf    IndexIVFFlat with nlist k-means cells trained on a sample; nprobe cells per query
  ivfsq  IndexIVFScalarQuantizer (8-bit codes, 1 byte per dimension: 256 MB per 500k x 512) with
         nlist cells; a query takes the top k * refine candidates by the quantised inner product
         from nprobe cells, then re-ranks them exactly by the float32 vectors of ROLE.f32
         (memory-mapped; only the candidates' rows are read): top k by <q, v> exactly
  auto   flat for partitions up to flat_max rows, ivfsq above (default; HNSW builds cost minutes
         per 100k rows on 2 cores, IVF-SQ8 builds a 500k partition in about a minute)
nlist 0 means 4 sqrt(n) cells (n = the partition's rows, at most 16,384). The k-means of the IVF
kinds runs kmeans_iter iterations on a sample of max(train_rows, 39 nlist) rows.
Vectors are staged in ROLE.f32 while adding (streamed, bounded memory), the index is built at
finish() and written as ROLE.faiss (FAISS's own binary format, no pickle); the staging file is
then deleted, except for ivfsq with refine > 0, which keeps it as the exact re-rank store. Memory: the staging file is read in chunks (never memory-mapped whole, so its pages
do not add to the build's resident set), each role's index is dropped once written, and IVF
indexes are opened with FAISS's IO_FLAG_MMAP (their inverted lists stay on disk, paged in by the
cells a query probes), so a 1M x 512 build peaks near one role's index, not all of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GapkitError
from ...threads import scoped_threads
from .base import Backend, topk_desc

KINDS = ("auto", "flat", "hnsw", "ivf", "ivfsq")
IVF_KINDS = ("ivf", "ivfsq")
DEFAULTS: dict[str, Any] = {"kind": "auto", "flat_max": 50_000, "m": 32, "ef_construction": 80, "ef_search": 128,
                            "nlist": 0, "nprobe": 32, "refine": 4, "train_rows": 65_536, "kmeans_iter": 10}
SEARCH_PARAMS = ("ef_search", "nprobe", "refine")
POSITIVE = ("nprobe", "ef_search", "kmeans_iter")


def _check_int(key: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise GapkitError(f"faiss backend: {key} must be an integer >= {low}, got {value!r}")
ADD_CHUNK = 65_536
# faiss inserts into an HNSW graph from all OpenMP threads, locking each node it links; for small
# graphs the threads mostly wait on each other when the other core is busy: 1,300 x 256 rows took
# 0.63 s on two threads and 0.10 s on one, 10,000 rows 3.1 s and 2.2 s (2 cores, under load); idle,
# one thread costs ~10 % (benchmarks/bench_demo_parts.py). Below this size one thread.
HNSW_SERIAL_MAX = 20_000


def _omp_threads(n: int | None) -> Any:
    """Context manager: faiss's OpenMP threads set to n inside the block (None: unchanged), restored after."""
    faiss = _faiss()
    return scoped_threads(faiss.omp_get_max_threads, faiss.omp_set_num_threads, n)


def _faiss() -> Any:
    import faiss

    return faiss


def _read(f: Path, kind: str) -> Any:
    """Open ROLE.faiss: IVF-Flat memory-mapped (IO_FLAG_MMAP: 2 GB of float32 lists per 1M x 512
    stay on disk), the others read into memory. ivfsq is read into memory on purpose: its 8-bit
    codes are a quarter of the size, and with faiss 1.15 a memory-mapped IVF index costs ~4 ms of
    fixed overhead per query even with every page cached (measured: 0.13 ms read vs 4.0 ms mapped,
    10k rows, nprobe 32), which alone would eat a fifth of the 20 ms latency budget."""
    faiss = _faiss()
    return faiss.read_index(str(f), faiss.IO_FLAG_MMAP) if kind == "ivf" else faiss.read_index(str(f))


def nlist_for(n: int) -> int:
    """Default number of IVF cells for a partition of n rows: 4 sqrt(n), in [1, 16384]."""
    return max(1, min(16_384, int(4 * np.sqrt(n))))


class _StagedRows:
    """Row slices of the float32 staging file, read with np.fromfile (a bounded buffer per slice,
    no memory map whose touched pages would count in the resident set); fancy indexing reads the
    sorted rows one at a time (only for the k-means training sample)."""

    def __init__(self, path: Path, n: int, dim: int) -> None:
        self.path, self.shape, self._row = path, (n, dim), dim * 4

    def __getitem__(self, key: Any) -> np.ndarray:
        n, dim = self.shape
        if isinstance(key, slice):
            start, stop, _ = key.indices(n)
            count = max(0, stop - start)
            return np.fromfile(self.path, "<f4", count * dim, offset=start * self._row).reshape(count, dim)
        rows = np.asarray(key, np.int64)
        out = np.empty((rows.size, dim), np.float32)
        with open(self.path, "rb") as f:
            for j, r in enumerate(rows):
                f.seek(int(r) * self._row)
                out[j] = np.frombuffer(f.read(self._row), "<f4")
        return out


def rerank_exact(vectors: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k of each query among its candidates: vectors (n, D) (memory-mapped), q (Q, D),
    cand (Q, c) rows (-1 = none). Returns scores (Q, k) = <q_i, vectors[row]> in float32 descending,
    rows (Q, k) (-1 pads). Rows are read in ascending order (sequential reads of the memory map)."""
    scores = np.full(cand.shape, -np.inf, np.float32)
    for i in range(q.shape[0]):
        ok = np.flatnonzero(cand[i] >= 0)
        rows = cand[i, ok]
        order = np.argsort(rows)
        scores[i, ok[order]] = np.asarray(vectors[rows[order]]) @ q[i]
    top, col = topk_desc(scores, k)
    rows = np.take_along_axis(cand, np.maximum(col, 0), axis=1)
    rows[~np.isfinite(top)] = -1
    return top, rows.astype(np.int64)


class FaissBackend(Backend):
    name = "faiss"

    def __init__(self, path: Path, dim: int, **params: Any) -> None:
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise GapkitError(f"faiss backend has no parameter {', '.join(unknown)}; its parameters: "
                              f"{', '.join(DEFAULTS)}")
        merged = {**DEFAULTS, **params}
        if merged["kind"] not in KINDS:
            raise GapkitError(f"faiss backend: kind must be one of {', '.join(KINDS)}, got '{merged['kind']}'")
        super().__init__(path, dim, **merged)
        for key in ("nprobe", "ef_search", "kmeans_iter", "refine", "train_rows", "nlist", "flat_max"):
            _check_int(key, merged[key], 1 if key in POSITIVE else 0)
        self._index: dict[str, Any] = {}
        self._exact: dict[str, np.ndarray] = {}  # ivfsq re-rank stores, memory-mapped (n, D) float32
        self.kinds: dict[str, str] = {}
        self._loaded = True  # an empty backend has nothing to read; finish() clears this

    def _stage(self, role: str) -> Path:
        return self.path / f"{role}.f32"

    def add(self, vectors: np.ndarray, role: str) -> None:
        v = self._check_add(vectors, role)
        with open(self._stage(role), "ab") as f:
            f.write(v.astype("<f4", copy=False).tobytes())

    def _kind_for(self, n: int) -> str:
        kind = self.params["kind"]
        if kind == "auto":
            return "flat" if n <= int(self.params["flat_max"]) else "ivfsq"
        return kind

    def _build(self, rows: np.ndarray, kind: str) -> Any:
        faiss = _faiss()
        n, d = rows.shape
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(self.params["m"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(self.params["ef_construction"])
        else:
            nlist = int(self.params["nlist"]) or nlist_for(n)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                      faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = int(self.params["kmeans_iter"])
            take = np.random.default_rng(0).choice(n, min(n, max(int(self.params["train_rows"]), 39 * nlist)),
                                                   replace=False)
            index.train(np.ascontiguousarray(rows[np.sort(take)]))
        with _omp_threads(1 if kind == "hnsw" and n < HNSW_SERIAL_MAX else None):
            for s in range(0, n, ADD_CHUNK):
                index.add(np.ascontiguousarray(rows[s:s + ADD_CHUNK]))
        return index

    def finish(self) -> None:
        faiss = _faiss()
        for role, n in self.counts.items():
            stage = self._stage(role)
            kind = self._kind_for(n)
            index = self._build(_StagedRows(stage, n, self.dim), kind)
            faiss.write_index(index, str(self.path / f"{role}.faiss"))
            del index  # free it before the next role is built (peak RSS = one role)
            if not self._keeps_vectors(kind):
                stage.unlink()
            self.kinds[role] = kind
        # the indexes are not read back here: build_index opens the finished directory anyway, and
        # a second copy in memory would add to the build's peak RSS; search() reads them lazily
        self._loaded = False

    def _keeps_vectors(self, kind: str) -> bool:
        return kind == "ivfsq" and int(self.params["refine"]) > 0

    def _open_exact(self, role: str) -> None:
        """Memory-map ROLE.f32, the float32 re-rank store of an ivfsq partition with refine > 0."""
        if not self._keeps_vectors(self.kinds.get(role, "")):
            return
        f, n = self._stage(role), int(self.counts[role])
        if not f.is_file() or f.stat().st_size != n * self.dim * 4:
            raise GapkitError(f"{f}: missing or truncated float32 re-rank vectors (expected {n} x {self.dim})")
        self._exact[role] = np.memmap(f, "<f4", "r", shape=(n, self.dim))

    def _configure(self) -> None:
        for role, index in self._index.items():
            if self.kinds.get(role) == "hnsw":
                index.hnsw.efSearch = int(self.params["ef_search"])
            elif self.kinds.get(role) in IVF_KINDS:
                index.nprobe = int(self.params["nprobe"])

    def set_search_params(self, **params: Any) -> None:
        """Change ef_search / nprobe / refine of an open index (e.g. to trade recall for speed;
        refine only between values > 0: a partition built with refine 0 has no float32 store)."""
        for k, v in params.items():
            if k not in SEARCH_PARAMS:
                raise GapkitError(f"faiss backend: only {', '.join(SEARCH_PARAMS)} can change after building, not {k}")
            _check_int(k, v, 1 if k in POSITIVE else 0)
            if k == "refine" and (v == 0) != (int(self.params["refine"]) == 0):
                raise GapkitError("faiss backend: refine can change between values > 0 only (the index was built "
                                  f"with refine {self.params['refine']})")
            self.params[k] = int(v)
        self._configure()

    def search(self, queries: np.ndarray, k: int, role: str) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if not self._loaded:
            self._load()
        index = self._index.get(role)
        if index is None or index.ntotal == 0:
            return topk_desc(np.zeros((q.shape[0], 0), np.float32), k)
        exact = self._exact.get(role)
        if exact is None:
            scores, ids = index.search(q, int(k))
            scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
            return scores, ids.astype(np.int64)
        _, cand = index.search(q, int(k) * int(self.params["refine"]))
        return rerank_exact(exact, q, cand, int(k))

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "kinds": self.kinds}

    def _load(self) -> None:
        """Read every role's ROLE.faiss (and map its re-rank store), checking sizes against counts."""
        for role, n in self.counts.items():
            f = self.path / f"{role}.faiss"
            if not f.is_file():
                raise GapkitError(f"{f}: missing FAISS index file")
            try:
                index = _read(f, self.kinds.get(role, ""))
            except RuntimeError as exc:
                raise GapkitError(f"{f}: unreadable FAISS index ({str(exc).splitlines()[0]})") from None
            if index.ntotal != int(n) or index.d != self.dim:
                raise GapkitError(f"{f}: holds {index.ntotal} x {index.d} vectors, expected {n} x {self.dim}")
            self._index[role] = index
            self._open_exact(role)
        self._loaded = True
        self._configure()

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any]) -> "FaissBackend":
        b = cls(path, int(meta["dim"]), **dict(meta.get("params") or {}))
        b.kinds = {str(k): str(v) for k, v in dict(meta.get("kinds") or {}).items()}
        b.counts = {str(k): int(v) for k, v in dict(meta.get("counts") or {}).items()}
        b._load()
        return b
