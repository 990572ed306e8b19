"""Exact brute-force search in NumPy: the reference every other backend is tested against.

Each role's vectors live in ROLE.f32 (raw little-endian float32, n x D, memory-mapped on open).
A query block Q (q, D) is scored against the rows chunk by chunk, S = V_chunk Q^T, keeping a
running top-k, so memory stays O(chunk x q) for any n.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GapkitError
from .base import Backend, merge_topk, topk_desc

CHUNK_ROWS = 131_072  # 256 MiB of float32 x 512 per chunk


class ExactBackend(Backend):
    name = "exact"

    def __init__(self, path: Path, dim: int, **params: Any) -> None:
        if params:
            raise GapkitError(f"exact backend has no parameters (got {', '.join(params)})")
        super().__init__(path, dim)
        self._arrays: dict[str, np.ndarray] = {}

    def _file(self, role: str) -> Path:
        return self.path / f"{role}.f32"

    def add(self, vectors: np.ndarray, role: str) -> None:
        v = self._check_add(vectors, role)
        with open(self._file(role), "ab") as f:
            f.write(v.astype("<f4", copy=False).tobytes())

    def _rows(self, role: str) -> np.ndarray:
        if role not in self._arrays:
            n = self.counts.get(role, 0)
            if n == 0:
                self._arrays[role] = np.zeros((0, self.dim), np.float32)
            else:
                f = self._file(role)
                if not f.is_file() or f.stat().st_size != n * self.dim * 4:
                    raise GapkitError(f"{f}: missing or truncated (expected {n} x {self.dim} float32)")
                self._arrays[role] = np.memmap(f, dtype="<f4", mode="r", shape=(n, self.dim))
        return self._arrays[role]

    def search(self, queries: np.ndarray, k: int, role: str) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        rows = self._rows(role)
        if rows.shape[0] == 0:
            return topk_desc(np.zeros((q.shape[0], 0), np.float32), k)
        parts = []
        for s in range(0, rows.shape[0], CHUNK_ROWS):
            block = np.asarray(rows[s:s + CHUNK_ROWS])
            top_s, top_i = topk_desc(q @ block.T, k)
            parts.append((top_s, np.where(top_i >= 0, top_i + s, -1)))
        return parts[0] if len(parts) == 1 else merge_topk(parts, k)

    def vectors(self, role: str) -> np.ndarray:
        """The (n, D) stored rows of a role (memory-mapped)."""
        return self._rows(role)

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any]) -> "ExactBackend":
        b = cls(path, int(meta["dim"]))
        b.counts = {str(k): int(v) for k, v in dict(meta.get("counts") or {}).items()}
        for role in b.counts:
            b._rows(role)  # check sizes now: a truncated index is refused at open, not at query time
        return b
