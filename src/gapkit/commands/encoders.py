"""`gapkit encoders`: list the registered encoders, or build one and describe it."""
from __future__ import annotations

import argparse

from ._common import seed_arg  # noqa: E402

HELP = "list the available encoders (models) or describe one"
OUTPUT_ARGS: tuple[str, ...] = ()
DESCRIPTION = """List the encoder registry, or build one encoder and print its name, dimension,
weights hash and preprocessing.

examples:
  gapkit encoders --list
  gapkit encoders --info towers
  gapkit encoders --info open_clip:RN50 --seed 3
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="list registry prefixes with a description and an example")
    p.add_argument("--info", metavar="NAME", help="build encoder NAME and describe it")
    p.add_argument("--checkpoint", metavar="PATH", help="local weights for --info")
    p.add_argument("--seed", type=seed_arg, default=None, help="init seed for random-init encoders")


def run(args: argparse.Namespace) -> int:
    from ..errors import GapkitError
    from ..encoders.registry import get_encoder, list_encoders

    if args.info:
        kw = {} if args.seed is None else {"seed": args.seed}
        enc = get_encoder(args.info, checkpoint=args.checkpoint, **kw)
        print(f"name:          {enc.name}")
        print(f"embed_dim:     {enc.embed_dim}")
        print(f"weights hash:  {enc.weights_hash()}")
        for k, v in enc.preprocessing.items():
            print(f"{k + ':':<14} {str(v).replace(chr(10), ' ')[:200]}")
        return 0
    if not args.list:
        raise GapkitError("give --list or --info NAME")
    entries = list_encoders()
    width = max(len(k) for k in entries)
    for prefix, e in sorted(entries.items()):
        print(f"{prefix:<{width}}  {e.help}\n{'':<{width}}  e.g. --encoder {e.example}")
    return 0
