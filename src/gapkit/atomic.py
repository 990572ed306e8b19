"""File I/O: atomic output (write to a temporary file beside the target, then rename) and
strict JSON reads.

A crash or a bad input mid-write never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import GapkitError


# Directories written by atomic_dir carry this marker; only such directories (or empty ones) are
# ever replaced, so a mistyped --out can never delete a user's own folder.
OUTPUT_MARKER = ".gapkit-output"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it onto `path`.

    On an exception the temporary file (or directory) is removed and `path` is untouched. The
    temporary name keeps the target's suffix (libraries such as numpy append one otherwise). The
    file gets the usual permissions (0666 minus the umask), not mkstemp's private 0600.
    """
    target = Path(path)
    if target.is_dir():
        raise GapkitError(f"{target}: is a directory; give a file path for this output")
    target.parent.mkdir(parents=True, exist_ok=True)
    sfx = target.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{sfx}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        _replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def _replace(src: Path, target: Path) -> None:
    try:
        os.replace(src, target)
    except OSError as exc:  # name the user's path, not the temporary one
        raise GapkitError(f"{target}: cannot write ({exc.strerror or exc})") from None


def check_replaceable_dir(path: str | os.PathLike) -> None:
    """Raise unless `path` is absent, an empty directory, or a directory gapkit wrote."""
    target = Path(path)
    if not target.exists():
        return
    if not target.is_dir():
        raise GapkitError(f"{target}: exists and is not a directory; choose another output path")
    if any(target.iterdir()) and not (target / OUTPUT_MARKER).exists():
        raise GapkitError(
            f"{target}: directory exists, is not empty and was not written by gapkit; "
            "refusing to replace it (choose a new path or remove it)"
        )


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` whole.

    Only an absent path, an empty directory or a directory gapkit wrote earlier (it holds
    OUTPUT_MARKER) is replaced; anything else raises GapkitError before any work is done.
    """
    target = Path(path)
    check_replaceable_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text("written by gapkit; this directory may be replaced by gapkit\n")
        os.chmod(tmp, 0o777 & ~_umask())
        check_replaceable_dir(target)  # the target may have appeared meanwhile
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            _replace(target, old)
            _replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write JSON atomically. NaN/inf are written as null (strict JSON)."""
    write_text_atomic(path, dumps_json(obj, indent=indent) + "\n")


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Parse a JSON file that must hold an object; any problem is one GapkitError naming `what`."""
    p = Path(path)
    if not p.is_file():
        raise GapkitError(f"{what} not found: {p}")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GapkitError(f"{p}: invalid JSON {what} ({exc})") from None
    if not isinstance(obj, dict):
        raise GapkitError(f"{p}: a {what} must be a JSON object, got a {type(obj).__name__}")
    return obj


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """JSON text of `obj` with NumPy scalars/arrays converted and non-finite floats as null."""
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False)


def _jsonable(obj: Any) -> Any:
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and hasattr(obj, "dim"):  # torch scalar tensor
        return _jsonable(obj.item() if obj.dim() == 0 else obj.tolist())
    return obj
