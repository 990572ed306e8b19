"""Labelled queries against a search index: a user's own mixed-modality benchmark.

A queries file is JSON Lines, one query per line:

    {"id": "q1", "text": "a red apple", "relevant": ["image:17", "text:230"]}
    {"id": "q2", "vector": [0.01, ...], "relevant_items": ["17"]}

    text | vector       the query (text needs an index with an encoder; a vector has the index's
                        dimension; "query_role": "image" marks an image-embedding vector)
    relevant            ids of the relevant documents (as `gapkit search --json` prints them)
    relevant_items      items whose every document (image, captions, fused) is relevant
                        (payload "item"; the image id of an index built from pairs)

Every query is ranked twice by the same index: raw cosine and the index's correction. Reported
per ranking: NDCG@10 (ideal DCG over all relevant documents in the index), recall@1/5/10,
{role}_recall@k, image_share@10, each with its 95 % interval, and the corpus's image share; and
the paired difference correction - raw (KEY_diff) with its bootstrap 95 % interval (queries
resampled; gapkit.evaluate.compare).
A relevant id the index does not hold is an error (a typo would otherwise lower every score).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import GapkitError
from ..metrics.bootstrap import DEFAULT_N_BOOT
from .compare import compare, summarize
from .mixed import ROLE_FUSED, ROLE_IMAGE, ROLE_TEXT, per_query_metrics

DEPTH = 10


@dataclass
class LabelledQuery:
    id: str
    text: str | None = None
    vector: np.ndarray | None = None
    query_role: str = "text"
    relevant: list[str] = field(default_factory=list)
    relevant_items: list[str] = field(default_factory=list)


def read_queries(path: str | Path) -> list[LabelledQuery]:
    """Parse a queries file (see the module docstring); GapkitError names the line of a mistake."""
    p = Path(path)
    if not p.is_file():
        raise GapkitError(f"queries file not found: {p}")
    out: list[LabelledQuery] = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise GapkitError(f"{p}: not UTF-8 text (expected JSON Lines)") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GapkitError(f"{where}: invalid JSON ({exc.msg})") from None
        except RecursionError:  # absurdly nested JSON
            raise GapkitError(f"{where}: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise GapkitError(f"{where}: each line must be a JSON object")
        out.append(_query(obj, where, len(out)))
    if not out:
        raise GapkitError(f"{p}: no queries")
    ids = [q.id for q in out]
    if len(set(ids)) != len(ids):
        raise GapkitError(f"{p}: query ids are not unique")
    return out


def _query(obj: dict[str, Any], where: str, n: int) -> LabelledQuery:
    unknown = sorted(set(obj) - {"id", "text", "vector", "query_role", "relevant", "relevant_items"})
    if unknown:
        raise GapkitError(f"{where}: unknown field(s) {', '.join(unknown)}")
    text, vector = obj.get("text"), obj.get("vector")
    if (text is None) == (vector is None):
        raise GapkitError(f'{where}: give exactly one of "text" or "vector"')
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise GapkitError(f"{where}: the query text is empty")
    vec = None
    if vector is not None:
        if not isinstance(vector, list) or not vector or not all(isinstance(v, (int, float)) for v in vector):
            raise GapkitError(f'{where}: "vector" must be a non-empty list of numbers')
        vec = np.asarray(vector, np.float32)
        if not np.isfinite(vec).all() or not vec.any():
            raise GapkitError(f"{where}: the query vector is zero or not finite")
    role = obj.get("query_role", "text")
    if role not in ("text", "image") or (text is not None and role != "text"):
        raise GapkitError(f"{where}: query_role must be text or image (image only for vectors), got {role!r}")
    rel, items = obj.get("relevant", []), obj.get("relevant_items", [])
    for name, v in (("relevant", rel), ("relevant_items", items)):
        if not isinstance(v, list) or not all(isinstance(x, (str, int)) for x in v):
            raise GapkitError(f'{where}: "{name}" must be a list of ids')
    if not rel and not items:
        raise GapkitError(f'{where}: no relevant documents ("relevant" or "relevant_items")')
    return LabelledQuery(str(obj.get("id", f"q{n + 1}")), text, vec, role, [str(x) for x in rel], [str(x) for x in items])


def item_rows(index: Any) -> dict[str, list[int]]:
    """{item: storage rows of its documents} of an index."""
    out: dict[str, list[int]] = {}
    for r, item in enumerate(index.items):
        out.setdefault(str(item), []).append(r)
    return out


def relevant_rows(index: Any, q: LabelledQuery, by_item: dict[str, list[int]] | None = None) -> set[int]:
    """Storage rows of the query's relevant documents (GapkitError for ids the index lacks)."""
    rows: set[int] = set()
    for doc in q.relevant:
        try:
            rows.add(index.row_of(doc))
        except GapkitError:
            raise GapkitError(f"query {q.id}: relevant document '{doc}' is not in the index") from None
    if q.relevant_items:
        by_item = item_rows(index) if by_item is None else by_item
        for item in q.relevant_items:
            if item not in by_item:
                raise GapkitError(f"query {q.id}: relevant item '{item}' has no document in the index")
            rows.update(by_item[item])
    return rows


def rank_queries(index: Any, queries: Sequence[LabelledQuery], raw: bool, k: int = DEPTH, role: str = "any",
                 progress: bool = False) -> list[list[Any]]:
    """Hits of every query (vector queries in batches per query role, text queries one by one)."""
    from tqdm.auto import tqdm

    out: list[list[Any] | None] = [None] * len(queries)
    for qrole in ("text", "image"):
        vec = [i for i, q in enumerate(queries) if q.vector is not None and q.query_role == qrole]
        if vec:
            hits = index.search_vectors(np.stack([queries[i].vector for i in vec]), qrole, k=k, role=role, raw=raw)
            for i, h in zip(vec, hits):
                out[i] = h
    texts = [i for i, q in enumerate(queries) if q.text is not None]
    for i in tqdm(texts, desc="raw" if raw else "corrected", disable=not progress or not texts, leave=False):
        out[i] = index.search(text=queries[i].text, k=k, role=role, raw=raw)
    return out  # type: ignore[return-value]


def ranking_metrics(index: Any, hits: list[list[Any]], relevant: list[set[int]]) -> dict[str, np.ndarray]:
    """per_query_metrics of index hits against relevant storage rows."""
    nq = len(hits)
    rel = np.zeros((nq, DEPTH), bool)
    roles = np.full((nq, DEPTH), "", dtype=object)
    for q, row in enumerate(hits):
        for r, h in enumerate(row[:DEPTH]):
            rel[q, r] = index.row_of(h.id) in relevant[q]
            roles[q, r] = h.role
    has = {role: np.array([any(index.role_of_row(r) == role for r in rs) for rs in relevant])
           for role in (ROLE_IMAGE, ROLE_TEXT, ROLE_FUSED)}
    return per_query_metrics(rel, roles, np.array([len(r) for r in relevant]), has, ks=(1, 5, 10))


def evaluate_index(index: Any, queries: Sequence[LabelledQuery], n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                   progress: bool = False) -> dict[str, Any]:
    """Raw and corrected rankings of the labelled queries: each metric with its CI, and the
    corrected ranking's paired difference from raw (KEY_diff, KEY_diff_ci_*)."""
    by_item = item_rows(index) if any(q.relevant_items for q in queries) else None
    relevant = [relevant_rows(index, q, by_item) for q in queries]
    modes = ["raw"] if index.correction.kind == "none" else ["raw", "corrected"]
    per_query = {m: ranking_metrics(index, rank_queries(index, queries, m == "raw", progress=progress), relevant)
                 for m in modes}
    counts = dict(index.info()["roles"])
    out: dict[str, Any] = {
        "corpus": {"n_queries": len(queries), "n_documents": int(index.n), **{f"n_{r}": int(c) for r, c in counts.items()},
                   "corpus_image_share": counts.get(ROLE_IMAGE, 0) / max(index.n, 1),
                   "relevant_per_query_mean": float(np.mean([len(r) for r in relevant]))},
        "correction": index.correction.name,
        "raw": summarize(per_query["raw"], n_boot, seed),
    }
    if "corrected" in per_query:
        out["corrected"] = compare(per_query["raw"], per_query["corrected"], n_boot, seed)
    return out
