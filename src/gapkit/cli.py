"""The `gapkit` command line: one subcommand per module in gapkit/commands/.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> int, and
imports its heavy dependencies inside run(). A user error (GapkitError and the other expected
input errors) prints one line on stderr and exits 2; set GAPKIT_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType

from . import __version__
from .errors import GapkitError

# Order of subcommands in --help; modules not listed here follow alphabetically.
ORDER = ("measure", "embed", "encoders", "train", "fix", "evaluate", "build", "simulate",
         "reproduce", "report", "demo")


def _command_modules() -> dict[str, ModuleType]:
    from . import commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {n: importlib.import_module(f"gapkit.commands.{n}") for n in names}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gapkit", allow_abbrev=False,
        description="Measure, explain and close the modality gap of contrastive image-text models.",
    )
    parser.add_argument("--version", action="version", version=f"gapkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _command_modules().items():
        # allow_abbrev=False: a typo such as --data must not silently mean --dataset
        p = sub.add_parser(name, help=mod.HELP, allow_abbrev=False, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default sys.argv[1:]) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (GapkitError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if os.environ.get("GAPKIT_DEBUG"):
            raise
        msg = str(exc) if isinstance(exc, GapkitError) else f"{exc.strerror or exc}: {exc.filename}"
        print(f"gapkit {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gapkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
