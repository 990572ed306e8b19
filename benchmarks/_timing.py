"""Timing helpers shared by the benchmark scripts (imported as `_timing`: a script's own folder is
on sys.path when it runs as `python benchmarks/NAME.py`)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int, *, before: Callable[[], object] | None = None,
                   warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of `repeats` calls of fn on `clock`, after `warmup` untimed calls; `before`
    runs untimed ahead of each timed call (e.g. evicting fn's inputs from the caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each function on `clock`, calls interleaved round-robin (one warm-up each),
    so that a change in machine load hits every function alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = clock()
            fn()
            times[name].append(clock() - t)
    return {k: statistics.median(v) for k, v in times.items()}
