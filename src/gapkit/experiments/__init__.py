"""The papers' experiments as named, seeded functions that return a JSON record.

Each module in this package defines EXPERIMENTS = {name: Experiment(...)}; the registry merges
them. An experiment function has the signature

    run(out_dir: Path, quick: bool = False, seed: int = 0, **params) -> dict   (a record)

writes its record (record.json) and figures into out_dir, and keeps module-level imports light
(`gapkit reproduce --list` imports every module).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import GapkitError


@dataclass(frozen=True)
class Experiment:
    """A named experiment; `run` checks its keyword parameters against the function's annotations
    (so `--set scales='"abc"'` is one clear line, not a traceback deep inside the experiment)."""

    name: str
    run: Callable[..., dict[str, Any]]
    description: str
    source: str = ""  # paper + figure/section reproduced

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", _checked(self.run, self.name))


def _checked(fn: Callable[..., dict[str, Any]], name: str) -> Callable[..., dict[str, Any]]:
    """`fn` with its keyword arguments type-checked (gapkit.typecheck) before it runs."""
    import functools

    from ..typecheck import check_kwargs

    @functools.wraps(fn)
    def run(out_dir: Any, quick: bool = False, seed: int = 0, **params: Any) -> dict[str, Any]:
        return fn(out_dir, quick=quick, seed=seed, **check_kwargs(fn, params, f"experiment '{name}'"))

    return run


def registry() -> dict[str, Experiment]:
    """All experiments, by name."""
    out: dict[str, Experiment] = {}
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{m.name}")
        for name, exp in getattr(mod, "EXPERIMENTS", {}).items():
            if name in out:
                raise RuntimeError(f"experiment '{name}' is defined twice")
            out[name] = exp
    return dict(sorted(out.items()))


def get_experiment(name: str) -> Experiment:
    reg = registry()
    if name not in reg:
        raise GapkitError(f"unknown experiment '{name}'; known: {', '.join(reg) or '(none)'}")
    return reg[name]
