"""JSON run records: every run (measure, train, experiment, evaluate) writes one.

A record is a flat, self-describing dict:
    {"kind": ..., "gapkit_version": ..., "created": ISO time, "command": argv,
     "versions": {...}, "seed": ..., "inputs": {...}, "params": {...}, "results": {...}}
Reports are built from records only, never by recomputing.
"""
from __future__ import annotations

import datetime as _dt
import platform
import sys
from pathlib import Path
from typing import Any

from .atomic import read_json_object, write_json_atomic


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that are already imported (never imports any)."""
    from . import __version__

    out = {"gapkit": __version__, "python": platform.python_version()}
    for mod in ("numpy", "scipy", "sklearn", "torch", "open_clip", "transformers", "numba"):
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, "__version__"):
            out[mod] = str(m.__version__)
    return out


def new_record(
    kind: str,
    *,
    params: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a record dict of the given kind (e.g. "measure", "experiment", "train")."""
    rec: dict[str, Any] = {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "versions": versions(),
        "seed": seed,
        "inputs": inputs or {},
        "params": params or {},
        "results": results or {},
    }
    rec.update(extra)
    return rec


def save_record(record: dict[str, Any], path: str | Path) -> Path:
    """Write a record atomically as JSON and return its path."""
    write_json_atomic(path, record)
    return Path(path)


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a JSON record; a missing or malformed file raises GapkitError."""
    return read_json_object(path, "record")
