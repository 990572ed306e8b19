"""`gapkit fix`: fit a gap fixer on calibration embeddings and apply it to other embeddings."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "fit a post-hoc gap fixer and apply it to embeddings (output keeps the input layout)"
OUTPUT_ARGS = ("out", "save_fixer", "record")
DESCRIPTION = """Fit a post-hoc gap fixer on calibration embeddings and apply it.

examples:
  gapkit fix --method center --fit calib.npy --apply data.npy --out fixed.npy
  gapkit fix --method shift --param lam=0.5 --fit-sample clip --apply data.npz --out fixed.npz
  gapkit fix --method procrustes --fit calib.npz --apply-text texts.npy --out texts_fixed.npy
  gapkit fix --method saved_fixer_dir --apply data.npy --out fixed.npy
  gapkit fix --method center --fit calib_shards/ --apply shards/ --out fixed_shards/ --engine ray --address auto
With --engine (local or ray), --apply is a shard folder (clip-retrieval, embed dirs, parquet or
(2, N, D) .npy stacks) and --out a folder written in the same layout, one task per shard; a --fit
shard folder is fitted from merged statistics where the fixer allows (center, shift with a numeric
lam, standardize, topk, procrustes, noise), otherwise --fit is read in this process.
A (2, N, D) .npy stack is written as a stack (streamed chunk by chunk, memory-mapped), so the
output can be piped into `gapkit measure --embeddings fixed.npy`. Other paired inputs are
written in the format of --out's suffix (.npz, .safetensors, .pt, .parquet, or a directory for
clip-retrieval layout), keeping the text_to_image map.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ._fixer_args import add_fixer_args

    add_fixer_args(p, required=True)
    g = p.add_argument_group("data to fix")
    g.add_argument("--apply", metavar="PATH", help="paired embeddings to transform (any format gapkit measure reads)")
    g.add_argument("--apply-image", metavar="PATH", help="a single matrix of image embeddings to transform")
    g.add_argument("--apply-text", metavar="PATH", help="a single matrix of text embeddings to transform")
    from ._common import add_key_arg

    add_key_arg(g)
    p.add_argument("--out", required=True, metavar="PATH",
                   help="output file (or directory for clip-retrieval; with --apply-image/--apply-text of a "
                        "one-side embed directory, a directory name writes a one-side embed directory)")
    p.add_argument("--chunk-size", type=int, default=16_384, metavar="ROWS", help="rows per streamed chunk")
    p.add_argument("--record", metavar="PATH",
                   help="where to write the run record (JSON; default OUT.record.json beside the output), "
                        "so `gapkit report` shows the fixer with its gap before and after")
    from ._common import add_engine_args

    add_engine_args(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import GapkitError
    from ._common import ensure_output_differs
    from ._fixer_args import fixer_from_args, save_fixer_if_asked

    given = [x for x in (args.apply, args.apply_image, args.apply_text) if x]
    if len(given) != 1:
        raise GapkitError("give exactly one of --apply, --apply-image, --apply-text")
    ensure_output_differs(args.out, [*given, args.fit])
    from ..fixers import FIXERS

    cls = FIXERS.get(args.method)
    if cls is not None and cls.acts_on != "embeddings":
        raise GapkitError(f"fixer '{cls.name}' calibrates scores and leaves embeddings unchanged; use it with "
                          "`gapkit evaluate --task mixed-retrieval --fixer ...`")
    if args.engine:
        return _run_sharded(args)
    fx, desc = fixer_from_args(args)
    if fx.acts_on != "embeddings":  # a saved score fixer
        raise GapkitError(f"fixer '{fx.name}' calibrates scores and leaves embeddings unchanged; use it with "
                          "`gapkit evaluate --task mixed-retrieval --fixer ...` (or save it with --save-fixer)")
    record_path = args.record or f"{str(args.out).rstrip('/')}.record.json"
    ensure_output_differs(record_path, [*given, args.fit, args.out])
    results: dict[str, Any] = {"fixer": fx.name}
    if args.apply:
        before, after = _fix_paired(fx, args.apply, args.out, args.chunk_size, args.key)
        what = f"gap {before:.4f} -> {after:.4f}"
        results.update(centroid_distance_before=before, centroid_distance_after=after)
    else:
        modality = "image" if args.apply_image else "text"
        _fix_single(fx, args.apply_image or args.apply_text, modality, args.out, args.chunk_size, args.key)
        what = f"{modality} rows"
        results["modality"] = modality
    _write_record(args, fx, desc, results, record_path)
    print(f"gapkit fix: {fx.name} -> {args.out} ({what}; record {record_path})", file=sys.stderr)
    save_fixer_if_asked(args, fx)
    return 0


def _write_record(args: argparse.Namespace, fx: Any, desc: dict[str, Any], results: dict[str, Any], path: str) -> None:
    """A "fix" record naming the fixer, what it was fitted on and applied to, and the gap before/after."""
    from ..atomic import write_json_atomic
    from ..records import new_record

    src = args.apply or args.apply_image or args.apply_text
    title = f"fix: {fx.name} fitted on {desc.get('fit') or args.method}, applied to {Path(src).name}"
    rec = new_record("fix", title=title, params=desc, inputs={"apply": src, "out": args.out},
                     results={"fixers": {fx.name: results}}, fixer=fx.name)
    write_json_atomic(path, rec)


def _centroid_gap(image: Any, text: Any) -> float:
    import numpy as np

    from ..fixers._stream import mean_of_normalized

    return float(np.linalg.norm(mean_of_normalized(image, "image") - mean_of_normalized(text, "text")))


def _fix_paired(fx: Any, src: str, out: str, chunk: int, key: str | None = None) -> tuple[float, float]:
    """Transform both modalities; a .npy stack streams into a .npy stack, other layouts go through
    save_embeddings. Returns the centroid gap before and after."""
    import numpy as np

    from ..atomic import atomic_path
    from ..embeddings import load_embeddings, save_embeddings
    from ..errors import GapkitError

    pe = load_embeddings(src, key=key)
    before = _centroid_gap(pe.image, pe.text)
    if Path(out).suffix.lower() == ".npy":
        if not pe.one_to_one:
            raise GapkitError("a .npy stack holds 1:1 pairs only; write .npz or .safetensors to keep the text_to_image map")
        dtype = np.float64 if pe.image.dtype == np.float64 else np.float32
        with atomic_path(out) as tmp:
            stack = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(2, pe.n_image, pe.dim))
            fx.transform(pe.image, "image", out=stack[0], chunk_size=chunk)
            fx.transform(pe.text, "text", out=stack[1], chunk_size=chunk)
            stack.flush()
            after = _centroid_gap(stack[0], stack[1])
            del stack
        return before, after
    img = fx.transform(pe.image, "image", chunk_size=chunk)
    txt = fx.transform(pe.text, "text", chunk_size=chunk)
    save_embeddings(pe.with_arrays(img, txt), out)
    return before, _centroid_gap(img, txt)


def _fix_single(fx: Any, src: str, modality: str, out: str, chunk: int, key: str | None = None) -> None:
    import numpy as np

    from ..atomic import atomic_path
    from ..embeddings import embed_dir_side, load_array, save_array

    a = load_array(src, key, side=modality)
    if not Path(out).suffix and embed_dir_side(src) == modality:  # one-side embed dir in, one out
        _fix_side_dir(fx, src, modality, a, out, chunk)
    elif Path(out).suffix.lower() == ".npy":
        with atomic_path(out) as tmp:
            dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=a.shape)
            fx.transform(a, modality, out=dst, chunk_size=chunk)
            dst.flush()
            del dst
    else:
        save_array(fx.transform(a, modality, chunk_size=chunk), out)


def _fix_side_dir(fx: Any, src: str, side: str, a: Any, out: str, chunk: int) -> None:
    """A one-side embed directory (gapkit embed --texts/--images) -> the same, rows fixed, manifest noting the fixer."""
    from ..atomic import read_json_object
    from ..encoders.embed_dir import save_side_dir

    man = read_json_object(Path(src) / "manifest.json", "embed manifest")
    caps = read_json_object(Path(src) / "captions.json", "embed captions file")
    man["fixer"] = {"name": fx.name, "params": fx.get_params(), "from": str(src)}
    save_side_dir(fx.transform(a, side, chunk_size=chunk), side, out, man,
                  captions=caps.get("captions"), image_ids=caps.get("image_ids"))


def _run_sharded(args: argparse.Namespace) -> int:
    """--engine local|ray: fit (from merged statistics where possible), then one task per shard."""
    from ..atomic import check_replaceable_dir
    from ..engines import get_engine
    from ..errors import GapkitError
    from ..fixers import create_fixer
    from ..fixers.sharded import fit_sharded, fix_shards
    from ._common import check_engine_args
    from ._fixer_args import fixer_from_args, is_saved_fixer, parse_params, save_fixer_if_asked

    check_engine_args(args)
    if not args.apply or not Path(args.apply).is_dir():
        raise GapkitError("--engine reads --apply SHARD_FOLDER (clip-retrieval, embed dirs, parquet or .npy stacks)")
    from ..shards import list_shards

    list_shards(args.apply)  # bad folders fail before a cluster is contacted
    check_replaceable_dir(args.out)
    fit_dir = args.fit and Path(args.fit).is_dir() and not is_saved_fixer(args.method)
    eng = get_engine(args.engine, address=args.address, progress=sys.stderr.isatty())
    try:
        fx = create_fixer(args.method, **parse_params(args.param)) if fit_dir else None
        if fx is not None and fx.fits_from_stats:
            if args.save_fixer:
                check_replaceable_dir(args.save_fixer)
            fx = fit_sharded(fx, args.fit, engine=eng, chunk=args.chunk_size)
        else:
            fx, _ = fixer_from_args(args)
        if fx.acts_on != "embeddings":
            raise GapkitError(f"fixer '{fx.name}' calibrates scores and leaves embeddings unchanged")
        summary = fix_shards(fx, args.apply, args.out, engine=eng, chunk=args.chunk_size)
    finally:
        eng.close()
    print(f"gapkit fix: {fx.name} -> {args.out} ({summary['shards']} shards, {summary['rows']} rows, "
          f"gap {summary['gap_before']:.4f} -> {summary['gap_after']:.4f}, engine {args.engine})", file=sys.stderr)
    save_fixer_if_asked(args, fx)
    return 0
