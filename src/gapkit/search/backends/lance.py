"""LanceDB backend (embedded, on disk): one table per role with columns vector (float32 x D) and row.

Small partitions (up to flat_max rows) are searched flat (brute force, exact); larger ones get
an ANN index at finish(): index_type (IVF_HNSW_SQ by default, or IVF_FLAT / IVF_PQ / ...),
num_partitions (default ~sqrt(n)), searched with nprobes partitions and refine_factor (re-rank
refine_factor x k candidates by their exact distance: this is what brings recall back to
>= 0.95 with a quantised index; see docs/search.md for the measured trade-off). Distances are
LanceDB's "dot" distance, 1 - <q, v>, turned back into the inner product.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GapkitError
from .base import Backend, merge_topk, topk_desc

DEFAULTS: dict[str, Any] = {"flat_max": 100_000, "index_type": "IVF_HNSW_SQ", "num_partitions": 0,
                            "nprobes": 16, "refine_factor": 4, "ef": 0, "m": 20, "ef_construction": 150}


def _lancedb() -> Any:
    os.environ.setdefault("LANCE_LOG", "error")  # no scanner deprecation chatter on stderr
    import lancedb

    return lancedb


def _table(vectors: np.ndarray, start: int) -> Any:
    import pyarrow as pa

    n, d = vectors.shape
    return pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), d),
                     "row": pa.array(np.arange(start, start + n, dtype=np.int64))})


class LanceBackend(Backend):
    name = "lancedb"

    def __init__(self, path: Path, dim: int, **params: Any) -> None:
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise GapkitError(f"lancedb backend has no parameter {', '.join(unknown)}; its parameters: "
                              f"{', '.join(DEFAULTS)}")
        super().__init__(path, dim, **{**DEFAULTS, **params})
        self._db = _lancedb().connect(str(self.path))
        self._tables: dict[str, Any] = {}
        self.indexed: dict[str, bool] = {}

    def add(self, vectors: np.ndarray, role: str) -> None:
        start = self.counts.get(role, 0)
        v = self._check_add(vectors, role)
        data = _table(v, start)
        if role in self._tables:
            self._tables[role].add(data)
        else:
            self._tables[role] = self._db.create_table(role, data=data)

    def finish(self) -> None:
        for role, n in self.counts.items():
            tbl = self._tables[role]
            big = n > int(self.params["flat_max"])
            if big:
                tbl.create_index("vector", config=self._index_config(n))
            self.indexed[role] = big

    def _index_config(self, n: int) -> Any:
        import lancedb.index as li

        kinds = {"IVF_HNSW_SQ": li.IvfHnswSq, "IVF_HNSW_FLAT": li.IvfHnswFlat, "IVF_HNSW_PQ": li.IvfHnswPq,
                 "IVF_FLAT": li.IvfFlat, "IVF_SQ": li.IvfSq, "IVF_PQ": li.IvfPq}
        kind = str(self.params["index_type"]).upper()
        if kind not in kinds:
            raise GapkitError(f"lancedb backend: index_type must be one of {', '.join(kinds)}, got '{kind}'")
        kw: dict[str, Any] = {"distance_type": "dot",
                              "num_partitions": int(self.params["num_partitions"]) or max(1, int(np.sqrt(n) / 2))}
        if "HNSW" in kind:
            kw.update(m=int(self.params["m"]), ef_construction=int(self.params["ef_construction"]))
        return kinds[kind](**kw)

    def search(self, queries: np.ndarray, k: int, role: str) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        tbl = self._tables.get(role)
        nq = q.shape[0]
        if tbl is None or self.counts.get(role, 0) == 0:
            return topk_desc(np.zeros((nq, 0), np.float32), k)
        query = tbl.search(q[0] if nq == 1 else list(q)).distance_type("dot").limit(int(k)).select(["row", "_distance"])
        if self.indexed.get(role):
            query = query.nprobes(int(self.params["nprobes"]))
            if int(self.params["refine_factor"]) > 0:
                query = query.refine_factor(int(self.params["refine_factor"]))
            if int(self.params["ef"]) > 0:
                query = query.ef(int(self.params["ef"]))
        res = query.to_arrow()
        rows = res.column("row").to_numpy()
        sims = 1.0 - res.column("_distance").to_numpy().astype(np.float64)
        qi = res.column("query_index").to_numpy() if nq > 1 else np.zeros(rows.size, np.int64)
        out_s = np.full((nq, k), -np.inf, np.float64)
        out_i = np.full((nq, k), -1, np.int64)
        for i in range(nq):
            sel = np.flatnonzero(qi == i)[:k]
            out_s[i, :sel.size], out_i[i, :sel.size] = sims[sel], rows[sel]
        return merge_topk([(out_s.astype(np.float32), out_i)], k)

    def set_search_params(self, **params: Any) -> None:
        """Change nprobes / refine_factor / ef of an open index."""
        for k, v in params.items():
            if k not in ("nprobes", "refine_factor", "ef"):
                raise GapkitError(f"lancedb backend: only nprobes, refine_factor and ef can change after building, not {k}")
            self.params[k] = int(v)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "indexed": self.indexed}

    @classmethod
    def open(cls, path: Path, meta: dict[str, Any]) -> "LanceBackend":
        b = cls(path, int(meta["dim"]), **dict(meta.get("params") or {}))
        b.indexed = {str(k): bool(v) for k, v in dict(meta.get("indexed") or {}).items()}
        for role, n in dict(meta.get("counts") or {}).items():
            try:
                tbl = b._db.open_table(str(role))
                rows = tbl.count_rows()
            except Exception as exc:  # lance raises several types for missing / damaged tables
                raise GapkitError(f"{path}: LanceDB table '{role}' is missing or unreadable "
                                  f"({type(exc).__name__})") from None
            if rows != int(n):
                raise GapkitError(f"{path}: LanceDB table '{role}' holds {rows} rows, expected {n}")
            b._tables[str(role)] = tbl
        return b

