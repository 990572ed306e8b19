"""Demo work that depends on no earlier stage, run in a second process so that both cores work.

The demo starts its jobs there when it begins, in this order: the head training (towers.train_all,
the tuning arms, then the temperature sweep: it needs only the cached tower features), then the
stages of stages.background_stages (--quick: samples, the bundled CLIP sets with their figures;
full run: explain, the papers' toy experiments). The main process meanwhile runs the other
stages; the tuning and temperature stages collect the trained heads, and a background stage is
collected, in its own row of the stage table, before the report.

    bg = Background(); bg.start("training", fn, *args)   # fn and args must be picklable
    bg.result("training")   # (value, wall and CPU seconds there), or None when the second process is
                            # unavailable or broke (the caller then runs the work in-process);
                            # an exception of the job itself (a real failure) is raised here
    bg.close()              # stop what was never collected (a stage failed first)

The pool is one spawned process (no fork of a process that may hold BLAS or numba threads).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """NumPy's BLAS/LAPACK and the OpenMP libraries (torch's, FAISS's) on one thread each: each of
    the demo's two processes has a core. A threaded LAPACK call on a busy core waits on its own
    spinning threads (a 1000 x 512 SVD took 2-5x longer with two threads than with one on a loaded
    2-core machine), and FAISS's parallel HNSW insertion of the search benchmark's ~1,300 vectors
    took 0.66 s with two OpenMP threads against 0.11 s with one."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it the demo is only slower
        yield
        return
    with threadpool_limits(limits=1):
        yield


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """Run fn(*args) in the worker (NumPy on one BLAS thread, as in the main process);
    (its result, wall seconds, CPU seconds of the worker)."""
    t0, c0 = time.perf_counter(), time.process_time()
    with one_thread():
        value = fn(*args)
    return value, time.perf_counter() - t0, time.process_time() - c0


class Background:
    """A one-process pool for the demo's independent jobs (see the module docstring)."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._jobs: dict[str, Any] = {}

    def start(self, name: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Submit fn(*args) as job `name`; False when no second process can be started."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        try:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
            self._jobs[name] = self._pool.submit(_timed, fn, *args)
        except (OSError, RuntimeError, ValueError):
            return False
        return True

    def result(self, name: str) -> tuple[Any, float, float] | None:
        """Wait for job `name`: (value, wall seconds, CPU seconds), or None when it is not there or
        the process broke."""
        from concurrent.futures.process import BrokenProcessPool

        future = self._jobs.pop(name, None)
        if future is None:
            return None
        try:
            return future.result()
        except BrokenProcessPool:
            return None

    def close(self) -> None:
        """Stop jobs that were never collected and shut the process down."""
        if self._pool is None:
            return
        if any(not f.done() for f in self._jobs.values()):
            # the executor has no public kill; its worker process is ours
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._jobs = None, {}


def in_background(ctx: dict[str, Any], name: str) -> tuple[Any, str] | None:
    """The result of background job `name` of the demo as (value, "where it ran"), or None."""
    bg = ctx.get("background")
    got = bg.result(name) if bg is not None else None
    if got is None:
        return None
    value, seconds, cpu = got
    return value, f"in a second process: {seconds:.1f} s, {cpu:.1f} s CPU"
