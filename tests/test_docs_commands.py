"""Every `gapkit ...` command line shown in README.md and docs/*.md parses with the real CLI."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gapkit.cli import _command_modules, build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> list[tuple[str, str]]:
    out = []
    subcommands = set(_command_modules())
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\s*(?:\$\s*)?(?:\.venv/bin/)?(?:torchrun [^-]*?(?:--\S+ \S+ )*-m )?gapkit (.+)$", line)
            if not m or line.strip().startswith(("#", ">")) or "..." in line or "[" in line:
                continue
            cmd = m.group(1).split("  #")[0].strip().rstrip("\\").strip()
            if cmd.split()[0] not in subcommands or "|" in cmd or "<" in cmd:
                continue
            out.append((doc.name, cmd))
    return out


COMMANDS = _commands()


def test_docs_show_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("doc,cmd", COMMANDS, ids=[f"{d}:{c[:50]}" for d, c in COMMANDS])
def test_documented_command_parses(doc, cmd):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(cmd))
    except SystemExit as exc:
        pytest.fail(f"{doc}: `gapkit {cmd}` does not parse (exit {exc.code})")
