"""`gapkit embed`: images + captions -> PairedEmbeddings on disk, cached, shardable."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..embeddings import ARRAY_SUFFIXES, PICKLE_SUFFIXES
from ..errors import GapkitError

from ._common import device_arg, seed_arg  # noqa: E402

HELP = "embed a dataset's images and captions with an encoder (cached; --shard i/k, --merge)"
DESCRIPTION = """Embed the images and captions of a dataset with an encoder and write an embed directory
(--out names a directory, not a file):
  OUT/embeddings.safetensors  image (N,D), text (M,D), text_to_image (M,) (+ global row indices)
  OUT/manifest.json           model, weights hash, dataset, split, preprocessing, versions, CSV columns
  OUT/captions.json           captions and image ids
Every gapkit command that reads embeddings takes OUT itself (or OUT/embeddings.safetensors).
With --texts FILE or --images DIR (instead of --dataset) only that side is embedded, as
clip-retrieval's inference does; the manifest says which ("sides"), and commands that need both
sides name the missing one (pair two such directories with --image DIR --text DIR).
Embeddings are unnormalised; metrics normalise rows themselves. A second identical call is
answered from the cache ($GAPKIT_CACHE or ~/.cache/gapkit, or --cache-dir) without running the model.

CSV/TSV data: one row per (image, caption), image paths relative to the file. The columns are
found by name (image: filepath, image, image_path, img_path, path, img, file_name, filename;
caption: title, caption, text, captions, description) or set with --image-column/--caption-column;
the separator is a tab when the header has one, else a comma (or --sep). Images above
--max-pixels (default 16 MP) are skipped with a counted warning, without being decoded.

examples:
  gapkit embed --encoder towers --dataset emoji --split test --out runs/emoji-towers
  gapkit embed --encoder towers --dataset pairs.csv --split all --out runs/mine   # columns image,caption
  gapkit embed --encoder towers --dataset pairs.csv --image-column img --caption-column alt --sep ';' --out e
  gapkit embed --encoder open_clip:ViT-B-32 --seed 1 --dataset openclipart --limit 300 --out runs/oc-vitb32
  gapkit embed --encoder open_clip:ViT-B-32 --checkpoint ckpt.safetensors --dataset data/train.tsv --split all --out e
  gapkit embed --encoder towers --dataset fashion-mnist --split test --shard 0/2 --out s0   # and --shard 1/2 --out s1
  gapkit embed --merge s0 s1 --out full
  gapkit embed --encoder towers --texts queries.txt --out runs/q        # texts alone (one per line)
  gapkit embed --encoder towers --images photos/ --out runs/photos      # every image under photos/
  gapkit search runs/idx --query-vector runs/q                          # one ranked list per text
  torchrun --nproc-per-node 4 -m gapkit embed --encoder towers --dataset emoji --shard auto --out parts
  gapkit embed --merge parts/shard-* --out full
  gapkit measure --embeddings runs/emoji-towers
  gapkit embed --encoder towers --dataset openclipart --engine ray --address auto --actors 4 --out shards
  gapkit measure --embeddings shards --engine ray --address auto

With --engine (local or ray) the output is a resumable clip-retrieval shard folder (img_emb/,
text_emb/, metadata/ + manifest.json; one row per image-caption pair, in caption order): Ray Data
decodes images in CPU tasks and encodes them in --actors encoder actors (--gpus-per-worker GPUs
each); a rerun skips shards that are complete. See docs/scale.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_data_args(p, default_split="test")
    one = p.add_argument_group("one side only (instead of --dataset)")
    one.add_argument("--texts", metavar="FILE",
                     help="embed texts alone: .txt (one per line), or a .csv/.tsv/.jsonl column (--caption-column); "
                          "writes an embed directory holding text rows only")
    one.add_argument("--images", metavar="DIR",
                     help="embed every image under DIR alone (paths outside DIR refused unless under a --root); "
                          "writes an embed directory holding image rows only")
    p.add_argument("--shard", metavar="i/k|auto", help="embed only the i-th of k blocks of images (0-based); "
                   "'auto' takes i/k from torchrun's RANK/WORLD_SIZE and writes OUT/shard-i-of-k")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="merge shard embed directories into --out")
    p.add_argument("--out", required=True, metavar="DIR", help="output embed directory (written atomically)")
    from ._common import add_engine_args

    add_engine_args(p)
    g = p.add_argument_group("sharded extraction (--engine)")
    g.add_argument("--actors", type=int, default=1, metavar="N", help="encoder actors (model copies) on Ray (default 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="GPUs per encoder actor (default 0: CPU); the actor encodes on its GPU")
    g.add_argument("--shard-rows", type=int, default=100_000, metavar="S",
                   help="image-caption pairs per output shard (default 100000)")


def add_model_data_args(p: argparse.ArgumentParser, default_split: str = "test") -> None:
    """Encoder, dataset, batching and cache options (shared by `gapkit embed` and `gapkit study`)."""
    p.add_argument("--encoder", metavar="NAME", help="registry name (see `gapkit encoders --list`)")
    p.add_argument("--checkpoint", metavar="PATH", help="local weights for the encoder")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed for random-init encoders and random heads (default 0)")
    p.add_argument("--dataset", metavar="NAME|PATH", help="fashion-mnist, emoji, openclipart, or a data path")
    p.add_argument("--split", default=default_split, help=f"train | val | test | all (default {default_split})")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--limit", type=int, help="embed a seeded random subset of this many images")
    p.add_argument("--format", help="user-data format (csv, jsonl, coco, flickr, folder, webdataset)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad row instead of skipping it")
    p.add_argument("--image-column", metavar="NAME",
                   help="CSV/TSV column (JSONL key) of the image paths (open_clip's csv_img_key; default: "
                        "the first of filepath, image, image_path, path, ... in the header)")
    p.add_argument("--caption-column", metavar="NAME",
                   help="CSV/TSV column (JSONL key) of the captions (open_clip's csv_caption_key; default: "
                        "the first of title, caption, text, ... in the header)")
    p.add_argument("--sep", metavar="CHAR",
                   help="CSV/TSV separator (open_clip's csv_separator; '\\t' or 'tab' for a tab; default: "
                        "a tab when the header has one, else a comma)")
    p.add_argument("--root", action="append", default=[], metavar="DIR",
                   help="allow image paths (absolute, or symlinks) that resolve under DIR (repeatable); "
                        "the dataset file's folder is always allowed, everything else is refused")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="skip images with more pixels than this (read from the header, not decoded) "
                        "for openclipart and user data (default 16000000; 0 = no limit)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for image decoding")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu (default), cuda, cuda:N, mps, auto")
    p.add_argument("--cache-dir", metavar="DIR", help="cache root (default $GAPKIT_CACHE or ~/.cache/gapkit)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# What --out must not look like: it is a directory, and `measure` would read FILE.npz as an array file.
_FILE_SUFFIXES = (*ARRAY_SUFFIXES, *PICKLE_SUFFIXES, ".json", ".csv", ".tsv")
_SEPARATORS = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def _dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Reader/builder options from the CLI; only those given, so built-in datasets stay usable."""
    kw: dict[str, Any] = {}
    if args.format:
        kw["format"] = args.format
    if args.strict:
        kw["strict"] = True
    if args.image_column:
        kw["img_key"] = args.image_column
    if args.caption_column:
        kw["caption_key"] = args.caption_column
    if args.sep:
        kw["sep"] = _SEPARATORS.get(args.sep.lower(), args.sep)
    if args.max_pixels is not None:
        if args.max_pixels < 0:
            raise GapkitError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
        kw["max_pixels"] = args.max_pixels or None
    if getattr(args, "root", None):
        for r in args.root:
            if not Path(r).is_dir():
                raise GapkitError(f"--root {r}: not a directory")
        kw["allow_roots"] = [str(Path(r).resolve()) for r in args.root]
    return kw


def check_out_dir(out: str) -> None:
    """Refuse an --out that names a file format: `gapkit embed` writes a directory."""
    suffix = Path(out).suffix.lower()
    if suffix in _FILE_SUFFIXES:
        raise GapkitError(f"--out {out}: gapkit embed writes a directory (embeddings.safetensors, manifest.json, "
                          f"captions.json), not a {suffix} file; give a directory name such as "
                          f"{Path(out).with_suffix('')}")


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that fixes the encoder's weights without loading it (for the fast cache path)."""
    from ..encoders.cache import encoder_spec

    return encoder_spec(args.encoder, args.checkpoint, args.seed)


def run(args: argparse.Namespace) -> int:
    from ..encoders.embed_dir import merge_embed_dirs, save_embed_dir

    check_out_dir(args.out)
    from ._common import check_engine_args

    check_engine_args(args)
    if args.engine and (args.shard or args.merge):
        raise GapkitError("--engine writes its own shards; --shard and --merge do not apply")
    if args.merge and (args.texts or args.images):
        raise GapkitError("--merge joins shard directories; it does not apply with --texts/--images")
    if args.merge:
        pe = merge_embed_dirs(args.merge, args.out)
        print(f"merged {len(args.merge)} shards -> {args.out} ({pe.n_image} images, {pe.n_text} texts, dim {pe.dim})")
        return 0
    if args.texts or args.images:
        return _run_one_side(args)
    if not args.encoder or not args.dataset:
        raise GapkitError("give --encoder and --dataset (or --texts FILE, --images DIR, or --merge DIRS)")
    out = Path(args.out)
    if args.shard == "auto":
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is None or world is None:
            raise GapkitError("--shard auto needs RANK and WORLD_SIZE in the environment (run it under torchrun)")
        args.shard = f"{rank}/{world}"
        out = out / f"shard-{rank}-of-{world}"
    if args.engine:
        return _run_sharded(args)
    pe, _ = embed_from_args(args, shard=args.shard)
    save_embed_dir(pe, out)
    src = "cache" if pe.metadata.get("from_cache") else "model"
    print(f"{out}: {pe.n_image} images, {pe.n_text} texts, dim {pe.dim} ({pe.metadata['model']}, from {src})",
          file=sys.stderr if args.quiet else sys.stdout)
    return 0


# Options of a dataset that mean nothing for one side (a text file or an image folder).
_DATASET_ONLY = {"dataset": "--dataset", "shard": "--shard", "engine": "--engine", "limit": "--limit",
                 "format": "--format", "image_column": "--image-column"}
_TEXTS_ONLY = {"caption_column": "--caption-column", "sep": "--sep"}
_IMAGES_ONLY = {"root": "--root", "max_pixels": "--max-pixels"}


def _run_one_side(args: argparse.Namespace) -> int:
    """--texts FILE / --images DIR: one-side embed directory (gapkit.encoders.sides)."""
    from ..encoders.embed_dir import save_side_dir
    from ..encoders.sides import embed_side, list_images, read_texts

    if args.texts and args.images:
        raise GapkitError("give --texts or --images, not both (embed the other side in a second call)")
    refused = {**_DATASET_ONLY, **(_IMAGES_ONLY if args.texts else _TEXTS_ONLY)}
    for attr, flag in refused.items():
        if getattr(args, attr, None):
            raise GapkitError(f"{flag} does not apply with {'--texts' if args.texts else '--images'}")
    if args.split != "test" or args.split_seed:
        raise GapkitError("--split/--split-seed do not apply with --texts/--images (every row is embedded)")
    if not args.encoder:
        raise GapkitError("give --encoder NAME (see `gapkit encoders --list`)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.texts:
        data = read_texts(args.texts, column=args.caption_column,
                          sep=_SEPARATORS.get(args.sep.lower(), args.sep) if args.sep else None)
    else:
        kw = _dataset_kwargs(args)
        data = list_images(args.images, allow_roots=kw.get("allow_roots", ()), strict=args.strict,
                           max_pixels=args.max_pixels)
    rows, manifest = embed_side(lambda: make_encoder(args), _spec(args), data, cache_dir=args.cache_dir,
                                use_cache=not args.no_cache, batch_size=args.batch_size, num_workers=args.workers,
                                progress=not args.quiet)
    if data.side == "text":
        save_side_dir(rows, "text", args.out, manifest, captions=data.items)
    else:
        save_side_dir(rows, "image", args.out, manifest, image_ids=data.ids)
    src = "cache" if manifest.get("from_cache") else "model"
    print(f"{args.out}: {len(rows)} {data.side}s only, dim {rows.shape[1]} ({manifest['model']}, from {src})",
          file=sys.stderr if args.quiet else sys.stdout)
    return 0


def embed_from_args(args: argparse.Namespace, shard: str | None = None) -> tuple[Any, Any]:
    """(PairedEmbeddings, ImageTextDataset) for the encoder and dataset options of
    `add_model_data_args`; a repeat of the same request is read from the cache without the model."""
    from ..data import load_dataset
    from ..encoders.cache import extract_by_spec

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = load_dataset(args.dataset, args.split, args.split_seed, limit=args.limit, cache_dir=args.cache_dir,
                      **_dataset_kwargs(args))

    pe = extract_by_spec(lambda: make_encoder(args), _spec(args), ds, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                         shard=shard, batch_size=args.batch_size, num_workers=args.workers,
                         progress=not args.quiet)
    # Say which CSV columns were read (auto-detected or given) and what the reader skipped.
    pe.metadata.update({k: v for k, v in (("dataset_columns", ds.info.get("columns")),
                                          ("dataset_skipped", ds.info.get("skipped"))) if v})
    return pe, ds


def make_encoder(args: argparse.Namespace) -> Any:
    """The encoder named by --encoder/--checkpoint/--seed/--device (seeded unless hf/sbert),
    built once per args (a study embeds its data and then its zero-shot prompts)."""
    from ..encoders.registry import get_encoder

    if getattr(args, "_encoder", None) is None:
        kw: dict[str, Any] = {"device": args.device}
        if not args.encoder.startswith(("hf", "sbert")):
            kw["seed"] = args.seed
        args._encoder = get_encoder(args.encoder, checkpoint=args.checkpoint, **kw)
    return args._encoder


class EncoderMaker:
    """A picklable `device -> Encoder` for the workers: registry name, checkpoint and seed."""

    def __init__(self, name: str, checkpoint: str | None, seed: int) -> None:
        self.name, self.checkpoint, self.seed = name, checkpoint, seed

    def __call__(self, device: str) -> Any:
        from ..encoders.registry import get_encoder

        kw: dict[str, Any] = {"device": device}
        if not self.name.startswith(("hf", "sbert")):
            kw["seed"] = self.seed
        return get_encoder(self.name, checkpoint=self.checkpoint, **kw)


def _run_sharded(args: argparse.Namespace) -> int:
    """--engine local|ray: a resumable clip-retrieval shard folder (gapkit.encoders.sharded_extraction)."""
    from ..atomic import check_replaceable_dir
    from ..data import load_dataset
    from ..encoders.sharded_extraction import embed_to_shards
    from ..engines import get_engine

    if args.device != "cpu":
        raise GapkitError("with --engine, the device follows --gpus-per-worker (each actor uses its own GPU)")
    check_replaceable_dir(args.out)
    eng = get_engine(args.engine, address=args.address)  # an unreachable cluster fails before any work
    try:
        ds = load_dataset(args.dataset, args.split, args.split_seed, limit=args.limit, cache_dir=args.cache_dir,
                          **_dataset_kwargs(args))
        make = EncoderMaker(args.encoder, str(Path(args.checkpoint).resolve()) if args.checkpoint else None, args.seed)
        man = embed_to_shards(make, ds, args.out, engine=eng, batch_size=args.batch_size,
                              shard_rows=args.shard_rows, actors=args.actors, gpus_per_actor=args.gpus_per_worker,
                              progress=not args.quiet, spec=_spec(args))
    finally:
        eng.close()
    print(f"{args.out}: {man['n_rows']} image-caption pairs in {man['n_shards']} shards, dim {man['dim']} "
          f"({man['model']}, engine {args.engine}, {man['resumed_shards']} shards already complete)",
          file=sys.stderr if args.quiet else sys.stdout)
    return 0
