"""Run sphere simulations: schedule traces and snapshots around the compiled SGD loop, and spread
many runs over the cores.

    result = simulate(SphereConfig(loss="clip", init="polar", tau=0.1, epochs=20_000, seed=0))
    result.traces["centroid_distance"]      # (T,) geometry every few epochs, see TRACE_KEYS
    results = run_many([cfg.replace(tau=t) for t in (0.05, 0.1, 0.5)], processes=2)

One epoch = one fresh permutation of the n pairs cut into n // batch batches; after every step
each moved row is re-projected to the sphere. The same config (seed included) gives the same
trajectory bit for bit on the same machine: the init uses NumPy's Generator(seed), the
permutations and SLIP's jitter use numba's generator seeded with the same seed.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GapkitError
from ..validation import l2_normalize
from .config import SphereConfig
from .init import initial_points

_WARM = False


@dataclass
class SimResult:
    """Outcome of one run. traces: {"epoch", "loss", *TRACE_KEYS} -> (T,) arrays (loss at an epoch
    is the mean batch loss over the epoch that ends there; NaN at epoch 0). snapshots: positions of
    `snapshot_indices` pairs at `snapshot_epochs`, shapes (S, k, d). image/text: final (n, d)."""

    config: SphereConfig
    traces: dict[str, np.ndarray]
    snapshot_epochs: list[int]
    snapshot_indices: np.ndarray
    snapshots_image: np.ndarray
    snapshots_text: np.ndarray
    image: np.ndarray
    text: np.ndarray
    train_seconds: float
    elapsed_seconds: float
    steps: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds > 0 else float("nan")

    def final(self, key: str) -> float:
        return float(self.traces[key][-1])

    def results_dict(self) -> dict[str, Any]:
        """JSON-ready results (traces and snapshots; the full final positions are left out)."""
        return {
            "steps": self.steps,
            "steps_per_second": self.steps_per_second,
            "train_seconds": self.train_seconds,
            "elapsed_seconds": self.elapsed_seconds,
            "final": {k: self.final(k) for k in self.traces if k != "epoch"},
            "traces": {k: v.tolist() for k, v in self.traces.items()},
            "snapshots": {
                "epochs": list(self.snapshot_epochs),
                "indices": self.snapshot_indices.tolist(),
                "image": self.snapshots_image.tolist(),
                "text": self.snapshots_text.tolist(),
            },
        }


def trace_epochs(config: SphereConfig) -> np.ndarray:
    """Sorted unique epochs (always 0 and `epochs`) at which the geometry is recorded."""
    e = config.epochs
    if config.trace_every is not None:
        pts = np.arange(0, e + 1, config.trace_every)
    elif config.trace_spacing == "log" and e > 1:
        pts = np.concatenate([[0], np.geomspace(1, e, config.traces)])
    else:
        pts = np.linspace(0, e, config.traces + 1)
    return np.unique(np.concatenate([np.rint(pts).astype(np.int64), [0, e]]))


def snapshot_epochs(config: SphereConfig) -> list[int]:
    """The config's snapshot epochs, or 6 log-spaced ones from 0 to epochs."""
    if config.snapshots is not None:
        return list(config.snapshots)
    e = config.epochs
    if e <= 5:
        return list(range(e + 1))
    pts = np.concatenate([[0], np.geomspace(max(1, e / 10_000), e, 5)])
    return sorted(set(int(round(p)) for p in pts))


def _kernels() -> Any:
    """Import (and on first use in this process, compile or load from cache) the numba kernels."""
    global _WARM
    from . import kernels

    if not _WARM:
        x = np.eye(4, 3)[:4] + 0.1
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        for loss_id in kernels.LOSS_IDS.values():
            kernels.run_epochs(x.copy(), x.copy(), 1, 2, 2, loss_id, 1.0, 0.01, 0.0, 0.1, 1.0, 1.0, True)
        kernels.trace_stats(x, x)
        _WARM = True
    return kernels


def simulate(config: SphereConfig, progress: bool = False) -> SimResult:
    """Run one simulation with the compiled engine; `progress` shows a tqdm bar over epochs."""
    k = _kernels()
    k.seed_rng(config.seed)
    args = (config.epoch_steps, config.batch, k.LOSS_IDS[config.loss], config.logit_scale, config.lr,
            config.siglip_bias, config.slip_sigma, config.ssl_weight, config.unif_weight, config.reproject)
    return drive(config, lambda X, Y, n_epochs: k.run_epochs(X, Y, n_epochs, *args), progress)


Advance = Callable[[np.ndarray, np.ndarray, int], float]


def drive(config: SphereConfig, advance: Advance, progress: bool = False) -> SimResult:
    """Run `advance(X, Y, n_epochs) -> last epoch's mean loss` (in place on the unit rows) from the
    config's init, stopping at every trace and snapshot epoch to record the geometry."""
    k = _kernels()
    t_start = time.perf_counter()
    X, Y = (np.ascontiguousarray(a, np.float64) for a in initial_points(config))
    tr_epochs = trace_epochs(config)
    sn_epochs = snapshot_epochs(config)
    rng = np.random.default_rng([config.seed, 1])  # a stream apart from the init's
    pick = np.sort(rng.choice(config.n, size=min(config.snapshot_pairs, config.n), replace=False))
    trace_set, snap_set = set(tr_epochs.tolist()), set(sn_epochs)
    # Progress chunks: the loop is compiled, so the bar can only move between calls.
    chunk = max(1, config.epochs // 200)
    rows: list[np.ndarray] = []
    losses: list[float] = []
    snaps_x, snaps_y = [], []
    train_s, epoch, last_loss = 0.0, 0, math.nan
    bar = _progress_bar(config, progress)
    for target in sorted(trace_set | snap_set):
        while epoch < target:
            step = min(chunk, target - epoch)
            t0 = time.perf_counter()
            last_loss = advance(X, Y, step)
            train_s += time.perf_counter() - t0
            epoch += step
            if bar is not None:
                bar.update(step)
        # Without re-projection the parameters are off the sphere; the geometry is of their directions.
        xs, ys = (X, Y) if config.reproject else (l2_normalize(X), l2_normalize(Y))
        if target in trace_set:
            rows.append(k.trace_stats(xs, ys))
            losses.append(last_loss if target > 0 else math.nan)
        if target in snap_set:
            snaps_x.append(xs[pick].copy())
            snaps_y.append(ys[pick].copy())
    if bar is not None:
        bar.close()
    stats = np.array(rows)
    traces = {"epoch": tr_epochs.astype(np.int64), "loss": np.array(losses)}
    traces.update({name: stats[:, i] for i, name in enumerate(k.TRACE_KEYS)})
    if not config.reproject:
        X, Y = l2_normalize(X), l2_normalize(Y)
    return SimResult(config=config, traces=traces, snapshot_epochs=sn_epochs, snapshot_indices=pick,
                     snapshots_image=np.array(snaps_x), snapshots_text=np.array(snaps_y), image=X, text=Y,
                     train_seconds=train_s, elapsed_seconds=time.perf_counter() - t_start,
                     steps=config.epochs * config.epoch_steps)


def _progress_bar(config: SphereConfig, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs, unit="epoch", desc=f"{config.loss}/{config.init} tau={config.tau:g}",
                mininterval=0.5, dynamic_ncols=True)


def _simulate_quiet(config: SphereConfig) -> SimResult:
    return simulate(config, progress=False)


def run_many(configs: Sequence[SphereConfig], processes: int = 2, progress: bool = False) -> list[SimResult]:
    """Run several simulations over `processes` worker processes; results in the order given.

    Each worker loads the compiled kernels from numba's on-disk cache once. With processes=1 (or
    one config) everything runs in this process and `progress` shows the epoch bar.
    """
    configs = list(configs)
    if not configs:
        return []
    if not isinstance(processes, int) or processes < 1:
        raise GapkitError(f"processes must be a positive integer, got {processes!r}")
    if processes == 1 or len(configs) == 1:
        return [simulate(c, progress=progress) for c in configs]
    import multiprocessing as mp

    # fork starts workers instantly and the kernels need no state from the parent beyond imports;
    # spawn is the fallback where fork does not exist.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    out: list[SimResult | None] = [None] * len(configs)
    with ProcessPoolExecutor(max_workers=min(processes, len(configs)), mp_context=ctx) as pool:
        futures = {pool.submit(_simulate_quiet, c): i for i, c in enumerate(configs)}
        done = as_completed(futures)
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(configs), unit="run", desc="simulations")
        for fut in done:
            out[futures[fut]] = fut.result()
    return [r for r in out if r is not None]


def settled_epoch(epochs: np.ndarray, ok: np.ndarray) -> int | None:
    """First traced epoch from which `ok` holds at every later trace (None if not at the end)."""
    bad = np.flatnonzero(~np.asarray(ok, dtype=bool))
    if bad.size == 0:
        return int(epochs[0])
    last = int(bad[-1])
    return int(epochs[last + 1]) if last + 1 < len(epochs) else None


def first_epoch_below(result: SimResult, key: str, threshold: float) -> int | None:
    """First traced epoch at which traces[key] <= threshold and stays there until the end."""
    return settled_epoch(result.traces["epoch"], result.traces[key] <= threshold)


def uniform_uniformity(d: int) -> float:
    """log E exp(-2||u - v||^2) for u, v independent and uniform on S^(d-1): the value the
    uniformity trace reaches when a modality is spread evenly. With t = u.v, whose density is
    proportional to (1 - t^2)^((d-3)/2), ||u - v||^2 = 2 - 2t. For d = 3 it is log((1 - e^-8)/8)."""
    from scipy import integrate

    w = lambda t: (1.0 - t * t) ** ((d - 3) / 2.0)  # noqa: E731
    num = integrate.quad(lambda t: np.exp(-4.0 + 4.0 * t) * w(t), -1.0, 1.0, limit=200)[0]
    den = integrate.quad(w, -1.0, 1.0, limit=200)[0]
    return float(np.log(num / den))
