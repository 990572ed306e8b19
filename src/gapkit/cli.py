"""The `gapkit` command line: one subcommand per module in gapkit/commands/.

Each command module defines HELP (one line), add_arguments(parser) and run(args) -> int, and
imports its heavy dependencies inside run(). A user error (GapkitError and the other expected
input errors) prints one line on stderr and exits 2; set GAPKIT_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
from types import ModuleType
from typing import Iterator, NoReturn

from . import __version__
from .errors import GapkitError

# Order of subcommands in --help; modules not listed here follow alphabetically.
ORDER = ("measure", "embed", "encoders", "train", "fix", "evaluate", "study", "build", "index", "search",
         "serve", "simulate", "reproduce", "report", "demo")


def _command_modules() -> dict[str, ModuleType]:
    from . import commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {n: importlib.import_module(f"gapkit.commands.{n}") for n in names}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`gapkit CMD: error: ...`), exit 2, like every error."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


def _path_values(args: argparse.Namespace, skip: tuple[str, ...]) -> list[str]:
    """Every argument value (or list item) naming an existing path: the command's inputs."""
    out: list[str] = []
    for key, val in vars(args).items():
        if key.startswith("_") or key in skip:
            continue
        for v in (val if isinstance(val, (list, tuple)) else [val]):
            if isinstance(v, str) and v not in ("", "-") and len(v) < 4096 and "\0" not in v:
                try:
                    if os.path.lexists(v):
                        out.append(v)
                except (OSError, ValueError):
                    continue
    return out


def check_command_outputs(mod: ModuleType, args: argparse.Namespace) -> None:
    """The one output check of every command: its OUTPUT_ARGS against every path it was given.

    A command module may set OUTPUT_ARGS (default ("out",)) and OUTPUTS_IN_INPUT_DIRS (default
    False: an output may not be written inside a folder the command reads).
    """
    from .outputs import check_output_paths

    names = getattr(mod, "OUTPUT_ARGS", ("out",))
    outputs = {f"--{n.replace('_', '-')}": getattr(args, n, None) for n in names}
    check_output_paths({k: v for k, v in outputs.items() if isinstance(v, str)}, _path_values(args, names),
                       allow_inside_input_dirs=getattr(mod, "OUTPUTS_IN_INPUT_DIRS", False))


def error_message(exc: BaseException) -> str | None:
    """One line for an expected failure (user input, the file system, memory); None for a bug."""
    from .errors import one_line

    if isinstance(exc, GapkitError):
        return one_line(exc, limit=2000)
    if isinstance(exc, OSError):
        name = exc.filename if exc.filename is not None else ""
        what = exc.strerror or one_line(exc)
        return f"{name}: {what}" if name else what
    if isinstance(exc, RecursionError):
        return "input nested too deeply (a JSON file or config with thousands of levels)"
    if isinstance(exc, MemoryError):
        return "not enough memory for this input (try a smaller input or a streaming option)"
    return None


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Warnings (skipped rows, fallbacks) print as `gapkit CMD: warning: ...`, one line each."""
    import warnings

    from .errors import one_line

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' API
        print(f"gapkit {command}: warning: {one_line(message, limit=2000)}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    # SIGTERM (kill, a scheduler's timeout) unwinds like Ctrl-C, so temporary files are removed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default sys.argv[1:]) and return the exit code.

    The one error boundary: an expected failure prints `gapkit CMD: error: <one line>` and returns
    2; an unexpected one (a bug) prints one line saying so and returns 1 (GAPKIT_DEBUG=1 re-raises).
    """
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    mod = importlib.import_module(f"gapkit.commands.{args.command}")
    try:
        with _one_line_warnings(args.command):
            check_command_outputs(mod, args)
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"gapkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary
        if os.environ.get("GAPKIT_DEBUG"):
            raise
        msg = error_message(exc)
        if msg is not None:
            print(f"gapkit {args.command}: error: {msg}", file=sys.stderr)
            return 2
        from .errors import one_line

        print(f"gapkit {args.command}: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(a bug: please report it; GAPKIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
