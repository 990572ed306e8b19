"""The small protocol every vector backend implements, and the registry of backends.

A backend holds one *partition* of unit-norm float32 vectors per document role ("image", "text",
"fused") and answers inner-product (= cosine) top-k queries within one partition:

    b = create_backend("faiss", path, dim, kind="hnsw")   # a new, empty backend writing under path
    b.add(vectors, role)                                   # (n, D) float32 unit rows, in chunks
    b.finish()                                             # build ANN structures, flush to disk
    b = open_backend("faiss", path, meta)                  # later: read back (meta = b.meta())
    scores, rows = b.search(queries, k, role)              # (q, k) float32 descending, (q, k) int64

`rows` are positions within the role's partition in the order they were added (-1 pads when
the partition holds fewer than k vectors). Searching "any role" is the MixedIndex's job: it
queries every partition and merges (`merge_topk`), so a role filter is free and a calibrated
search can fetch candidates per role without a second code path.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import GapkitError

BACKENDS: dict[str, str] = {
    "exact": "gapkit.search.backends.exact:ExactBackend",
    "faiss": "gapkit.search.backends.faiss_backend:FaissBackend",
    "lancedb": "gapkit.search.backends.lance:LanceBackend",
}
DEFAULT_BACKEND = "lancedb"


class Backend(ABC):
    """Per-role partitions of unit vectors with inner-product top-k search."""

    name: ClassVar[str] = ""

    def __init__(self, path: Path, dim: int, **params: Any) -> None:
        self.path = Path(path)
        self.dim = int(dim)
        self.params = dict(params)
        self.counts: dict[str, int] = {}

    @abstractmethod
    def add(self, vectors: np.ndarray, role: str) -> None:
        """Append (n, D) float32 unit rows to the partition of `role`."""

    def finish(self) -> None:
        """Build search structures and write everything under self.path (default: nothing)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, role: str) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products of (q, D) queries within `role`: scores (q, k), rows (q, k)."""

    def meta(self) -> dict[str, Any]:
        """What open() needs (stored in the index's index.json)."""
        return {"name": self.name, "dim": self.dim, "params": self.params, "counts": self.counts}

    @classmethod
    @abstractmethod
    def open(cls, path: Path, meta: dict[str, Any]) -> "Backend":
        """Read a finished backend back from `path`."""

    def _check_add(self, vectors: np.ndarray, role: str) -> np.ndarray:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise GapkitError(f"{self.name}: vectors must be (n, {self.dim}), got {tuple(v.shape)}")
        self.counts[role] = self.counts.get(role, 0) + int(v.shape[0])
        return v


def _backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise GapkitError(f"unknown search backend '{name}'; known: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:  # the optional dependency is missing
        raise GapkitError(f"search backend '{name}' needs a package that is not installed ({exc.name}); "
                          "pip install 'gapkit[search]'") from None


def create_backend(name: str, path: str | Path, dim: int, **params: Any) -> Backend:
    """A new, empty backend `name` that writes under `path` (created)."""
    cls = _backend_class(name)
    Path(path).mkdir(parents=True, exist_ok=True)
    return cls(Path(path), dim, **params)


def open_backend(path: str | Path, meta: dict[str, Any]) -> Backend:
    """Open a finished backend described by `meta` (from Backend.meta())."""
    cls = _backend_class(str(meta.get("name")))
    b = cls.open(Path(path), meta)
    b.counts = {str(k): int(v) for k, v in dict(meta.get("counts") or {}).items()}
    return b


def topk_desc(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the k largest scores in descending order (ties: lower column first): (q, k), (q, k).

    Pads with -inf / -1 when a row has fewer than k columns.
    """
    q, n = scores.shape
    kk = min(k, n)
    if kk == 0:
        return np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (q, 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)  # by score descending, then by column
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    out_s = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    if kk < k:
        out_s = np.pad(out_s, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
    return out_s, idx


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-chunk (scores (q, k_i), ids (q, k_i)) into the global top-k; ids -1 are ignored."""
    s = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    s = np.where(ids < 0, -np.inf, s)
    top_s, col = topk_desc(s, k)
    top_ids = np.take_along_axis(ids, np.maximum(col, 0), axis=1)
    top_ids[col < 0] = -1
    top_ids[~np.isfinite(top_s)] = -1
    return top_s, top_ids
