"""`gapkit embed`: images + captions -> PairedEmbeddings on disk, cached, shardable."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HELP = "embed a dataset's images and captions with an encoder (cached; --shard i/k, --merge)"
DESCRIPTION = """Embed the images and captions of a dataset with an encoder and write an embed directory:
  OUT/embeddings.safetensors  image (N,D), text (M,D), text_to_image (M,) (+ global row indices)
  OUT/manifest.json           model, weights hash, dataset, split, preprocessing, versions
  OUT/captions.json           captions and image ids
Embeddings are unnormalised; metrics normalise rows themselves. A second identical call is
answered from the cache ($GAPKIT_CACHE or ~/.cache/gapkit, or --cache-dir) without running the model.

examples:
  gapkit embed --encoder towers --dataset emoji --split test --out runs/emoji-towers
  gapkit embed --encoder open_clip:ViT-B-32 --seed 1 --dataset openclipart --limit 300 --out runs/oc-vitb32
  gapkit embed --encoder open_clip:ViT-B-32 --checkpoint ckpt.safetensors --dataset data/train.tsv --split all --out e
  gapkit embed --encoder towers --dataset fashion-mnist --split test --shard 0/2 --out s0   # and --shard 1/2 --out s1
  gapkit embed --merge s0 s1 --out full
  torchrun --nproc-per-node 4 -m gapkit embed --encoder towers --dataset emoji --shard auto --out parts
  gapkit embed --merge parts/shard-* --out full
  gapkit measure --embeddings runs/emoji-towers/embeddings.safetensors
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", metavar="NAME", help="registry name (see `gapkit encoders --list`)")
    p.add_argument("--checkpoint", metavar="PATH", help="local weights for the encoder")
    p.add_argument("--seed", type=int, default=0, help="seed for random-init encoders and random heads (default 0)")
    p.add_argument("--dataset", metavar="NAME|PATH", help="fashion-mnist, emoji, openclipart, or a data path")
    p.add_argument("--split", default="test", help="train | val | test | all (default test)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--limit", type=int, help="embed a seeded random subset of this many images")
    p.add_argument("--format", help="user-data format (csv, jsonl, coco, flickr, folder, webdataset)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad row instead of skipping it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for image decoding")
    p.add_argument("--device", default="cpu")
    p.add_argument("--shard", metavar="i/k|auto", help="embed only the i-th of k blocks of images (0-based); "
                   "'auto' takes i/k from torchrun's RANK/WORLD_SIZE and writes OUT/shard-i-of-k")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="merge shard embed directories into --out")
    p.add_argument("--cache-dir", metavar="DIR", help="cache root (default $GAPKIT_CACHE or ~/.cache/gapkit)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, metavar="DIR", help="output embed directory (written atomically)")


def _dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if args.format:
        kw["format"] = args.format
    if args.strict:
        kw["strict"] = True
    return kw


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that fixes the encoder's weights without loading it (for the fast cache path)."""
    import torch

    from .. import __version__

    ck = None
    if args.checkpoint:
        st = os.stat(args.checkpoint)
        ck = [str(Path(args.checkpoint).resolve()), st.st_size, st.st_mtime_ns]
    return {"encoder": args.encoder, "checkpoint": ck, "seed": args.seed, "gapkit": __version__,
            "torch": torch.__version__}


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..encoders.extract import extract_by_spec, merge_embed_dirs, save_embed_dir
    from ..encoders.registry import get_encoder
    from ..errors import GapkitError

    if args.merge:
        pe = merge_embed_dirs(args.merge, args.out)
        print(f"merged {len(args.merge)} shards -> {args.out} ({pe.n_image} images, {pe.n_text} texts, dim {pe.dim})")
        return 0
    if not args.encoder or not args.dataset:
        raise GapkitError("give --encoder and --dataset (or --merge DIRS)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    if args.shard == "auto":
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is None or world is None:
            raise GapkitError("--shard auto needs RANK and WORLD_SIZE in the environment (run it under torchrun)")
        args.shard = f"{rank}/{world}"
        out = out / f"shard-{rank}-of-{world}"
    ds = load_dataset(args.dataset, args.split, args.split_seed, limit=args.limit, cache_dir=args.cache_dir,
                      **_dataset_kwargs(args))

    def make_encoder() -> Any:
        kw: dict[str, Any] = {"device": args.device}
        if not args.encoder.startswith(("hf", "sbert")):
            kw["seed"] = args.seed
        return get_encoder(args.encoder, checkpoint=args.checkpoint, **kw)

    pe = extract_by_spec(make_encoder, _spec(args), ds, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                         shard=args.shard, batch_size=args.batch_size, num_workers=args.workers,
                         progress=not args.quiet)
    save_embed_dir(pe, out)
    src = "cache" if pe.metadata.get("from_cache") else "model"
    print(f"{out}: {pe.n_image} images, {pe.n_text} texts, dim {pe.dim} ({pe.metadata['model']}, from {src})",
          file=sys.stderr if args.quiet else sys.stdout)
    return 0
