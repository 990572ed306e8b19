"""File I/O: atomic output (write to a temporary file beside the target, then rename) and
strict JSON reads.

A crash or a bad input mid-write never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import GapkitError


# Directories written by atomic_dir carry this marker; only such directories (or empty ones) are
# ever replaced, so a mistyped --out can never delete a user's own folder.
OUTPUT_MARKER = ".gapkit-output"
# Temporary siblings are named ".<target>.<pid>.<random>.gapkit-tmp[suffix]" (and ".gapkit-old" for the
# previous version of a directory during a swap): the pid lets a later run in the same place tell a
# leftover of a killed process from the work of a live one, and remove only the former.
TMP_TAG = ".gapkit-tmp"
OLD_TAG = ".gapkit-old"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_target(path: str | os.PathLike, option: str | None = None, *, allow_dir: bool = False) -> Path:
    """Raise GapkitError unless `path` is absent, a regular file, or (allow_dir) a directory.

    Never a symbolic link, a device, a FIFO or a socket: replacing `/dev/null` or a link by a
    regular file would destroy something the user owns. Stdout is spelled `-` by the commands.
    The nearest existing ancestor must be a directory. `option` names the CLI option in messages.
    """
    target = Path(path)
    where = f"{option} {target}" if option else str(target)
    try:
        st = target.lstat()
    except FileNotFoundError:
        check_parent_is_dir(target, where)
        return target
    except OSError as exc:
        raise GapkitError(f"{where}: cannot write ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise GapkitError(f"{where}: is a symbolic link; gapkit writes only regular files "
                          "(give the real path, or '-' for standard output)")
    if stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return target
        raise GapkitError(f"{where}: is a directory; give a file path for this output")
    if not stat.S_ISREG(st.st_mode):
        raise GapkitError(f"{where}: is not a regular file (a device, FIFO or socket); refusing to "
                          "replace it (use '-' for standard output)")
    return target


def check_output_file(path: str | os.PathLike) -> Path:
    """An output file: absent or a regular file (check_output_target without directories)."""
    return check_output_target(path)


def check_parent_is_dir(target: Path, where: str | None = None) -> None:
    """The nearest existing ancestor of `target` must be a directory (else: one clear line)."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GapkitError(f"{where or target}: {parent} is not a directory")
            return


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _temp_name(target: Path, tag: str, suffix: str = "") -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{tag}{suffix}")


def _leftovers(target: Path) -> dict[str, list[Path]]:
    """Temporary siblings of `target` ({TMP_TAG: [...], OLD_TAG: [...]}) whose writer process no
    longer runs; one scan of the parent folder."""
    out: dict[str, list[Path]] = {TMP_TAG: [], OLD_TAG: []}
    prefix = f".{target.name}."
    try:
        entries = [e.name for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:
        return out
    for name in entries:
        parts = name[len(prefix):].split(".")
        tag = TMP_TAG if TMP_TAG in name else OLD_TAG if OLD_TAG in name else None
        if tag and len(parts) >= 3 and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            out[tag].append(target.parent / name)
    return out


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


def clean_stale_temps(target: str | os.PathLike) -> int:
    """Remove temporaries of `target` left by killed gapkit processes; return how many.

    Only names of gapkit's own temp pattern whose writer process is gone are touched; a directory
    swap interrupted between its two renames is first recovered (see recover_dir).
    """
    t = Path(target)
    stale = _leftovers(t)
    if _recover_from(t, stale):
        stale = _leftovers(t)
    gone = stale[TMP_TAG] + stale[OLD_TAG]
    for p in gone:
        _remove(p)
    return len(gone)


def recover_dir(target: str | os.PathLike) -> bool:
    """Put back a directory whose swap was killed between its two renames; True if it did.

    The swap is `target -> .old`, then `complete temp -> target`. A kill between the two leaves no
    `target` but two complete copies: the new one (a temp holding OUTPUT_MARKER, written last) is
    preferred, else the old one. Readers call this before looking for `target`.
    """
    return _recover_from(Path(target), None)


def _recover_from(t: Path, stale: dict[str, list[Path]] | None) -> bool:
    if t.exists() or t.is_symlink():
        return False
    stale = _leftovers(t) if stale is None else stale
    candidates = [p for p in stale[TMP_TAG] if (p / OUTPUT_MARKER).is_file()]
    candidates += [p for p in stale[OLD_TAG] if p.is_dir()]
    if not candidates:
        return False
    os.replace(candidates[0], t)
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it onto `path`.

    `path` must be absent or a regular file (check_output_file). On an exception (including
    KeyboardInterrupt and, through the CLI's handler, SIGTERM) the temporary file is removed and
    `path` is untouched; temporaries of killed runs are removed by the next write of `path`. The
    temporary name keeps the target's suffix (libraries such as numpy append one otherwise). The
    file gets the usual permissions (0666 minus the umask), not mkstemp's private 0600.
    """
    target = check_output_file(path)
    _mkdir_parent(target)
    clean_stale_temps(target)
    sfx = target.suffix if suffix is None else suffix
    tmp_path = _temp_name(target, TMP_TAG, sfx)
    try:
        tmp_path.touch(mode=0o600, exist_ok=False)
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        check_output_file(target)  # the target may have become a link or device meanwhile
        _replace(tmp_path, target)
    except BaseException:
        _remove(tmp_path)
        raise


def _mkdir_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GapkitError(f"{target}: cannot create its folder {target.parent} ({exc.strerror or exc})") from None


def _replace(src: Path, target: Path) -> None:
    try:
        os.replace(src, target)
    except OSError as exc:  # name the user's path, not the temporary one
        raise GapkitError(f"{target}: cannot write ({exc.strerror or exc})") from None


def check_replaceable_dir(path: str | os.PathLike) -> None:
    """Raise unless `path` is absent, an empty directory, or a directory gapkit wrote."""
    target = Path(path)
    if target.is_symlink():
        raise GapkitError(f"{target}: is a symbolic link; give the real directory path")
    if not target.exists():
        check_parent_is_dir(target)
        return
    if not target.is_dir():
        raise GapkitError(f"{target}: exists and is not a directory; choose another output path")
    if any(target.iterdir()) and not (target / OUTPUT_MARKER).exists():
        raise GapkitError(
            f"{target}: directory exists, is not empty and was not written by gapkit; "
            "refusing to replace it (choose a new path or remove it)"
        )


# Test seam: called between the two renames of the fallback swap (tests kill the process here).
_between_renames: Callable[[], None] | None = None


def _swap_dirs(tmp: Path, target: Path) -> None:
    """Make the complete directory `tmp` the new `target`, crash-safely; the old one is removed.

    Linux renameat2(RENAME_EXCHANGE) swaps both names in one step, so `target` always names a
    complete directory. Where it is missing, two renames are used and recover_dir() repairs a kill
    between them.
    """
    if not target.exists():
        _replace(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        return
    old = _temp_name(target, OLD_TAG)
    _replace(target, old)
    if _between_renames is not None:
        _between_renames()
    _replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


FORCE_RENAME_SWAP = False  # tests set this to exercise the two-rename fallback


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if FORCE_RENAME_SWAP or sys.platform != "linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` whole.

    Only an absent path, an empty directory or a directory gapkit wrote earlier (it holds
    OUTPUT_MARKER) is replaced; anything else raises GapkitError before any work is done. The swap
    is crash-safe (_swap_dirs) and leftovers of killed runs are cleaned first.
    """
    target = Path(path)
    clean_stale_temps(target)
    check_replaceable_dir(target)
    _mkdir_parent(target)
    tmp = _temp_name(target, TMP_TAG)
    try:
        tmp.mkdir()
        yield tmp
        (tmp / OUTPUT_MARKER).write_text("written by gapkit; this directory may be replaced by gapkit\n")
        os.chmod(tmp, 0o777 & ~_umask())
        check_replaceable_dir(target)  # the target may have appeared meanwhile
        _swap_dirs(tmp, target)
    except BaseException:
        if tmp.exists():
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
    except RecursionError:
        raise GapkitError(f"{p}: invalid JSON {what} (nested too deeply)") from None
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
