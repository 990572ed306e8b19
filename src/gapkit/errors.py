"""One exception type for user-facing problems, and the one place that turns a failure to parse a
user's file into it.

`GapkitError` subclasses ValueError so the Python API raises a ValueError (as documented) while
the CLI can tell a user mistake (print one line, exit 2) from a bug (traceback).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


class GapkitError(ValueError):
    """A problem with the user's input or configuration, stated in one line."""


class GapkitTypeError(GapkitError, TypeError):
    """Wrong type of input (e.g. a pickle where arrays were expected)."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`exc` as one short line (library messages can span many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def reading(path: str | os.PathLike | None, what: str) -> Iterator[None]:
    """Turn any failure while parsing the user's file `path` into one GapkitError line.

        with reading(path, "saved fixer"):
            params = parse(path)

    A GapkitError raised inside passes unchanged (it already names the problem); MemoryError is
    reported as such. Every other Exception counts: numpy, safetensors, pyarrow, torch (a refused
    pickle), zipfile, tarfile, csv and json each raise their own types for "this file is not what it
    claims". So use it only around code that parses input: a bug elsewhere must stay a bug.
    """
    try:
        yield
    except GapkitError:
        raise
    except MemoryError:
        raise GapkitError(f"{path}: {what} too large to read into memory") from None
    except Exception as exc:  # noqa: BLE001 - parse-only scope, see the docstring
        where = f"{path}: " if path is not None else ""
        raise GapkitError(f"{where}invalid {what} ({one_line(exc)})") from None
