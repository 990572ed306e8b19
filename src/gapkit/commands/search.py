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
    p.add_argument("--query-vector", metavar="PATH", help="a (D,) or (1, D) query vector (.npy, .npz, .safetensors, ...)")
    p.add_argument("--query-role", choices=("text", "image"), help="what a --query-vector embeds (default text)")
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
    if args.query_role and args.query_vector is None:
        raise GapkitError("--query-role applies to --query-vector only")
    if args.k <= 0:  # checked before opening the index or loading a model
        raise GapkitError(f"--k must be a positive integer, got {args.k}")
    idx = open_index(args.index)
    vector = None
    if args.query_vector is not None:
        from ..embeddings import load_array

        vector = load_array(args.query_vector, mmap=False)
    hits = idx.search(text=args.query, image=args.image, vector=vector, query_role=args.query_role, k=args.k,
                      role=args.role, raw=args.raw, min_probability=args.min_probability)
    if args.json:
        print(dumps_json({"index": str(args.index), "correction": idx.correction.name, "raw": args.raw,
                          "hits": [h.to_dict() for h in hits]}))
    else:
        print(format_hits(hits, calibrated=idx.correction.kind == "calibrated"))
    return 0


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
