"""The CLI dispatcher: help, version, unknown command, python -m."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gapkit.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "gapkit" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_import_is_light():
    code = ("import sys, gapkit; heavy = [m for m in ('torch', 'open_clip', 'transformers', 'matplotlib') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "gapkit", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "gapkit" in r.stdout
