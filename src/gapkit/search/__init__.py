"""Mixed-modality search: one index over images, texts and image+text documents, gap corrected.

    >>> from gapkit.search import build_index, open_index, score      # doctest: +SKIP
    >>> idx = build_index("runs/emb", correction="calibrated", out="runs/idx")
    >>> hits = idx.search(text="a red apple", k=10)
    >>> [(h.role, round(h.score, 3), h.probability, h.payload.get("caption")) for h in hits]

Modules: documents (roles, ids, payloads), correction (none / fixer / calibrated), backends/
(exact NumPy reference, LanceDB, FAISS behind one protocol), index (MixedIndex, Hit, open_index,
score), build (build_index, build_index_from_dataset), encoding (the query encoder), synthetic
(realistic gapped embeddings for tests and benchmarks). See docs/search.md.
Importing this package needs NumPy only; backends import their libraries when used.
"""
from __future__ import annotations

from .backends.base import BACKENDS, DEFAULT_BACKEND, create_backend, open_backend
from .build import build_index, build_index_from_dataset
from .documents import ROLES
from .index import Hit, MixedIndex, open_index, score

__all__ = ["MixedIndex", "Hit", "build_index", "build_index_from_dataset", "open_index", "score", "ROLES",
           "BACKENDS", "DEFAULT_BACKEND", "create_backend", "open_backend"]
