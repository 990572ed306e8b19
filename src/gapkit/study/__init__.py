"""`gapkit study`: the gap of your model on your data, every fixer fitted on a calibration part and
compared with raw on held-out queries, ending in a recommendation with its evidence (core.py)."""
from __future__ import annotations

from .core import DEFAULT_FIXERS, StudyData, run_study

__all__ = ["run_study", "StudyData", "DEFAULT_FIXERS"]
