"""FAISS backend (faiss-cpu): one index per role, inner product on unit vectors (= cosine).

kind:
  flat   IndexFlatIP, exact (same top-k as the NumPy reference up to float rounding)
  hnsw   IndexHNSWFlat(D, m, METRIC_INNER_PRODUCT); ef_construction at build, ef_search at query
  ivf    IndexIVFFlat with nlist k-means cells trained on a sample; nprobe cells per query
  auto   flat for partitions up to flat_max rows, hnsw above (default)
Vectors are staged in ROLE.f32 while adding (streamed, bounded memory), the index is built at
finish() and written as ROLE.faiss (FAISS's own binary format, no pickle); the staging file is
then deleted. Memory: the staging file is read in chunks (never memory-mapped whole, so its pages
do not add to the build's resident set), each role's index is dropped once written, and IVF
indexes are opened with FAISS's IO_FLAG_MMAP (their inverted lists stay on disk, paged in by the
cells a query probes), so a 1M x 512 build peaks near one role's index, not all of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GapkitError
from .base import Backend, topk_desc

KINDS = ("auto", "flat", "hnsw", "ivf")
DEFAULTS: dict[str, Any] = {"kind": "auto", "flat_max": 50_000, "m": 32, "ef_construction": 80, "ef_search": 128,
                            "nlist": 0, "nprobe": 32, "train_rows": 65_536}
ADD_CHUNK = 65_536


def _faiss() -> Any:
    import faiss

    return faiss


def _read(f: Path, kind: str) -> Any:
    """Open ROLE.faiss: IVF indexes memory-mapped (IO_FLAG_MMAP), the others read into memory."""
    faiss = _faiss()
    return faiss.read_index(str(f), faiss.IO_FLAG_MMAP) if kind == "ivf" else faiss.read_index(str(f))


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
        self._index: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}

    def _stage(self, role: str) -> Path:
        return self.path / f"{role}.f32"

    def add(self, vectors: np.ndarray, role: str) -> None:
        v = self._check_add(vectors, role)
        with open(self._stage(role), "ab") as f:
            f.write(v.astype("<f4", copy=False).tobytes())

    def _kind_for(self, n: int) -> str:
        kind = self.params["kind"]
        if kind == "auto":
            return "flat" if n <= int(self.params["flat_max"]) else "hnsw"
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
            nlist = int(self.params["nlist"]) or max(1, min(4096, int(4 * np.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            take = np.random.default_rng(0).choice(n, min(n, max(int(self.params["train_rows"]), 39 * nlist)),
                                                   replace=False)
            index.train(np.ascontiguousarray(rows[np.sort(take)]))
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
            del index  # reopened below: an IVF index memory-mapped, the others in memory
            stage.unlink()
            self.kinds[role] = kind
        for role in self.counts:
            self._index[role] = _read(self.path / f"{role}.faiss", self.kinds[role])
        self._configure()

    def _configure(self) -> None:
        for role, index in self._index.items():
            if self.kinds.get(role) == "hnsw":
                index.hnsw.efSearch = int(self.params["ef_search"])
            elif self.kinds.get(role) == "ivf":
                index.nprobe = int(self.params["nprobe"])

    def set_search_params(self, **params: Any) -> None:
        """Change ef_search / nprobe of an open index (e.g. to trade recall for speed)."""
        for k, v in params.items():
            if k not in ("ef_search", "nprobe"):
                raise GapkitError(f"faiss backend: only ef_search and nprobe can change after building, not {k}")
            self.params[k] = int(v)
        self._configure()

    def search(self, queries: np.ndarray, k: int, role: str) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        index = self._index.get(role)
        if index is None or index.ntotal == 0:
            return topk_desc(np.zeros((q.shape[0], 0), np.float32), k)
        scores, ids = index.search(q, int(k))
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "kinds": self.kinds}

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any]) -> "FaissBackend":
        faiss = _faiss()
        b = cls(path, int(meta["dim"]), **dict(meta.get("params") or {}))
        b.kinds = {str(k): str(v) for k, v in dict(meta.get("kinds") or {}).items()}
        for role, n in dict(meta.get("counts") or {}).items():
            f = path / f"{role}.faiss"
            if not f.is_file():
                raise GapkitError(f"{f}: missing FAISS index file")
            try:
                index = _read(f, b.kinds.get(str(role), ""))
            except RuntimeError as exc:
                raise GapkitError(f"{f}: unreadable FAISS index ({str(exc).splitlines()[0]})") from None
            if index.ntotal != int(n) or index.d != b.dim:
                raise GapkitError(f"{f}: holds {index.ntotal} x {index.d} vectors, expected {n} x {b.dim}")
            b._index[str(role)] = index
        b._configure()
        return b
