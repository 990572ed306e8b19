"""MixedIndex: one ranked list over image, text and fused documents, with the correction inside.

    idx = open_index("runs/idx")
    hits = idx.search(text="a red apple", k=10)            # needs the index's encoder
    hits = idx.search(vector=q, query_role="text", k=10)    # any index
    [(h.role, h.score, h.probability, h.payload.get("caption")) for h in hits]

Search = per document role, ask the backend for the top k by the stored vectors (raw, or
corrected for an embedding fixer), then merge. For a calibrated index every raw cosine is mapped
through P(match | cosine, query role, document role) before the merge. Because the map is
monotone within a role, the per-role top k by raw cosine holds the top k by P of that role, so the
merged list equals a brute-force calibrated ranking of the whole corpus (tested) while a role
whose raw cosines are all low (images under a text query) is never starved out before calibration.

Index directory (written atomically by build_index):
    index.json       format, versions, dim, roles and counts, encoder spec, correction, backends, hash
    docs.parquet     id, role, item, payload (JSON) per document, in storage order (grouped by role)
    vectors.f32      raw unit vectors (n, D) float32 in storage order (raw cosines, score(), hashing)
    correction/      the fitted fixer (fixer.json + arrays.safetensors), when there is one
    backend-raw/     the backend over raw vectors; backend-corrected/ over fixed vectors (fixers only)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import GapkitError, reading
from .backends.base import Backend, merge_topk, open_backend
from .correction import Correction, pair_name
from .documents import ROLES, unit

FORMAT = "gapkit-search-index"
FORMAT_VERSION = 1
QUERY_ROLES = ("text", "image")
ROLE_FILTERS = ("any", *ROLES)


@dataclass
class Hit:
    """One ranked document. score: the corrected score (raw cosine for correction none, cosine of
    the corrected vectors for a fixer, P(match) for calibrated; the raw cosine when raw=True);
    probability: P(match) or None when the index has no calibration for this pair."""

    id: str
    role: str
    raw_cosine: float
    score: float
    probability: float | None
    payload: dict[str, Any] = field(default_factory=dict)
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def index_version() -> str:
    from .. import __version__

    return __version__


class MixedIndex:
    """An opened index directory (use `open_index` / `build_index`, not this constructor)."""

    def __init__(self, path: Path, meta: dict[str, Any], docs: Any, vectors: np.ndarray,
                 backends: dict[str, Backend], correction: Correction) -> None:
        self.path = Path(path)
        self.meta = meta
        self.dim = int(meta["dim"])
        self.counts: dict[str, int] = {r: int(meta["roles"].get(r, 0)) for r in ROLES}
        self.offsets: dict[str, int] = {}
        start = 0
        for r in ROLES:
            self.offsets[r] = start
            start += self.counts[r]
        self.n = start
        self.ids: np.ndarray = docs["id"]
        self.items: np.ndarray = docs["item"]
        self._payloads: np.ndarray = docs["payload"]
        self.vectors = vectors
        self.backends = backends
        self.correction = correction
        self._row_of: dict[str, int] | None = None
        self._encoder: Any = None

    # ------------------------------------------------------------------ description
    def info(self) -> dict[str, Any]:
        """Roles and counts, dim, encoder spec, correction, backend, version, content hash."""
        m = self.meta
        enc = m.get("encoder")
        return {
            "path": str(self.path), "n_documents": self.n, "roles": {r: c for r, c in self.counts.items() if c},
            "dim": self.dim, "encoder": None if enc is None else {k: v for k, v in enc.items() if k != "probe"},
            "query_roles": self.query_roles(), "correction": m["correction"],
            "calibrated_pairs": self.correction.calibrated_pairs(),
            "backend": {k: {"name": v["name"], "params": v.get("params", {}),
                            **({"kinds": v["kinds"]} if v.get("kinds") else {})} for k, v in m["backends"].items()},
            "gapkit_version": m["gapkit_version"], "format_version": m["format_version"],
            "content_hash": m["content_hash"], "created": m.get("created"), "fit": m.get("fit"),
            "fuse_weight": m.get("fuse_weight"),
        }

    def query_roles(self) -> list[str]:
        """Which queries this index can embed itself: [] (vector queries only), text, image."""
        enc = self.meta.get("encoder")
        if not enc:
            return []
        return ["text", "image"] if enc.get("image", True) else ["text"]

    def fit_items(self) -> list[str]:
        """Items (image ids) whose pairs fitted the correction: keep them out of evaluation queries.
        Empty when the correction was fitted on separate data (or there is none)."""
        f = self.path / "fit_items.json"
        if not f.is_file():
            return []
        try:
            items = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise GapkitError(f"{f}: unreadable; the index is damaged") from None
        if not isinstance(items, list):
            raise GapkitError(f"{f}: expected a JSON list of item ids; the index is damaged")
        return [str(i) for i in items]

    def payload(self, row: int) -> dict[str, Any]:
        return json.loads(self._payloads[row])

    def row_of(self, doc_id: str) -> int:
        """Storage row of a document id (GapkitError if unknown)."""
        if self._row_of is None:
            self._row_of = {str(d): i for i, d in enumerate(self.ids)}
        if doc_id not in self._row_of:
            raise GapkitError(f"no document '{doc_id}' in this index")
        return self._row_of[doc_id]

    def role_of_row(self, row: int) -> str:
        for r in reversed(ROLES):
            if self.counts[r] and row >= self.offsets[r]:
                return r
        raise GapkitError(f"row {row} is outside the index")

    def image_file(self, doc_id: str) -> Path | None:
        """The image file registered for a document at build time (None if it has none or the
        file is gone). Only paths stored in the index are ever returned."""
        try:
            p = self.payload(self.row_of(str(doc_id))).get("image_path")
        except GapkitError:
            return None
        if not p:
            return None
        path = Path(p)
        if not path.is_absolute():  # thumbnails written into the index: must stay inside it
            root = self.path.resolve()
            path = (root / path).resolve()
            if root not in path.parents:
                return None
        return path if path.is_file() else None

    # ------------------------------------------------------------------ queries
    def encoder(self) -> Any:
        """The query encoder (built once, checked against the index's probe embedding)."""
        if self._encoder is None:
            from .encoding import load_query_encoder

            if not self.meta.get("encoder"):
                raise GapkitError("this index has no encoder (built from embeddings); query it with a vector "
                                  "(--query-vector / vector=)")
            self._encoder = load_query_encoder(self.meta["encoder"], self.path)
        return self._encoder

    def embed_query(self, text: str | None = None, image: Any = None, vector: Any = None,
                    query_role: str | None = None) -> tuple[np.ndarray, str]:
        """Exactly one of text / image / vector -> ((1, D) raw unit vector, query role)."""
        given = [x is not None for x in (text, image, vector)]
        if sum(given) != 1:
            raise GapkitError("give exactly one query: text, image or vector")
        if text is not None:
            if not str(text).strip():
                raise GapkitError("the query text is empty")
            from .encoding import encode_text

            q, role = encode_text(self.encoder(), str(text)), "text"
        elif image is not None:
            if "image" not in self.query_roles():
                raise GapkitError("this index has no image encoder; query it with text or a vector" if self.meta.get("encoder")
                                  else "this index has no encoder (built from embeddings); query it with a vector")
            from .encoding import encode_image

            q, role = encode_image(self.encoder(), image), "image"
        else:
            try:
                q = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError):
                raise GapkitError(f"a query vector must be numbers, got {type(vector).__name__}") from None
            if q.ndim == 2 and q.shape[0] == 1:
                q = q[0]
            if q.ndim != 1:
                raise GapkitError(f"a query vector must be 1-D (D,), got shape {tuple(np.shape(vector))}")
            q = q[None, :]
            role = query_role or "text"
        if query_role is not None and query_role != role:
            raise GapkitError(f"query_role '{query_role}' contradicts the {role} query")
        return self._check_queries(q), role

    def _check_queries(self, q: np.ndarray) -> np.ndarray:
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise GapkitError(f"query vector has dimension {q.shape[-1] if q.ndim else 0}, the index has {self.dim}")
        if q.shape[0] == 0:
            raise GapkitError("no query vectors")
        return unit(q)

    def search(self, text: str | None = None, image: Any = None, vector: Any = None, query_role: str | None = None,
               k: int = 10, role: str = "any", raw: bool = False, min_probability: float | None = None) -> list[Hit]:
        """Rank the index for one query (exactly one of text / image / vector); see the module docstring."""
        self._check_search_args(k, role, min_probability)
        q, qrole = self.embed_query(text, image, vector, query_role)
        return self.search_vectors(q, qrole, k=k, role=role, raw=raw, min_probability=min_probability)[0]

    def _check_search_args(self, k: Any, role: str, min_probability: float | None) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise GapkitError(f"k must be a positive integer, got {k!r}")
        if role not in ROLE_FILTERS:
            raise GapkitError(f"unknown role '{role}'; use one of {', '.join(ROLE_FILTERS)}")
        if min_probability is not None:
            if not 0.0 <= float(min_probability) <= 1.0:
                raise GapkitError(f"min_probability must be in [0, 1], got {min_probability}")
            if self.correction.kind != "calibrated":
                raise GapkitError(f"min_probability needs a calibrated index (this one's correction is "
                                  f"{self.correction.name}); rebuild with --correction calibrated")

    def search_vectors(self, queries: Any, query_role: str = "text", k: int = 10, role: str = "any",
                       raw: bool = False, min_probability: float | None = None) -> list[list[Hit]]:
        """Rank the index for each of (q, D) query vectors of one query role."""
        self._check_search_args(k, role, min_probability)
        if query_role not in QUERY_ROLES:
            raise GapkitError(f"unknown query role '{query_role}'; use text or image")
        q = self._check_queries(np.atleast_2d(np.asarray(queries, np.float32)))
        rows, scores, raw_cos, probs = self._rank(q, query_role, int(k), role, raw)
        out = []
        for i in range(q.shape[0]):
            hits = []
            for j in range(rows.shape[1]):
                r = int(rows[i, j])
                if r < 0:
                    continue
                p = None if probs is None or np.isnan(probs[i, j]) else float(probs[i, j])
                if min_probability is not None and (p is None or p < float(min_probability)):
                    continue
                hits.append(Hit(str(self.ids[r]), self.role_of_row(r), float(raw_cos[i, j]), float(scores[i, j]), p,
                                self.payload(r), rank=len(hits) + 1))
            out.append(hits)
        return out

    def _roles_for(self, role: str) -> list[str]:
        return [r for r in (ROLES if role == "any" else (role,)) if self.counts[r]]

    def _rank(self, q: np.ndarray, qrole: str, k: int, role: str, raw: bool):
        """rows (q, k) storage rows (-1 pad), scores, raw cosines, probabilities (or None)."""
        corr = self.correction
        use_fixed = corr.moves_vectors and not raw
        rank_by_p = corr.kind == "calibrated" and not raw
        backend = self.backends["corrected" if use_fixed else "raw"]
        qv = corr.query_rows(q, qrole) if use_fixed else q
        roles = self._roles_for(role)
        if rank_by_p:
            self._check_calibrated(qrole, roles)
        parts = []
        for r in roles:  # candidates per document role, so no role is starved before calibration
            s, local = backend.search(qv, k, r)
            glob = np.where(local >= 0, local + self.offsets[r], -1)
            key = corr.probability(s.astype(np.float64), qrole, r) if rank_by_p else s
            parts.append((np.where(glob >= 0, key, -np.inf), glob))
        if not parts:
            e = np.full((q.shape[0], 0), -1, np.int64)
            return e, e.astype(np.float64), e.astype(np.float64), None
        top_key, rows = merge_topk(parts, k)
        raw_cos = self._raw_cosines(q, rows)  # exact, from the stored float32 vectors
        prob = self._probabilities(raw_cos, rows, qrole) if corr.kind == "calibrated" else None
        if use_fixed:
            return rows, np.where(rows >= 0, top_key.astype(np.float64), np.nan), raw_cos, prob
        scores = prob if rank_by_p else raw_cos
        # re-sort the k winners by their exact score (the backend's may be quantised or float32)
        order = np.argsort(np.where(rows >= 0, -np.nan_to_num(scores, nan=-np.inf), np.inf), axis=1, kind="stable")
        take = lambda a: None if a is None else np.take_along_axis(a, order, 1)  # noqa: E731
        return take(rows), take(scores), take(raw_cos), take(prob)

    def _check_calibrated(self, qrole: str, roles: list[str]) -> None:
        corr = self.correction
        ok = [r for r in self._roles_for("any") if pair_name(qrole, r) in corr.calibrated_pairs()]
        for r in roles:
            if r not in ok:
                raise GapkitError(f"this calibrated index has no calibration for {qrole} queries against {r} documents "
                                  f"(pair {pair_name(qrole, r)} had no known matches); search with "
                                  f"{'role=' + ' or role='.join(ok) if ok else 'raw=True'}")

    def _probabilities(self, raw_cos: np.ndarray, rows: np.ndarray, qrole: str) -> np.ndarray:
        prob = np.full(rows.shape, np.nan)
        for r in ROLES:
            if not self.counts[r]:
                continue
            sel = (rows >= self.offsets[r]) & (rows < self.offsets[r] + self.counts[r])
            if sel.any():
                p = self.correction.probability(raw_cos[sel], qrole, r)
                if p is not None:
                    prob[sel] = p
        return prob

    def _raw_cosines(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """<q_i, raw doc vector> for each chosen row, from vectors.f32 (float64)."""
        out = np.full(rows.shape, np.nan)
        ok = rows >= 0
        if ok.any():
            flat = rows[ok]
            order = np.argsort(flat)
            v = np.empty((flat.size, self.dim), np.float64)
            v[order] = np.asarray(self.vectors[flat[order]], np.float64)  # sorted reads for the memory map
            qi = np.broadcast_to(np.arange(rows.shape[0])[:, None], rows.shape)[ok]
            out[ok] = np.einsum("ij,ij->i", v, q[qi].astype(np.float64))
        return out

    # ------------------------------------------------------------------ integrity
    def verify(self) -> None:
        """Recompute the content hash (reads every vector) and compare it with index.json."""
        h = content_hash(self.path)
        if h != self.meta["content_hash"]:
            raise GapkitError(f"{self.path}: content hash mismatch (index.json says {self.meta['content_hash']}, "
                              f"files hash to {h}); the index was modified or damaged, rebuild it")


# ---------------------------------------------------------------------------------- hashing
HASHED_FILES = ("docs.parquet", "vectors.f32")


def content_hash(path: Path, extra: Iterable[Path] = ()) -> str:
    """blake2b over docs.parquet, vectors.f32 and the correction files (1 MiB blocks)."""
    h = hashlib.blake2b(digest_size=16)
    files = [path / f for f in HASHED_FILES] + sorted((path / "correction").glob("*")) + list(extra)
    for f in files:
        if not f.is_file():
            continue
        h.update(f"{f.relative_to(path)}\0".encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- opening
def open_index(path: str | Path, verify: bool = False) -> MixedIndex:
    """Open an index directory; refuses missing, corrupt or other-version indexes (GapkitError)."""
    from ..atomic import read_json_object

    p = Path(path)
    if not p.is_dir():
        raise GapkitError(f"no search index at {p} (not a directory)")
    meta = read_json_object(p / "index.json", "search index file")
    if meta.get("format") != FORMAT:
        raise GapkitError(f"{p}: not a gapkit search index (index.json has format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION or meta.get("gapkit_version") != index_version():
        raise GapkitError(f"{p}: built by gapkit {meta.get('gapkit_version')} (index format {meta.get('format_version')}); "
                          f"this is gapkit {index_version()} (format {FORMAT_VERSION}): rebuild the index")
    try:
        dim, roles = int(meta["dim"]), {str(r): int(c) for r, c in dict(meta["roles"]).items()}
        backends_meta = dict(meta["backends"])
        meta["correction"]["kind"]
    except (KeyError, TypeError, ValueError) as exc:
        raise GapkitError(f"{p}: damaged index.json ({type(exc).__name__}: {exc})") from None
    n = sum(roles.values())
    docs = _read_docs(p / "docs.parquet", n)
    vec_file = p / "vectors.f32"
    if not vec_file.is_file() or vec_file.stat().st_size != n * dim * 4:
        raise GapkitError(f"{vec_file}: missing or wrong size (expected {n} x {dim} float32); the index is damaged")
    vectors = np.memmap(vec_file, dtype="<f4", mode="r", shape=(n, dim)) if n else np.zeros((0, dim), np.float32)
    fixer = None
    if meta["correction"]["kind"] != "none":
        from ..fixers import load_fixer

        fixer = load_fixer(p / "correction")
        for pair, prior in dict(meta["correction"].get("priors") or {}).items():
            fixer.set_prior(pair, prior)
    backends = {}
    for name, bm in backends_meta.items():
        with reading(p / f"backend-{name}", "search backend (the index is damaged)"):
            backends[name] = open_backend(p / f"backend-{name}", bm)
    idx = MixedIndex(p, meta, docs, vectors, backends, Correction(fixer))
    if verify:
        idx.verify()
    return idx


def _read_docs(f: Path, n: int) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    if not f.is_file():
        raise GapkitError(f"{f}: missing; the index is damaged")
    with reading(f, "document table (the index is damaged)"):
        t = pq.read_table(f, columns=["id", "item", "payload"])
    if t.num_rows != n:
        raise GapkitError(f"{f}: {t.num_rows} documents, index.json says {n}; the index is damaged")
    return {c: np.asarray(t.column(c).to_numpy(zero_copy_only=False), dtype=object) for c in ("id", "item", "payload")}


# ---------------------------------------------------------------------------------- scoring
def score(index: MixedIndex, image: Any = None, text: Any = None) -> dict[str, Any]:
    """How likely do this image and this text match? Each may be raw input (an image path/bytes,
    a string) or a (D,) vector. Returns raw_cosine, score (the index's corrected score) and
    probability (P(match), None unless the index is calibrated)."""
    if image is None or text is None:
        raise GapkitError("score needs an image and a text (or their vectors)")
    x = index.embed_query(vector=image, query_role="image")[0] if isinstance(image, np.ndarray) else \
        index.embed_query(image=image)[0]
    y = index.embed_query(vector=text, query_role="text")[0] if isinstance(text, np.ndarray) else \
        index.embed_query(text=text)[0]
    raw = float(x[0].astype(np.float64) @ y[0].astype(np.float64))
    corr = index.correction
    out: dict[str, Any] = {"pair": "image-text", "raw_cosine": raw, "score": raw, "probability": None,
                           "correction": corr.name}
    if corr.moves_vectors:
        fx_img = corr.doc_rows("image", (x,), float(index.meta.get("fuse_weight", 0.5)))
        out["score"] = float(fx_img[0].astype(np.float64) @ corr.query_rows(y, "text")[0].astype(np.float64))
    elif corr.kind == "calibrated":
        p = corr.probability(np.array([raw]), "text", "image")
        out["probability"] = None if p is None else float(p[0])
        out["score"] = out["probability"] if p is not None else raw
    return out
