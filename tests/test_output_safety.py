"""Outputs never destroy what the user did not ask to replace, and failed runs leave nothing."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from gapkit.atomic import OUTPUT_MARKER, atomic_dir, atomic_path, write_json_atomic
from gapkit.cli import main
from gapkit.errors import GapkitError

from .conftest import gapped_pairs


@pytest.fixture
def stack(tmp_path):
    x, y = gapped_pairs(n=60, d=8)
    p = tmp_path / "stack.npy"
    np.save(p, np.stack([x, y]))
    return p


def test_atomic_dir_refuses_a_users_folder(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    with pytest.raises(GapkitError, match="not written by gapkit"):
        with atomic_dir(victim) as tmp:
            (tmp / "out.txt").write_text("new")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temp dir left


def test_atomic_dir_replaces_its_own_output_and_empty_dirs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: fine
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / OUTPUT_MARKER).exists()
    with atomic_dir(out) as tmp:  # gapkit's own output: replaced whole
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARKER, "b.txt"])


def test_files_get_umask_permissions_and_dirs_are_named_in_errors(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "r.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    with pytest.raises(GapkitError, match=r"d: is a directory"):
        with atomic_path(tmp_path / "d"):
            pass


def test_cli_output_equal_to_input_is_refused(tmp_path, stack, capsys):
    before = stack.read_bytes()
    assert main(["measure", "--embeddings", str(stack), "--metrics", "rmg", "--out", str(stack)]) == 2
    assert "also an input" in capsys.readouterr().err
    assert stack.read_bytes() == before
    rec = tmp_path / "m.json"
    assert main(["measure", "--embeddings", str(stack), "--metrics", "rmg", "--out", str(rec)]) == 0
    text = rec.read_text()
    assert main(["build", str(rec), "--out", str(rec)]) == 2
    assert main(["report", str(rec), "--html", str(rec)]) == 2
    assert rec.read_text() == text


def test_cli_embed_dir_output_keeps_user_folder(tmp_path, stack, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    rc = main(["fix", "--method", "center", "--fit", str(stack), "--save-fixer", str(victim),
               "--apply", str(stack), "--out", str(tmp_path / "fixed.npy")])
    assert rc == 2 and "refusing to replace" in capsys.readouterr().err
    assert [p.name for p in victim.iterdir()] == ["precious.txt"]
    assert not (tmp_path / "fixed.npy").exists()


def test_failed_fix_saves_no_fixer(tmp_path, stack, capsys):
    bad = tmp_path / "img3.npy"
    np.save(bad, np.ones((4, 3), dtype=np.float32))  # wrong dim for a fixer fitted on D = 8
    saved = tmp_path / "fx"
    rc = main(["fix", "--method", "center", "--fit", str(stack), "--save-fixer", str(saved),
               "--apply-image", str(bad), "--out", str(tmp_path / "o.npy")])
    assert rc == 2
    assert not saved.exists()
    rc = main(["fix", "--method", "center", "--fit", str(stack), "--save-fixer", str(saved),
               "--apply", str(stack), "--out", str(tmp_path / "o.npy")])
    assert rc == 0 and (saved / OUTPUT_MARKER).exists()


def test_failed_reproduce_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "rp"
    assert main(["reproduce", "liang-mismatch", "--quick", "--set", "no_such_param=1", "--out", str(out)]) == 2
    assert not out.exists()


def test_failed_train_start_leaves_no_run_dir(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "tiny-vit", "--loss", "no-such-loss", "--out", str(out)]) == 2
    assert "unknown loss" in capsys.readouterr().err
    assert not out.exists()
