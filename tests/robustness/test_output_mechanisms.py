"""The shared output mechanisms under the conditions the fuzz cases cannot make in-process: a kill
between the two renames of a directory swap, two runs writing one folder, leftovers of killed
runs, SIGTERM in the middle of a write, and the special files an output may never replace."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gapkit.atomic import (OLD_TAG, OUTPUT_MARKER, TMP_TAG, atomic_dir, atomic_path, clean_stale_temps,
                           recover_dir, write_json_atomic)
from gapkit.cli import error_message, main
from gapkit.errors import GapkitError
from gapkit.outputs import check_output_paths, lock_directory, run_directory

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _python(code: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _write_dir(path: Path, text: str) -> None:
    with atomic_dir(path) as tmp:
        (tmp / "model.safetensors").write_text(text)
        (tmp / "optimizer.safetensors").write_text(text)
        (tmp / "state.json").write_text('{"step": 1, "param_groups": [], "scheduler": {}}')


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TMP_TAG in p.name or OLD_TAG in p.name)


def test_directory_swap_replaces_whole_and_leaves_nothing(tmp_path):
    target = tmp_path / "checkpoint"
    _write_dir(target, "v1")
    _write_dir(target, "v2")
    assert (target / "model.safetensors").read_text() == "v2"
    assert (target / OUTPUT_MARKER).exists() and _leftovers(tmp_path) == []


def test_sigkill_between_the_two_renames_is_recovered_by_the_reader(tmp_path):
    """The two-rename fallback, killed in its window: no `checkpoint` under its name, two complete
    copies beside it. read_checkpoint puts the newer one back, and a later write cleans up."""
    run = tmp_path / "run"
    _write_dir(run / "checkpoint", "v1")
    proc = _python(f"""
        import os, signal
        import gapkit.atomic as a
        a.FORCE_RENAME_SWAP = True
        a._between_renames = lambda: os.kill(os.getpid(), signal.SIGKILL)
        with a.atomic_dir({str(run / 'checkpoint')!r}) as tmp:
            for f in ("model.safetensors", "optimizer.safetensors"):
                (tmp / f).write_text("v2")
            (tmp / "state.json").write_text('{{"step": 2, "param_groups": [], "scheduler": {{}}}}')
    """)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "checkpoint").exists()  # the window the issue describes
    assert len(_leftovers(run)) == 2  # the old copy and the complete new one
    from gapkit.train.checkpoint import read_checkpoint

    with pytest.raises(Exception):  # the files are placeholders, not safetensors: but found
        read_checkpoint(run)
    assert (run / "checkpoint" / "state.json").read_text().startswith('{"step": 2')  # the newer copy
    clean_stale_temps(run / "checkpoint")
    assert _leftovers(run) == []


def test_recover_dir_prefers_the_complete_new_copy_and_falls_back_to_the_old(tmp_path):
    target = tmp_path / "d"
    old = tmp_path / f".d.{2**22 + 7}.ab{OLD_TAG}"
    old.mkdir()
    (old / "v").write_text("old")
    assert recover_dir(target) and (target / "v").read_text() == "old"
    assert not recover_dir(target)  # present: nothing to do


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "emb.npy"
    dead = tmp_path / f".emb.npy.{2**22 + 11}.abcd{TMP_TAG}.npy"  # no such pid (above pid_max)
    dead.write_bytes(b"x" * 1000)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".emb.npy.{sleeper.pid}.abcd{TMP_TAG}.npy"
        live.write_bytes(b"y")
        write_json_atomic(target, {"a": 1})
        assert not dead.exists() and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sigterm_mid_write_removes_the_temporary(tmp_path):
    target = tmp_path / "out.json"
    proc = _python(f"""
        import os, signal, time
        from gapkit.cli import _sigterm_as_interrupt
        from gapkit.atomic import atomic_path
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        try:
            with atomic_path({str(target)!r}) as tmp:
                tmp.write_text("partial")
                print("writing", flush=True)
                # short sleeps, as real work runs bytecode between waits: a SIGTERM that the kernel
                # hands to numpy's BLAS thread does not interrupt one long sleep of the main thread
                for _ in range(600):
                    time.sleep(0.1)
        except KeyboardInterrupt:
            print("cleaned", flush=True)
    """)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "cleaned" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_second_run_into_a_locked_folder_says_who_holds_it(tmp_path, capsys):
    run = tmp_path / "run"
    holder = _python(f"""
        import time
        from pathlib import Path
        from gapkit.outputs import run_directory
        with run_directory(Path({str(run)!r})):
            print("locked", flush=True)
            time.sleep(120)
    """)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(["train", "--config", "tiny-cnn", "--dataset", "fashion-mnist", "--set", "steps=1", "--out", str(run)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1
        assert f"in use by another gapkit run (pid {holder.pid}" in err
        with pytest.raises(GapkitError, match="in use"):
            with lock_directory(run):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lock_directory(run):  # the kernel released the dead holder's lock
        pass


def test_a_failed_run_removes_the_folder_it_created_and_keeps_one_that_existed(tmp_path):
    new = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with run_directory(new):
            (new / "partial.txt").write_text("x")
            raise RuntimeError("boom")
    assert not new.exists()
    old = tmp_path / "old"
    old.mkdir()
    with pytest.raises(RuntimeError):
        with run_directory(old):
            raise RuntimeError("boom")
    assert old.is_dir()


@pytest.mark.parametrize("kind", ["fifo", "link", "device"])
def test_special_files_are_never_replaced(tmp_path, kind):
    p = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "link":
        os.symlink(tmp_path / "elsewhere.json", p)
    else:
        try:
            os.mknod(p, 0o666 | __import__("stat").S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    before = os.lstat(p)
    with pytest.raises(GapkitError):
        with atomic_path(p) as tmp:
            tmp.write_text("x")
    after = os.lstat(p)
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["out.json"]


def test_output_input_conflicts_compare_resolved_paths(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "x.npy").write_bytes(b"")
    os.symlink(d, tmp_path / "alias")
    with pytest.raises(GapkitError, match="also an input"):
        check_output_paths({"--out": str(tmp_path / "alias" / "x.npy")}, [str(d / "x.npy")])
    with pytest.raises(GapkitError, match="inside the input folder"):
        check_output_paths({"--out": str(d / ".." / "data" / "new.json")}, [str(d)])
    with pytest.raises(GapkitError, match="inside the output"):
        check_output_paths({"--out": str(tmp_path)}, [str(d / "x.npy")])
    with pytest.raises(GapkitError, match="overlap"):
        check_output_paths({"--out": str(tmp_path / "a"), "--save-fixer": str(tmp_path / "a" / "b")}, [])
    check_output_paths({"--out": str(d / "r.html")}, [str(d)], allow_inside_input_dirs=True)


@pytest.mark.parametrize("exc,word", [
    (OSError(28, "No space left on device", "/data/out.npy"), "No space left on device"),
    (OSError(30, "Read-only file system", "/ro/out.npy"), "Read-only file system"),
    (FileExistsError(17, "File exists", "/x"), "File exists"),
    (NotADirectoryError(20, "Not a directory", "/f/x"), "Not a directory"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (MemoryError(), "not enough memory"),
])
def test_the_error_boundary_names_file_system_and_resource_failures(exc, word):
    msg = error_message(exc)
    assert msg is not None and word in msg and "\n" not in msg
    assert error_message(ZeroDivisionError("bug")) is None  # a bug stays a bug
