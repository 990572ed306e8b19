"""`gapkit reproduce`: run one of the papers' experiments by name.

    gapkit reproduce --list
    gapkit reproduce NAME [--quick] [--seed S] [--data DATA] [--set key=value ...] --out DIR
    gapkit reproduce --summary [--records DIR ...] [--out docs/fidelity.md]

Every experiment module in gapkit/experiments/ registers its experiments; this command looks the
name up, parses the --set overrides (JSON values where they parse, else strings) and calls
`get_experiment(NAME).run(out_dir, quick=..., seed=..., **params)`, which writes record.json and
its figures into DIR. `--data DATA` is `--set data=DATA` for the experiments that offer more than one
data setting (the training reproductions: fashion-mnist, the smoke default, or the diverse captions
emoji+openclipart, emoji, openclipart). `--summary` builds the fidelity table (every claim of the sources, the
paper's number, ours with its CI, the verdict and the command that regenerates it) from the saved
records under --records (default docs/results) into --out (default docs/fidelity.md); see
gapkit.report.fidelity.
"""
from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

from ..errors import GapkitError
from ..params import parse_key_values

from ._common import seed_arg  # noqa: E402

HELP = "reproduce a paper experiment by name (see --list)"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (smaller, shorter)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default 0)")
    p.add_argument("--data", metavar="DATA", help="the data setting, for the experiments that take one "
                   "(same as --set data=DATA; e.g. emoji+openclipart for the training reproductions)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an experiment parameter; VALUE is parsed as JSON when it can be "
                        "(e.g. --set tau=0.05 --set 'taus=[0.05,0.1]'), else taken as a string")
    p.add_argument("--out", metavar="DIR", help="output directory for record.json and figures "
                   "(with --summary: the Markdown file, default docs/fidelity.md)")
    p.add_argument("--summary", action="store_true",
                   help="build the fidelity table from saved records instead of running an experiment")
    p.add_argument("--records", action="append", default=[], metavar="DIR",
                   help="with --summary: a directory (searched recursively) or file of records; "
                        "repeatable (default docs/results)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['tau=0.1', 'init=polar', 'taus=[1,2]'] -> {'tau': 0.1, 'init': 'polar', 'taus': [1, 2]}."""
    return parse_key_values(items, "--set", identifier_keys=True)


def _check_params(name: str, fn: Any, params: dict[str, Any]) -> None:
    """Reject --set keys the experiment function does not take (unless it takes **params)."""
    reserved = sorted(set(params) & {"out_dir", "quick", "seed"})
    if reserved:
        raise GapkitError(f"--set {reserved[0]}: set it with its own option (--out, --quick, --seed)")
    sig = inspect.signature(fn)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    known = [k for k in sig.parameters if k not in ("out_dir", "quick", "seed")]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise GapkitError(f"{name}: unknown parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(known) or '(none)'}")


def _print_list() -> None:
    from ..experiments import registry

    reg = registry()
    if not reg:
        print("(no experiments registered)")
        return
    width = max(len(n) for n in reg)
    for name, exp in reg.items():
        src = f" [{exp.source}]" if exp.source else ""
        print(f"{name:<{width}}  {exp.description}{src}")


def run(args: argparse.Namespace) -> int:
    if args.list:
        _print_list()
        return 0
    if args.summary:
        return _summary(args)
    if args.records:
        raise GapkitError("--records only applies with --summary")
    if not args.name:
        raise GapkitError("give an experiment NAME (see `gapkit reproduce --list`)")
    if not args.out:
        raise GapkitError("--out DIR is required")
    from ..experiments import get_experiment

    exp = get_experiment(args.name)
    params = parse_overrides(args.overrides)
    if args.data is not None:
        if "data" in params:
            raise GapkitError("give the data setting once: --data or --set data=..., not both")
        params["data"] = args.data
    _check_params(args.name, exp.run, params)
    from ..outputs import run_directory

    # validated (never a user's own non-empty folder), locked, and removed again on failure if new
    with run_directory(args.out) as out_dir:
        record = exp.run(out_dir, quick=args.quick, seed=args.seed, **params)
    _print_outputs(args.name, out_dir, record)
    return 0


def _summary(args: argparse.Namespace) -> int:
    from ..report.fidelity import write_fidelity

    if args.name or args.data is not None:
        raise GapkitError("--summary takes no experiment NAME or --data (it reads saved records)")
    out = Path(args.out or "docs/fidelity.md")
    rows = write_fidelity(args.records or ["docs/results"], out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(f"fidelity table: {len(rows)} claims -> {out} (" + ", ".join(f"{v}: {n}" for v, n in counts.items()) + ")")
    return 0


def _print_outputs(name: str, out_dir: Path, record: dict[str, Any] | None) -> None:
    """Say where the record and figures went, and the headline results when there are few."""
    rec_path = out_dir / "record.json"
    print(f"{name}: record -> {rec_path}" if rec_path.exists() else f"{name}: done (no record.json written)")
    figs = sorted(out_dir.glob("*.png"))
    for f in figs:
        print(f"  figure -> {f}")
    summary = (record or {}).get("summary")
    if isinstance(summary, dict):
        for k, v in summary.items():
            print(f"  {k}: {v}")
    sys.stdout.flush()
