"""Output policy: where a command may write, shared by every command (the CLI applies it).

gapkit.atomic makes each single write all-or-nothing; this module decides whether a write may
happen at all:
- check_output_paths: an output never equals an input, never sits inside an input directory
  (unless the command says its outputs may), never contains an input, and two outputs never
  name the same place. Paths are compared resolved (symlinks, `..`), not as typed.
- run_directory: the folder of a run (train, reproduce, demo, simulate --figures). It is created
  with OUTPUT_MARKER, or must be empty or already gapkit's; it is locked for the run's lifetime
  so two runs never interleave in one folder (the second says who holds it); a folder this run
  created is removed again if the run fails.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterable, Iterator

from .atomic import OUTPUT_MARKER, check_output_target, check_replaceable_dir
from .errors import GapkitError

LOCK_FILE = ".gapkit-lock"


def _resolved(p: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.realpath(os.fspath(p))))


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def check_output_paths(outputs: dict[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike],
                       *, allow_inside_input_dirs: bool = False) -> None:
    """Raise GapkitError if writing `outputs` ({option: path}) could destroy one of `inputs`.

    Refused: output == input; output inside an input directory (a later read of that folder would
    see it, or it replaces a file there) unless `allow_inside_input_dirs`; an input inside an
    output (replacing the output folder deletes the input); two outputs at one place or nested.
    `None` and '-' (stdout) are skipped; inputs that do not exist are skipped.
    """
    outs = {k: (v, _resolved(v)) for k, v in outputs.items() if v not in (None, "", "-")}
    ins = [(i, _resolved(i)) for i in inputs if i not in (None, "", "-") and os.path.lexists(os.fspath(i))]
    for opt, (given, ro) in outs.items():
        for src, ri in ins:
            if ro == ri:
                raise GapkitError(f"the output {given} ({opt}) is also an input; choose another output path")
            if _inside(ri, ro):
                raise GapkitError(f"the input {src} is inside the output {given} ({opt}); writing it "
                                  "would destroy the input: choose another output path")
            if ri.is_dir() and _inside(ro, ri) and not allow_inside_input_dirs:
                raise GapkitError(f"the output {given} ({opt}) is inside the input folder {src}; "
                                  "write outside the folders you read from")
    names = list(outs)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            ra, rb = outs[a][1], outs[b][1]
            if ra == rb or _inside(ra, rb) or _inside(rb, ra):
                raise GapkitError(f"{a} ({outs[a][0]}) and {b} ({outs[b][0]}) overlap; give them separate paths")
    for opt, given in outputs.items():
        if given not in (None, "", "-"):
            check_output_kind(given, opt)


def check_output_kind(path: str | os.PathLike, option: str = "output") -> None:
    """An output may be new, a regular file or a directory (the writer decides which it needs);
    never a link or special file (atomic.check_output_target), never a user's own folder."""
    if check_output_target(path, option, allow_dir=True).is_dir():  # now, before any work
        check_replaceable_dir(path)


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
        return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: {info.get('command')}"
    except (OSError, ValueError, RecursionError, AttributeError):
        return "another process"


@contextlib.contextmanager
def lock_directory(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (flock on its LOCK_FILE) while the block runs.

    A second gapkit process asking for the same directory gets a GapkitError naming the holder.
    The kernel drops the lock when the process dies, so a killed run never leaves it stuck.
    """
    import fcntl

    path = directory / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GapkitError(f"{directory}: in use by another gapkit run ({_holder(path)}); "
                              "wait for it to finish or choose another output folder") from None
        try:  # the holder before us may have removed the file between our open and our flock
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        # remove, then release: a process that opened the old file re-checks the inode and retries
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def prepare_run_directory(path: str | os.PathLike, *, must_exist: bool = False) -> tuple[Path, bool]:
    """Validate (and create) a run folder; return (path, created_now).

    Allowed: an absent path (created, marked), an empty folder (marked), a folder gapkit marked.
    A user's non-empty folder is refused before anything is written.
    """
    d = Path(path)
    if must_exist and not d.is_dir():
        raise GapkitError(f"{d}: no such run directory")
    check_replaceable_dir(d)
    created = not d.exists()
    try:
        d.mkdir(parents=True, exist_ok=True)
        marker = d / OUTPUT_MARKER
        if not marker.exists():
            marker.write_text("written by gapkit; this directory may be replaced by gapkit\n")
    except OSError as exc:
        raise GapkitError(f"{d}: cannot create the run folder ({exc.strerror or exc})") from None
    return d, created


@contextlib.contextmanager
def run_directory(path: str | os.PathLike, *, must_exist: bool = False, lock: bool = True) -> Iterator[Path]:
    """The run folder `path`, validated, created if absent and locked while the block runs.

    If the block fails and this call created the folder, the folder is removed: a failed run
    leaves nothing behind. A folder that existed before is kept as it is.
    """
    d, created = prepare_run_directory(path, must_exist=must_exist)
    try:
        with lock_directory(d) if lock else contextlib.nullcontext():
            yield d
    except BaseException:
        if created:
            shutil.rmtree(d, ignore_errors=True)
        raise
