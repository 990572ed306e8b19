"""Options shared by `gapkit fix` and `gapkit evaluate` for choosing and fitting a fixer."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..atomic import check_replaceable_dir
from ..errors import GapkitError
from ..params import parse_key_values


def add_fixer_args(p: argparse.ArgumentParser, method_flag: str = "--method", required: bool = False) -> None:
    g = p.add_argument_group("fixer")
    g.add_argument(method_flag, dest="method", metavar="NAME|DIR", required=required,
                   help="fixer name (shift, center, role-center, standardize, topk, procrustes, noise, "
                        "calibrated, ...) or the directory of a fixer saved with --save-fixer (write ./NAME for a "
                        "folder named like a fixer)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="fixer parameter, e.g. --param lam=0.5 --param side=image (values parsed as JSON "
                        "when possible)")
    g.add_argument("--fit", metavar="PATH", help="calibration embeddings to fit the fixer on (any format "
                                                 "gapkit measure reads)")
    g.add_argument("--fit-sample", metavar="NAME", help="fit on a bundled sample instead, e.g. clip")
    g.add_argument("--save-fixer", metavar="DIR", help="also save the fitted fixer (JSON + safetensors)")


def parse_params(items: list[str]) -> dict[str, Any]:
    """["lam=0.5", "side=image"] -> {"lam": 0.5, "side": "image"}."""
    return parse_key_values(items, "--param")


def is_saved_fixer(method: str) -> bool:
    """True when --method names a saved fixer folder. A registered fixer name always means the
    fixer, even where a folder of that name exists in the working directory (a run folder called
    `center` must not be read as a fixer); write ./center to load such a folder."""
    from ..fixers import FIXERS

    return Path(method).is_dir() and method not in FIXERS


def fixer_from_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Load a saved fixer or build + fit one by name; returns (fixer, description for records)."""
    from ..fixers import create_fixer, load_fixer

    if is_saved_fixer(args.method):
        if args.fit or args.fit_sample or args.param:
            raise GapkitError(f"{args.method} is a saved fixer: --fit/--fit-sample/--param do not apply")
        fx = load_fixer(args.method)
        desc = {"fixer": fx.name, "fixer_dir": str(args.method), "fixer_params": fx.get_params()}
    else:
        params = parse_params(args.param)
        fx = create_fixer(args.method, **params)
        if bool(args.fit) == bool(args.fit_sample):
            raise GapkitError(f"fixer '{args.method}' must be fitted: give --fit CALIB_EMBEDDINGS or --fit-sample NAME")
        if args.fit_sample:
            from ..samples import load_sample

            calib = load_sample(args.fit_sample)
        else:
            from ..embeddings import load_embeddings

            calib = load_embeddings(args.fit)
        from ..evaluate.protocol import fit_fixer

        fit_fixer(fx, calib, getattr(args, "seed", 0))  # role-center: query/document roles of the protocol
        desc = {"fixer": fx.name, "fixer_params": fx.get_params(),
                "fit": args.fit or f"sample:{args.fit_sample}"}
    if args.save_fixer:  # fail now, before any work, if the folder may not be replaced
        check_replaceable_dir(args.save_fixer)
    return fx, desc


def save_fixer_if_asked(args: argparse.Namespace, fx: Any) -> None:
    """--save-fixer DIR: called after the command succeeded, so a failed run saves nothing."""
    if getattr(args, "save_fixer", None) and fx is not None:
        fx.save(args.save_fixer)
