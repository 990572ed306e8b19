"""Counting the rows a reader skips, so bad data never crashes a run mid-way.

Readers call `skips.add(reason, detail)` for each unusable row (missing or corrupt image, empty
caption, unreadable line). With strict=True the first problem raises GapkitError instead. At the
end `skips.report(name)` emits one warning with the count per reason and a few examples.
"""
from __future__ import annotations

import inspect
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import GapkitError


class DataWarning(UserWarning):
    """Rows of a user dataset were skipped (counts by reason in the message)."""


@dataclass
class Skips:
    strict: bool = False
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, detail: str) -> None:
        """Record one skipped row; raise at once when strict."""
        if self.strict:
            raise GapkitError(f"{reason}: {detail} (strict mode; drop strict to skip such rows)")
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(detail)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def report(self, name: str) -> None:
        """Warn once with the counts per reason (no warning when nothing was skipped)."""
        if not self.total:
            return
        parts = [f"{n} {reason} (e.g. {'; '.join(self.examples[reason])})" for reason, n in self.counts.most_common()]
        warnings.warn(f"{name}: skipped {self.total} rows: " + ", ".join(parts), DataWarning, stacklevel=3)


def call_with_options(fn: Callable[..., Any], what: str, *args: Any, **options: Any) -> Any:
    """Call a builder/reader, turning an option it does not take into one clear GapkitError."""
    params = inspect.signature(fn).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        known = [p for p in params if p not in ("path", "shards", "split", "cache_dir")]
        raise GapkitError(f"{what} takes no option {', '.join(unknown)} (options: {', '.join(known) or 'none'})")
    return fn(*args, **options)
