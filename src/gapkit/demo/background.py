"""The demo's head training, started in a second process when the demo starts, so that both cores
work: it needs only the cached tower features, while the first stages (samples, cones, explain)
run in the main process. The tuning and temperature stages collect its result.

    start_training(ctx)     submit towers.train_all(quick, seed) to a one-worker process pool
    collect_training(ctx)   (result, "where it ran"), or (None, reason) when the second process is
                            unavailable or broke: the caller then trains in-process

A training error (a real failure, e.g. a diverging loss) is raised by collect_training, so the
stage that needs the heads fails with it. The pool is a spawned process (no fork of a process
that may hold BLAS or numba threads); it is shut down when its result is collected, or by
`stop_training` when the demo ends early.
"""
from __future__ import annotations

import time
from typing import Any

KEY = "_training_job"


def start_training(ctx: dict[str, Any]) -> None:
    """Start towers.train_all in a second process (nothing happens when one cannot be started)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .towers import train_all

    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
        future = pool.submit(train_all, ctx["quick"], ctx["seed"])
    except (OSError, RuntimeError, ValueError):
        return
    ctx[KEY] = (pool, future, time.perf_counter())


def collect_training(ctx: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Wait for the second process; (result, description) or (None, why it is not there)."""
    from concurrent.futures.process import BrokenProcessPool

    job = ctx.pop(KEY, None)
    if job is None:
        return None, "no second process"
    pool, future, t0 = job
    try:
        result = future.result()
    except BrokenProcessPool:
        return None, "the second process broke"
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return result, f"trained in a second process, {time.perf_counter() - t0:.1f} s after the demo started"


def stop_training(ctx: dict[str, Any]) -> None:
    """Shut the second process down if its result was never collected (a stage failed first)."""
    job = ctx.pop(KEY, None)
    if job is None:
        return
    pool, future, _ = job
    if not future.done():  # the executor has no public kill; its worker processes are ours
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
