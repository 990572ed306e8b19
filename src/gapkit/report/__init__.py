"""Figures (matplotlib) and the self-contained HTML report, built from saved records.

    >>> from gapkit.report import build_report
    >>> build_report(["runs/demo-2026..."], "report.html")   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any


def build_report(*args: Any, **kwargs: Any) -> Any:
    """Write a self-contained HTML report (see `gapkit.report.html.build_report`)."""
    from .html import build_report as _build

    return _build(*args, **kwargs)


__all__ = ["build_report"]
