"""Argument groups and output helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..atomic import dumps_json, write_json_atomic
from ..embeddings import PairedEmbeddings, load_embeddings
from ..errors import GapkitError


def seed_arg(text: str) -> int:
    """argparse type of every --seed: an integer in [0, 2**32 - 1] (checked before any work)."""
    from ..validation import check_seed

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: give an integer") from None
    try:
        return check_seed(value)
    except GapkitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def device_arg(text: str) -> str:
    """argparse type of every --device: auto, cpu, cuda, cuda:N, mps; an absent accelerator is an error."""
    from ..validation import check_device

    try:
        return check_device(text)
    except GapkitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_embedding_args(p: argparse.ArgumentParser, prefix: str = "", required: bool = True) -> None:
    """--embeddings FILE | --image FILE --text FILE [--text-to-image FILE] | --sample NAME."""
    g = p.add_argument_group("input embeddings")
    g.add_argument(f"--{prefix}embeddings", metavar="PATH",
                   help="one file with both modalities: (2,N,D) .npy stack, .npz/.safetensors/.pt with "
                        "'image' and 'text', parquet, or a clip-retrieval output directory")
    g.add_argument(f"--{prefix}image", metavar="PATH", help="image embeddings (N, D), any supported format")
    g.add_argument(f"--{prefix}text", metavar="PATH", help="text embeddings (M, D), any supported format")
    g.add_argument(f"--{prefix}text-to-image", metavar="PATH",
                   help="(M,) index of each text's image (.npy, .json list, or .txt one per line)")
    g.add_argument(f"--{prefix}sample", metavar="NAME",
                   help="a bundled real sample, e.g. 'clip' (see gapkit.SAMPLES)")
    if not prefix:
        add_key_arg(g)


def add_key_arg(p: Any, what: str = "") -> None:
    """--key NAME | IMAGE,TEXT: which array of a several-array file (gapkit.embeddings.load_array)."""
    p.add_argument("--key", metavar="NAME[,TEXT]",
                   help="the array to read from a file (.npz/.safetensors/.pt/parquet) or embed directory that "
                        "holds several: one NAME, or IMAGE,TEXT for a paired file whose arrays are not named "
                        "image/text" + what)


def load_from_args(args: argparse.Namespace, prefix: str = "") -> tuple[PairedEmbeddings, dict[str, Any]]:
    """Load the embeddings named by add_embedding_args; return them and an 'inputs' dict."""
    pre = prefix.replace("-", "_")
    emb = getattr(args, f"{pre}embeddings")
    img, txt = getattr(args, f"{pre}image"), getattr(args, f"{pre}text")
    mapping, sample = getattr(args, f"{pre}text_to_image"), getattr(args, f"{pre}sample")
    given = [x is not None for x in (emb, img or txt, sample)]
    if sum(given) != 1:
        raise GapkitError(f"give exactly one input: --{prefix}embeddings, --{prefix}image/--{prefix}text, or --{prefix}sample")
    key = getattr(args, "key", None) if not prefix else None
    if sample is not None:
        if key is not None:
            raise GapkitError("--key applies to --embeddings/--image/--text files, not to --sample")
        from ..samples import load_sample, sample_path

        return load_sample(sample), {"sample": sample, "embeddings": str(sample_path(sample))}
    pe = load_embeddings(emb, image=img, text=txt, text_to_image=mapping, key=key)
    inputs = {"embeddings": emb, "image": img, "text": txt, "text_to_image": mapping}
    return pe, {k: v for k, v in inputs.items() if v is not None}


def with_ci(m: dict[str, Any], key: str, fmt: Any = "{:.3f}".format) -> str:
    """'key value [low, high]' for the one-line summaries of measure and evaluate."""
    text = f"{key} {fmt(m[key])}"
    if f"{key}_ci_low" in m:
        text += f" [{fmt(m[key + '_ci_low'])}, {fmt(m[key + '_ci_high'])}]"
    return text


def ensure_output_differs(out: str | Path | None, inputs: Any) -> None:
    """Refuse an output path that names one of the inputs (it would be overwritten while read):
    outputs.check_output_paths, which compares resolved paths. Writing beside an input stays
    allowed here (a record may sit next to what it measured); the CLI's own check is stricter."""
    from ..outputs import check_output_paths

    if out is None:
        return
    check_output_paths({"output": str(out)}, [str(i) for i in inputs if isinstance(i, (str, Path)) and i],
                       allow_inside_input_dirs=True)


def write_output(obj: dict[str, Any], out: str | None) -> None:
    """Write a JSON record to `out` atomically, or to stdout when out == '-'.

    The record's own "inputs" are checked first, so a record never overwrites what it was made from.
    """
    inputs = obj.get("inputs")
    ensure_output_differs(out, inputs.values() if isinstance(inputs, dict) else [])
    if out == "-":
        sys.stdout.write(dumps_json(obj) + "\n")
    elif out:
        write_json_atomic(Path(out), obj)


def names_of(pe: PairedEmbeddings, inputs: dict[str, Any]) -> tuple[str, str]:
    """(model, dataset) of loaded embeddings, for records and report titles: from the embed
    manifest (`gapkit embed` writes model, dataset, split), a bundled sample's description, or
    else the input file's name, never "unknown"."""
    meta = pe.metadata or {}
    man = meta.get("manifest") if isinstance(meta.get("manifest"), dict) else meta
    if inputs.get("sample"):
        from ..samples import SAMPLES

        desc = [s.strip() for s in SAMPLES.get(str(inputs["sample"]), "").split(";")]
        if len(desc) > 1:
            return desc[0], desc[1]
    src = inputs.get("embeddings") or inputs.get("image") or inputs.get("sample") or "embeddings"
    model = man.get("model") or f"embeddings {Path(str(src)).name}"
    data = man.get("dataset") or Path(str(src)).name
    if man.get("split") and man.get("split") != "all":
        data = f"{data} ({man['split']})"
    return str(model), str(data)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """--engine local|ray and --address (where a sharded run executes; see gapkit.engines)."""
    g = p.add_argument_group("engine (sharded runs)")
    g.add_argument("--engine", choices=("local", "ray"),
                   help="run one task per shard of a shard folder: 'local' in this process, 'ray' on a Ray "
                        "cluster (pip install 'gapkit[ray]'); default: the single-process path")
    g.add_argument("--address", metavar="auto|HOST:PORT",
                   help="Ray cluster to join (default: start a local Ray instance); needs --engine ray")


def check_engine_args(args: argparse.Namespace) -> None:
    """--address only with --engine ray."""
    if getattr(args, "address", None) and getattr(args, "engine", None) != "ray":
        raise GapkitError("--address needs --engine ray")
