"""`gapkit search IDX "text" | --image PATH | --query-vector q.npy`: one ranked list over all roles."""
from __future__ import annotations

import argparse
from typing import Any

HELP = "search a gapkit index with a text, an image or a vector (one ranked list of images and texts)"
DESCRIPTION = """Search an index built with `gapkit index build`. Images, texts and fused documents come
back in one ranked list; each hit shows its role, the corrected score, P(match) (calibrated
indexes) and the raw cosine.

examples:
  gapkit search runs/idx "a red apple"
  gapkit search runs/idx --image apple.png --k 20 --role text
  gapkit search runs/idx "a red apple" --min-probability 0.5 --json
  gapkit search runs/clip-idx --query-vector q.npy --raw
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="IDX", help="index directory")
    p.add_argument("query", nargs="?", metavar="TEXT", help="a text query (needs the index's encoder)")
    p.add_argument("--image", metavar="PATH", help="an image query (needs an index with an image encoder)")
    p.add_argument("--query-vector", metavar="PATH",
                   help="query vectors: a (D,) or (Q, D) array (.npy, .npz, .safetensors, ...) or an embed "
                        "directory (gapkit embed --texts/--images); Q > 1 prints one ranked list per row")
    p.add_argument("--query-role", choices=("text", "image"),
                   help="what a --query-vector embeds (default: the side of a one-side embed directory, else text)")
    from ._common import add_key_arg

    add_key_arg(p, "; with --query-vector")
    p.add_argument("--k", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--role", default="any", help="any | image | text | fused (default any)")
    p.add_argument("--raw", action="store_true", help="rank by raw cosine (no correction)")
    p.add_argument("--min-probability", type=float, metavar="P", help="only hits with P(match) >= P (calibrated indexes)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..atomic import dumps_json
    from ..errors import GapkitError
    from ..search import open_index

    given = [x is not None for x in (args.query, args.image, args.query_vector)]
    if sum(given) != 1:
        raise GapkitError("give exactly one query: TEXT, --image PATH or --query-vector PATH")
    if (args.query_role or args.key) and args.query_vector is None:
        raise GapkitError("--query-role and --key apply to --query-vector only")
    if args.k <= 0:  # checked before opening the index or loading a model
        raise GapkitError(f"--k must be a positive integer, got {args.k}")
    idx = open_index(args.index)
    if args.query_vector is not None:
        return _search_vectors(args, idx)
    hits = idx.search(text=args.query, image=args.image, query_role=args.query_role, k=args.k,
                      role=args.role, raw=args.raw, min_probability=args.min_probability)
    if args.json:
        print(dumps_json({"index": str(args.index), "correction": idx.correction.name, "raw": args.raw,
                          "hits": [h.to_dict() for h in hits]}))
    else:
        print(format_hits(hits, calibrated=idx.correction.kind == "calibrated"))
    return 0


def _search_vectors(args: argparse.Namespace, idx: Any) -> int:
    """--query-vector: one ranked list per row; an embed directory's texts / image paths label the lists."""
    import numpy as np

    from ..atomic import dumps_json
    from ..embeddings import embed_dir_side, load_array
    from ..errors import GapkitError

    role = args.query_role or embed_dir_side(args.query_vector) or "text"
    q = np.asarray(load_array(args.query_vector, args.key, mmap=False, side=role), dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] == 0:
        raise GapkitError(f"--query-vector {args.query_vector}: expected a (D,) or (Q, D) array, got shape {q.shape}")
    lists = [idx.search(vector=row, query_role=role, k=args.k, role=args.role, raw=args.raw,
                        min_probability=args.min_probability) for row in q]
    names = _query_names(args.query_vector, len(q))
    calibrated = idx.correction.kind == "calibrated"
    if args.json:
        body = {"index": str(args.index), "correction": idx.correction.name, "raw": args.raw}
        if len(q) == 1:
            print(dumps_json({**body, "hits": [h.to_dict() for h in lists[0]]}))
        else:
            print(dumps_json({**body, "query_role": role, "queries": [
                {"query": n, "hits": [h.to_dict() for h in hits]} for n, hits in zip(names, lists)]}))
    elif len(q) == 1:
        print(format_hits(lists[0], calibrated=calibrated))
    else:
        print("\n\n".join(f"query {i + 1}/{len(q)} ({role}): {n}\n{format_hits(h, calibrated)}"
                           for i, (n, h) in enumerate(zip(names, lists))))
    return 0


def _query_names(path: str, n: int) -> list[str]:
    """The texts or image paths of an embed directory's rows (captions.json), else "row i"."""
    import json
    from pathlib import Path

    try:
        caps = json.loads((Path(path) / "captions.json").read_text(encoding="utf-8"))
        names = caps.get("captions") or caps.get("image_ids")
    except (OSError, ValueError, AttributeError):
        names = None
    return [str(x) for x in names] if isinstance(names, list) and len(names) == n else [f"row {i}" for i in range(n)]


def _label(payload: dict[str, Any], doc_id: str, width: int = 60) -> str:
    text = payload.get("caption") or payload.get("image_path") or doc_id
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_hits(hits: list[Any], calibrated: bool) -> str:
    """A readable ranked table: rank, role, score, P(match), raw cosine, caption or path."""
    if not hits:
        return "(no hits)"
    head = f"{'#':>3}  {'role':<6} {'score':>8} {'P(match)':>9} {'raw cos':>8}  document"
    rows = [head, "-" * len(head)]
    for h in hits:
        p = "-" if h.probability is None else f"{h.probability:.3f}"
        rows.append(f"{h.rank:>3}  {h.role:<6} {h.score:>8.4f} {p:>9} {h.raw_cosine:>8.4f}  {_label(h.payload, h.id)}")
    if not calibrated:
        rows.append("(P(match) needs an index built with --correction calibrated)")
    return "\n".join(rows)
