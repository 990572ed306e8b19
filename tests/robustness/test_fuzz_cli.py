"""Adversarial inputs for every command: each must end in exit code 2 and exactly one stderr line
naming the problem, with no traceback, and must leave every file as it was.

Cases are built from small fixtures made here (fixtures.py): a (2, N, D) stack, an embed
directory, a clip-retrieval folder, records, a saved fixer, a tiny image dataset, run folders, and
hostile variants of each (truncated, tampered, pickled, nested 100k deep, links out of the root,
zip bombs, devices and FIFOs as outputs). The whole fixture tree is fingerprinted before and after
every case (path, type, size, mtime, content hash): a case that writes, replaces or deletes
anything fails, and so does one that leaves a temporary file behind.
"""
from __future__ import annotations

import re

import pytest

from gapkit.cli import main

from .fixtures import CASES, World, fingerprint_tree

IDS = [c.id for c in CASES]
# Progress bars (tqdm) share stderr: they are not error lines. Warnings are allowed, one line each.
PROGRESS = re.compile(r"\d+%\||\d+(batch|it)/s|\?(batch|it)/s|\d+batch \[")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World.build(tmp_path_factory.mktemp("fuzz"))


def test_there_are_enough_cases():
    assert len(CASES) >= 300
    commands = {c.argv[0] for c in CASES}
    assert commands >= {"measure", "embed", "encoders", "train", "fix", "evaluate", "build", "simulate",
                        "reproduce", "report", "demo"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, world, capsys, monkeypatch):
    monkeypatch.chdir(world.scratch)
    argv = world.expand(case.argv)
    before = fingerprint_tree(world.root)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors exit through SystemExit
        rc = exc.code
    err = capsys.readouterr().err
    after = fingerprint_tree(world.root)
    lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip() and not PROGRESS.search(ln)]
    errors = [ln for ln in lines if not re.match(r"gapkit [a-z_-]+: warning: ", ln)]
    assert rc == 2, f"exit {rc}; stderr: {err[-600:]}"
    assert len(errors) == 1, f"expected one error line, got {len(errors)}: {err[-600:]}"
    assert "Traceback" not in err and "internal error" not in err
    assert re.match(r"gapkit( [a-z_-]+)*: error: \S", errors[0]), errors[0]
    if case.expect:
        assert case.expect.lower() in errors[0].lower(), errors[0]
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"files changed: {changed[:6]}"
