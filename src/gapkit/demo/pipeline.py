"""A pipeline of named stages that records what ran, what was skipped and why, and what failed.

A stage raises `StageSkipped(reason)` when a component it needs is not available (e.g. a package
that is not installed): the record says so and the next stages go on. Any other exception marks
the stage "failed" (message kept) and the demo ends with a non-zero exit code, so nothing
disappears silently.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import GapkitError


class StageSkipped(Exception):
    """Raised by a stage that cannot run here; the message says why."""


@dataclass
class Pipeline:
    total: int
    verbose: bool = True
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def run(self, name: str, title: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run fn(*args, **kw) as stage `name`; return its result, or None when it did not run.

        fn may return (result, detail) to describe what it did in one line. A stage `reserve`d
        earlier keeps its place (and number) in the table."""
        names = list(self.stages)
        k = names.index(name) + 1 if name in self.stages else len(names) + 1
        self.say(f"[{k}/{self.total}] {title} ...")
        t0, c0 = time.perf_counter(), time.process_time()
        result: Any = None
        try:
            out = fn(*args, **kw)
            result, detail = out if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], str) else (out, "")
            entry = {"status": "ran", "detail": detail}
        except StageSkipped as exc:
            entry = {"status": "skipped", "detail": str(exc)}
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a broken component must not take the whole demo down
            kind = "" if isinstance(exc, GapkitError) else f"{type(exc).__name__}: "
            entry = {"status": "failed", "detail": f"{kind}{exc}"}
            if not isinstance(exc, GapkitError):
                entry["traceback"] = traceback.format_exc(limit=6)
        # wall seconds, and this process's CPU seconds (all its threads): on a busy machine the
        # wall time grows, the CPU time says what the stage itself cost
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        entry["cpu_seconds"] = round(time.process_time() - c0, 2)
        self.stages[name] = entry
        mark = {"ran": "done", "skipped": "SKIPPED", "failed": "FAILED"}[entry["status"]]
        self.say(f"      {mark} in {entry['seconds']:.1f} s" + (f": {entry['detail']}" if entry["detail"] else ""))
        return result

    def reserve(self, name: str, title: str, where: str) -> None:
        """Keep stage `name`'s place in the table while it runs elsewhere (`run` fills it in later)."""
        self.say(f"[{len(self.stages) + 1}/{self.total}] {title}: {where} ...")
        self.stages[name] = {"status": "running", "detail": where, "seconds": 0.0}

    @property
    def failed(self) -> list[str]:
        return [n for n, e in self.stages.items() if e["status"] == "failed"]


def require(module: str, *names: str) -> Any:
    """Import `module` and check it defines `names`, or raise StageSkipped naming what is missing."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StageSkipped(f"{module} is not available ({exc})") from None
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise StageSkipped(f"{module} does not provide {', '.join(missing)} yet")
    return mod
