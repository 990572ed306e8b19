"""`gapkit index build | info`: build a mixed-modality search index, or describe one."""
from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "build a gap-corrected search index over images, texts and image+text documents (build | info)"
DESCRIPTION = """Build a search index over image, text and fused (image+text) documents with the gap
correction inside, or describe an index.

examples:
  gapkit index build --sample clip --correction center --out runs/clip-idx
  gapkit index build --embeddings runs/emoji-emb --encoder towers --correction calibrated --out runs/idx
  gapkit index build --dataset emoji --encoder towers:pca --correction calibrated --backend faiss --out runs/idx
  gapkit index build --embeddings big/ --correction calibrated --fit calib.npz --backend lancedb \\
      --backend-param index_type=IVF_HNSW_SQ --out runs/big-idx
  gapkit index info runs/idx
Corrections: none (raw cosine), any embedding fixer (center, role-center, shift, procrustes,
standardize, ...; documents fixed per role, queries per role at query time) or calibrated
(P(match) per query role and document role). Fixers and calibration are fitted on --fit data, or
by default on a held-out share (--fit-fraction) of the indexed items (listed in IDX/fit_items.json).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="build an index (written atomically)", allow_abbrev=False,
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = b.add_argument_group("documents (one of)")
    src.add_argument("--embeddings", metavar="PATH", help="an embed directory, clip-retrieval folder or embeddings file")
    from ._common import add_key_arg

    add_key_arg(src, "; with --embeddings")
    src.add_argument("--sample", metavar="NAME", help="a bundled sample, e.g. clip")
    src.add_argument("--dataset", metavar="NAME|PATH", help="a dataset to embed with --encoder (cached)")
    b.add_argument("--split", default="test", help="dataset split (default test)")
    b.add_argument("--limit", type=int, help="embed a seeded subset of this many images")
    b.add_argument("--encoder", metavar="NAME", help="the model that embedded the documents (lets the index embed "
                                                     "text / image queries); required with --dataset")
    b.add_argument("--checkpoint", metavar="PATH", help="local weights for --encoder")
    b.add_argument("--roles", default="image,text,fused", help="document roles to index (default image,text,fused)")
    b.add_argument("--correction", default="none", metavar="NAME", help="none | a fixer name | calibrated (default none)")
    b.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter of the fixer")
    b.add_argument("--prior", action="append", default=[], metavar="P|PAIR=P",
                   help="calibrated: override the prior P(match) (default: relevant documents per query / documents "
                        "of that role), for every pair or one pair, e.g. --prior image-text=0.01")
    b.add_argument("--fit", metavar="PATH", help="calibration embeddings to fit the correction on")
    b.add_argument("--fit-fraction", type=float, default=0.2, help="without --fit: share of indexed items to fit on "
                                                                   "(default 0.2)")
    b.add_argument("--backend", default="lancedb", help="lancedb (default) | faiss (fastest above ~100k documents "
                                                        "per role; see docs/search.md) | exact")
    b.add_argument("--backend-param", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. kind=ivfsq, nprobe=64, refine=4 (faiss), nprobes=32 (lancedb)")
    b.add_argument("--seed", type=int, default=0, help="seed of the held-out calibration share")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--out", required=True, metavar="DIR", help="index directory to write")
    i = sub.add_parser("info", help="describe an index", allow_abbrev=False)
    i.add_argument("index", metavar="IDX")
    i.add_argument("--verify", action="store_true", help="recompute the content hash (reads every vector)")
    i.add_argument("--json", action="store_true", help="print JSON")


def _priors(items: list[str]) -> Any:
    from ..errors import GapkitError
    from ..params import parse_key_values

    if not items:
        return None
    plain = [x for x in items if "=" not in x]
    if plain and len(items) > 1:
        raise GapkitError("--prior: give one number for every pair, or PAIR=P items, not both")
    try:
        return float(plain[0]) if plain else {k: float(v) for k, v in parse_key_values(items, "--prior").items()}
    except (TypeError, ValueError):
        raise GapkitError(f"--prior: not a number in {items}") from None


def run(args: argparse.Namespace) -> int:
    from ..errors import GapkitError

    if args.action == "build":
        return _build(args)
    if args.action == "info":
        return _info(args)
    raise GapkitError("say what to do: gapkit index build ... | gapkit index info IDX")


def _build(args: argparse.Namespace) -> int:
    from ..errors import GapkitError
    from ..params import parse_key_values
    from ..search.build import build_index, build_index_from_dataset
    from ._common import ensure_output_differs

    given = [x for x in (args.embeddings, args.sample, args.dataset) if x]
    if len(given) != 1:
        raise GapkitError("give exactly one of --embeddings, --sample, --dataset")
    ensure_output_differs(args.out, [args.embeddings, args.fit, args.dataset])
    if args.key is not None and not args.embeddings:
        raise GapkitError("--key applies to --embeddings only")
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    kw: dict[str, Any] = dict(out=args.out, roles=roles, correction=args.correction, fit=args.fit,
                              fit_fraction=args.fit_fraction, fixer_params=parse_key_values(args.param, "--param"),
                              prior=_priors(args.prior), backend=args.backend,
                              backend_params=parse_key_values(args.backend_param, "--backend-param"),
                              seed=args.seed, progress=not args.quiet)
    if args.dataset:
        if not args.encoder:
            raise GapkitError("--dataset needs --encoder (the model that embeds it)")
        idx = build_index_from_dataset(args.dataset, args.encoder, split=args.split, limit=args.limit,
                                       checkpoint=args.checkpoint, **kw)
    else:
        if args.limit is not None:
            raise GapkitError("--limit applies to --dataset only")
        if args.sample:
            from ..samples import load_sample

            source: Any = load_sample(args.sample)
        elif args.key is not None:
            from ..embeddings import load_embeddings

            source = load_embeddings(args.embeddings, key=args.key)
        else:
            source = args.embeddings
        idx = build_index(source, encoder=args.encoder, encoder_checkpoint=args.checkpoint, **kw)
    info = idx.info()
    roles_txt = ", ".join(f"{c} {r}" for r, c in info["roles"].items())
    print(f"gapkit index: {info['n_documents']} documents ({roles_txt}), correction {info['correction']['name']}, "
          f"backend {info['backend']['raw']['name']} -> {args.out}", file=sys.stderr)
    q = '"a red apple"' if "text" in info["query_roles"] else "--query-vector q.npy"
    print(f"search it: gapkit search {args.out} {q}", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..atomic import dumps_json
    from ..search import open_index

    idx = open_index(args.index, verify=args.verify)
    info = idx.info()
    if args.verify:
        info["verified"] = True
    if args.json:
        print(dumps_json(info))
        return 0
    enc = info["encoder"]
    lines = [
        f"index        {info['path']}",
        f"documents    {info['n_documents']} ({', '.join(f'{r} {c}' for r, c in info['roles'].items())}), dim {info['dim']}",
        f"encoder      {enc['name'] + (' + ' + enc['checkpoint'] if enc.get('checkpoint') else '') if enc else 'none (vector queries only)'}",
        f"queries      {', '.join(info['query_roles']) or 'vector'}",
        f"correction   {info['correction']['name']}"
        + (f" (calibrated pairs: {', '.join(info['calibrated_pairs'])}; priors "
           + ", ".join(f"{k} {v:.3g}" for k, v in info['correction'].get('priors', {}).items()) + ")"
           if info["calibrated_pairs"] else ""),
        f"fitted on    {info['fit']['source']} ({info['fit']['n_images']} images, {info['fit']['n_texts']} texts)"
        if info.get("fit") else "fitted on    -",
        f"backend      {info['backend']['raw']['name']} {info['backend']['raw']['params']}"
        + (f" (per role: {', '.join(f'{r} {k}' for r, k in info['backend']['raw']['kinds'].items())})"
           if info['backend']['raw'].get("kinds") else ""),
        f"version      gapkit {info['gapkit_version']}, index format {info['format_version']}",
        f"content hash {info['content_hash']}" + (" (verified)" if args.verify else ""),
    ]
    print("\n".join(lines))
    return 0
