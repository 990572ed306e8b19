"""Documents of a mixed index: role, id, item (the image they belong to), payload, vectors.

Every role's vectors are described by chunks of their *parts*, so a correction can act on the
parts (a fused document built from fixed image and text rows) and nothing needs all rows in
memory at once:

    image doc  j  parts (x_j,)            raw vector x_j / ||x_j||
    text doc   j  parts (y_j,)            raw vector y_j / ||y_j||
    fused doc  i  parts (x_i, y_f(i))     raw vector normalise(w x_i + (1 - w) y_f(i)), f(i) = first caption

Doc ids: "image:<image id>", "text:<caption row>", "fused:<image id>"; payload["item"] is the
image id a document belongs to (what labelled evaluation calls relevance), payload["caption"]
the caption (text and fused docs), payload["image_path"] the image file where one is known.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..embeddings import PairedEmbeddings
from ..errors import GapkitError

ROLES = ("image", "text", "fused")
CHUNK = 32_768

Parts = tuple[np.ndarray, ...]


def unit(a: np.ndarray) -> np.ndarray:
    """Rows / ||row|| in float32; GapkitError for all-zero or non-finite rows."""
    a = np.asarray(a, np.float32)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    bad = ~np.isfinite(n[:, 0]) | (n[:, 0] == 0)
    if bad.any():
        raise GapkitError(f"embedding row {int(np.flatnonzero(bad)[0])} (of a chunk) is all zeros or not finite")
    return a / n


def fuse(x: np.ndarray, y: np.ndarray, weight: float) -> np.ndarray:
    """normalise(w unit(x) + (1 - w) unit(y)): (n, D), (n, D) -> (n, D) float32 (the fused
    documents role-center is fitted on: gapkit.fixers.centering.fuse)."""
    from ..fixers.centering import fuse as fuse_rows

    return fuse_rows(unit(x), unit(y), weight).astype(np.float32)


def raw_rows(role: str, parts: Parts, fuse_weight: float) -> np.ndarray:
    """Unit raw vectors of one chunk of documents of `role`."""
    return fuse(parts[0], parts[1], fuse_weight) if role == "fused" else unit(parts[0])


@dataclass
class RoleDocs:
    """The documents of one role: metadata lists and a re-iterable chunk source of their parts."""

    role: str
    ids: list[str]
    items: list[str]
    payloads: list[dict[str, Any]]
    chunks: Callable[[], Iterator[Parts]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)


def _chunked(arrays: Sequence[Any], rows: Sequence[np.ndarray] | None, n: int) -> Callable[[], Iterator[Parts]]:
    """Chunks of `arrays` (array k indexed by rows[k] when given; arrays may be memory-mapped).

    Pages of memory-mapped inputs are released after each contiguous chunk (see
    gapkit.fixers._stream.release_pages), so streaming a large file does not grow the RSS.
    """

    def gen() -> Iterator[Parts]:
        from ..fixers._stream import release_pages

        for s in range(0, n, CHUNK):
            if rows is None:
                yield tuple(np.asarray(a[s:s + CHUNK]) for a in arrays)
                for a in arrays:
                    if isinstance(a, np.ndarray):
                        release_pages(a, s, min(s + CHUNK, n))
            else:
                yield tuple(np.asarray(a[r[s:s + CHUNK]]) for a, r in zip(arrays, rows))

    return gen


def _concat(gens: Sequence[Callable[[], Iterator[Parts]]]) -> Callable[[], Iterator[Parts]]:
    def gen() -> Iterator[Parts]:
        for g in gens:
            yield from g()

    return gen


class ClipRetrievalSource:
    """A clip-retrieval folder (img_emb/img_emb_K.npy, text_emb/text_emb_K.npy, metadata/) read
    shard by shard through memory maps: 1:1 pairs, item ids = global row numbers, captions from
    metadata/*.parquet when present. Never concatenates the shards in memory."""

    def __init__(self, path: Any) -> None:
        from ..embeddings import iter_clip_retrieval_shards

        self.path = path
        self.shards = list(iter_clip_retrieval_shards(path))
        dims = {a.shape[1] for a, _ in self.shards} | {b.shape[1] for _, b in self.shards}
        if len(dims) != 1:
            raise GapkitError(f"{path}: shards have different dimensions {sorted(dims)}")
        self.dim = dims.pop()
        self.sizes = [a.shape[0] for a, _ in self.shards]
        self.n = int(sum(self.sizes))
        self.captions = _clip_retrieval_captions(path, self.n)

    def docs(self, roles: Sequence[str]) -> list[RoleDocs]:
        ids = [str(i) for i in range(self.n)]
        cap = (lambda j: {"caption": self.captions[j]}) if self.captions is not None else (lambda j: {})
        out = []
        if "image" in roles:
            out.append(RoleDocs("image", [f"image:{i}" for i in ids], ids, [{"item": i} for i in ids],
                                _concat([_chunked([a], None, a.shape[0]) for a, _ in self.shards])))
        if "text" in roles:
            out.append(RoleDocs("text", [f"text:{i}" for i in ids], ids, [{"item": ids[j], **cap(j)} for j in range(self.n)],
                                _concat([_chunked([b], None, b.shape[0]) for _, b in self.shards])))
        if "fused" in roles:
            out.append(RoleDocs("fused", [f"fused:{i}" for i in ids], ids, [{"item": ids[j], **cap(j)} for j in range(self.n)],
                                _concat([_chunked([a, b], None, a.shape[0]) for a, b in self.shards])))
        return out

    def subset(self, rows: np.ndarray) -> PairedEmbeddings:
        """The 1:1 pairs at global `rows` (sorted), read shard by shard, in memory."""
        rows = np.sort(np.asarray(rows, np.int64))
        starts = np.cumsum([0] + self.sizes)
        img, txt = [], []
        for k, (a, b) in enumerate(self.shards):
            sel = rows[(rows >= starts[k]) & (rows < starts[k + 1])] - starts[k]
            if sel.size:
                img.append(np.asarray(a[sel], np.float32))
                txt.append(np.asarray(b[sel], np.float32))
        return PairedEmbeddings(np.concatenate(img), np.concatenate(txt))


def _clip_retrieval_captions(path: Any, n: int) -> list[str] | None:
    import re
    from pathlib import Path

    metas = sorted((Path(path) / "metadata").glob("metadata_*.parquet"), key=lambda f: int(re.sub(r"\D", "", f.stem) or 0))
    if not metas:
        return None
    import pyarrow.parquet as pq

    caps: list[str] = []
    for f in metas:
        t = pq.read_table(f)
        if "caption" not in t.column_names:
            return None
        caps.extend("" if c is None else str(c) for c in t.column("caption").to_pylist())
    return caps if len(caps) == n else None


def docs_from_pairs(pe: PairedEmbeddings, roles: Sequence[str] = ROLES, image_paths: Sequence[str | None] | None = None,
                    fields: Sequence[dict[str, Any]] | None = None) -> list[RoleDocs]:
    """Documents of the requested roles from paired embeddings.

    image_paths: one path (or None) per image; fields: extra payload fields per image (both optional).
    """
    bad = sorted(set(roles) - set(ROLES))
    if bad or not roles:
        raise GapkitError(f"unknown document roles {bad}; known: {', '.join(ROLES)}" if bad else "no document roles")
    n, m = pe.n_image, pe.n_text
    image_ids = [str(i) for i in (pe.image_ids or range(n))]
    if len(set(image_ids)) != n:
        raise GapkitError("image ids must be unique (they name the documents)")
    mapping = pe.mapping
    captions = pe.captions
    paths = list(image_paths) if image_paths is not None else [None] * n
    if len(paths) != n:
        raise GapkitError(f"image_paths: {len(paths)} entries for {n} images")
    extra = list(fields) if fields is not None else [{}] * n

    def image_payload(i: int) -> dict[str, Any]:
        p = {**extra[i], "item": image_ids[i]}
        if paths[i]:
            p["image_path"] = str(paths[i])
        return p

    out = []
    if "image" in roles:
        out.append(RoleDocs("image", [f"image:{s}" for s in image_ids], list(image_ids),
                            [image_payload(i) for i in range(n)], _chunked([pe.image], None, n)))
    if "text" in roles:
        items = [image_ids[int(i)] for i in mapping]
        pays = [{"item": items[j], **({"caption": captions[j]} if captions is not None else {})} for j in range(m)]
        out.append(RoleDocs("text", [f"text:{j}" for j in range(m)], items, pays, _chunked([pe.text], None, m)))
    if "fused" in roles:
        first = np.full(n, -1, np.int64)
        first[mapping[::-1]] = np.arange(m)[::-1]  # the first caption row of every image
        has = np.flatnonzero(first >= 0)
        pays = []
        for i in has:
            p = image_payload(int(i))
            if captions is not None:
                p["caption"] = captions[int(first[i])]
            pays.append(p)
        out.append(RoleDocs("fused", [f"fused:{image_ids[i]}" for i in has], [image_ids[i] for i in has], pays,
                            _chunked([pe.image, pe.text], [has, first[has]], int(has.size))))
    return out
