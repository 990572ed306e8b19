"""Run sphere simulations: schedule traces and snapshots around the compiled SGD loop, and spread
many runs over the cores.

    result = simulate(SphereConfig(loss="clip", init="polar", tau=0.1, epochs=20_000, seed=0))
    result.traces["centroid_distance"]      # (T,) geometry every few epochs, see TRACE_KEYS
    results = run_many([cfg.replace(tau=t) for t in (0.05, 0.1, 0.5)], processes=2)   # one chunk of 3 lanes

One epoch = one fresh permutation of the n pairs cut into n // batch batches; after every step
each moved row is re-projected to the sphere. The same config (seed included) gives the same
trajectory bit for bit on the same machine: the init uses NumPy's Generator(seed), the
permutations and SLIP's jitter use the run's own copy of numba's generator seeded with the same
seed (gapkit.sim.mt19937), so R runs batched together (`simulate_many`, `run_many`: runs that
share a seed as SIMD lanes of one chunk, chunks on the cores) follow exactly the trajectories
they follow one at a time.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GapkitError
from ..threads import scoped_threads
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
        from .mt19937 import new_state

        x = np.eye(4, 3)[:4] + 0.1
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        for loss_id in kernels.LOSS_IDS.values():
            kernels.run_epochs(x.copy(), x.copy(), 1, 2, 2, loss_id, 1.0, 0.01, 0.0, 0.1, 1.0, 1.0, True,
                               *new_state(0))
        kernels.trace_stats(x, x)
        _WARM = True
    return kernels


def _kernel_args(configs: Sequence[SphereConfig]) -> dict[str, np.ndarray]:
    """Per-run kernel parameters as (R,) arrays, and each run's random stream seeded by its seed."""
    from .kernels import LOSS_IDS
    from .mt19937 import new_state

    states = [new_state(c.seed) for c in configs]
    return {
        "loss_id": np.array([LOSS_IDS[c.loss] for c in configs], np.int64),
        "s": np.array([c.logit_scale for c in configs]), "lr": np.array([c.lr for c in configs]),
        "bias": np.array([c.siglip_bias for c in configs]), "sigma": np.array([c.slip_sigma for c in configs]),
        "w_ssl": np.array([c.ssl_weight for c in configs]), "w_unif": np.array([c.unif_weight for c in configs]),
        "reproject": np.array([c.reproject for c in configs], np.bool_),
        "mt": np.stack([m for m, _, _ in states]), "meta": np.stack([m for _, m, _ in states]),
        "gauss": np.stack([g for _, _, g in states]),
    }


def simulate(config: SphereConfig, progress: bool = False) -> SimResult:
    """Run one simulation with the compiled engine; `progress` shows a tqdm bar over epochs.

    It calls the single-run kernels directly rather than `simulate_many` with one run: the
    multi-threaded kernels take about 30 s more to compile on first use. The run still equals its
    twin in a sweep bit for bit (tested): a CLIP run is a chunk of one lane of gapkit.sim.vector,
    whose per-lane arithmetic is strict IEEE, the same in any chunk, lane or calling context; the
    other losses call the same `run_epochs` in both."""
    k = _kernels()
    a = {name: v[0] for name, v in _kernel_args([config]).items()}
    args = (config.epoch_steps, config.batch, a["loss_id"], a["s"], a["lr"], a["bias"], a["sigma"], a["w_ssl"],
            a["w_unif"], bool(a["reproject"]), a["mt"], a["meta"], a["gauss"])
    return drive(config, lambda X, Y, n_epochs: k.run_epochs(X, Y, n_epochs, *args), progress)


def simulate_many(configs: Sequence[SphereConfig], threads: int | None = None,
                  progress: bool = False) -> list[SimResult]:
    """Run R simulations in one compiled kernel, the runs spread over `threads` threads (default:
    numba's, i.e. every core, but no more than the tasks there are). Run r equals
    `simulate(configs[r])` bit for bit (same arithmetic, same stream).

    The runs must share one schedule (n, d, batch, steps per epoch, epochs, trace and snapshot
    epochs); loss, init, tau, lr, seed and the loss parameters may differ. `run_many` groups any
    list of configs into such batches. CLIP and eq. 7 runs that share a seed (and re-projection)
    draw the same batches, so they run as SIMD lanes of one chunk (gapkit.sim.vector; chunks and
    their spread over the threads: `plan_chunks`); a run alone is a chunk of one lane, the engine
    of `simulate`. The other losses go one run per task through kernels.run_epochs_many, after the
    CLIP chunks. Each result's train_seconds is its share (1/R) of the batch's wall time, so
    steps_per_second is the sweep's throughput per run.
    """
    configs = list(configs)
    if not configs:
        return []
    import numba

    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise GapkitError(f"threads must be a positive integer, got {threads!r}")
    k = _kernels()
    lane_runs = [r for r, c in enumerate(configs) if c.loss in CLIP_LOSSES]
    other = [r for r, c in enumerate(configs) if c.loss not in CLIP_LOSSES]
    n_threads = numba.get_num_threads() if threads is None else min(threads, numba.config.NUMBA_NUM_THREADS)
    chunks = plan_chunks([(configs[r].seed, configs[r].reproject) for r in lane_runs], n_threads)
    lane_tasks = len({t for t, _ in chunks})
    # No more numba threads than tasks: every launch of a parallel region wakes all of numba's
    # threads, which costs milliseconds per call on a busy machine (one run this way went 4x slower).
    tasks = max(lane_tasks, min(len(other), n_threads))
    with ThreadPoolExecutor(max_workers=max(1, lane_tasks)) as pool, \
            scoped_threads(numba.get_num_threads, numba.set_num_threads, min(tasks, n_threads)):
        steps = ([_lane_advance(configs, lane_runs, chunks, pool)] if chunks else []) + \
            ([_scalar_advance(k, configs, other)] if other else [])

        def advance(X: np.ndarray, Y: np.ndarray, n_epochs: int) -> np.ndarray:
            out = np.empty(len(configs))
            for step in steps:
                step(X, Y, n_epochs, out)
            return out

        return drive_many(configs, advance, progress)


CLIP_LOSSES = ("clip", "clip_shi_eq7")
# Runs per chunk of lanes: 16 fill AVX2 registers four times over; a block of 128 lanes (8 steps
# of 16 runs) keeps the E block of gapkit.sim.vector within L2. Wider chunks gained nothing.
MAX_RUN_LANES = 16


def plan_chunks(keys: Sequence[tuple], threads: int) -> list[tuple[int, list[int]]]:
    """Split runs into chunks of lanes and the chunks over tasks: [(task, [run positions])].

    Runs with the same key (seed, reproject) share their batches and may share a chunk; a group of
    G runs becomes ceil(G / MAX_RUN_LANES) chunks of near-equal width. Chunks go to `threads`
    tasks, widest first onto the least loaded (cost ~ width); while halving the widest chunk of
    >= 8 runs shortens the longest task, it is halved (4 lanes still beat one lane per core)."""
    groups: dict[tuple, list[int]] = {}
    for pos, key in enumerate(keys):
        groups.setdefault(key, []).append(pos)
    chunks: list[list[int]] = []
    for members in groups.values():
        chunks.extend(_split(members, -(-len(members) // MAX_RUN_LANES)))
    plan = _assign(chunks, threads)
    while chunks:
        widest = max(chunks, key=len)
        if len(widest) < 8:
            break
        halved = [c for c in chunks if c is not widest] + _split(widest, 2)
        better = _assign(halved, threads)
        if _makespan(better) >= _makespan(plan):
            break
        chunks, plan = halved, better
    return plan


def _split(members: Sequence[int], parts: int) -> list[list[int]]:
    return [[int(p) for p in a] for a in np.array_split(np.asarray(members, dtype=np.int64), parts)]


def _assign(chunks: list[list[int]], threads: int) -> list[tuple[int, list[int]]]:
    """Longest chunk first onto the least loaded of `threads` tasks."""
    load = [0] * max(1, threads)
    out = []
    for ch in sorted(chunks, key=len, reverse=True):
        t = int(np.argmin(load))
        load[t] += len(ch)
        out.append((t, ch))
    return out


def _makespan(plan: list[tuple[int, list[int]]]) -> int:
    load: dict[int, int] = {}
    for t, ch in plan:
        load[t] = load.get(t, 0) + len(ch)
    return max(load.values(), default=0)


def _scalar_advance(k: Any, configs: Sequence[SphereConfig], other: list[int]) -> Callable[..., None]:
    """An advance step for the runs of the other losses: kernels.run_epochs_many, one run per task."""
    cfg = configs[0]
    a = _kernel_args([configs[r] for r in other])
    args = (cfg.epoch_steps, cfg.batch, a["loss_id"], a["s"], a["lr"], a["bias"], a["sigma"], a["w_ssl"],
            a["w_unif"], a["reproject"], a["mt"], a["meta"], a["gauss"])
    idx = np.array(other)

    def advance(X: np.ndarray, Y: np.ndarray, n_epochs: int, out: np.ndarray) -> None:
        xs, ys = X[idx], Y[idx]
        out[idx] = k.run_epochs_many(xs, ys, n_epochs, *args)
        X[idx], Y[idx] = xs, ys
    return advance


def _lane_advance(configs: Sequence[SphereConfig], lane_runs: list[int], chunks: list[tuple[int, list[int]]],
                  pool: ThreadPoolExecutor) -> Callable[..., None]:
    """An advance step for the CLIP runs: each chunk's positions packed run-innermost (n, d, W) for
    vector.run_clip_lanes (which releases the GIL), the tasks' chunks run on the pool's threads,
    the positions unpacked after every call."""
    from . import vector
    from .mt19937 import new_state

    cfg = configs[0]
    runs = [[lane_runs[p] for p in ch] for _, ch in chunks]
    tasks: dict[int, list[int]] = {}
    for q, (t, _) in enumerate(chunks):
        tasks.setdefault(t, []).append(q)
    # Each chunk keeps its own copy of its seed's stream, advanced in place from call to call.
    streams = [new_state(configs[rs[0]].seed)[:2] for rs in runs]
    params = [(np.array([configs[r].loss == "clip_shi_eq7" for r in rs]), np.array([configs[r].logit_scale for r in rs]),
               np.array([configs[r].lr for r in rs]), bool(configs[rs[0]].reproject)) for rs in runs]

    def advance(X: np.ndarray, Y: np.ndarray, n_epochs: int, out: np.ndarray) -> None:
        def run_task(qs: list[int]) -> None:
            for q in qs:
                idx = runs[q]
                xq = np.ascontiguousarray(X[idx].transpose(1, 2, 0))
                yq = np.ascontiguousarray(Y[idx].transpose(1, 2, 0))
                eq7, s, lr, reproject = params[q]
                losses = np.empty(len(idx))
                vector.run_clip_lanes(xq, yq, n_epochs, cfg.epoch_steps, cfg.batch, eq7, s, lr, reproject,
                                      *streams[q], losses)
                X[idx], Y[idx] = xq.transpose(2, 0, 1), yq.transpose(2, 0, 1)
                out[idx] = losses
        list(pool.map(run_task, tasks.values()))
    return advance


def _directions(X: np.ndarray, Y: np.ndarray, configs: Sequence[SphereConfig]) -> tuple[np.ndarray, np.ndarray]:
    """The unit rows of every run: X, Y themselves when every run re-projects, else copies in which
    only the free runs are normalised (a re-projected run's rows stay bit for bit as they are, as
    in its single run)."""
    if all(c.reproject for c in configs):
        return X, Y
    xs, ys = X.copy(), Y.copy()
    for r, c in enumerate(configs):
        if not c.reproject:
            xs[r], ys[r] = l2_normalize(X[r]), l2_normalize(Y[r])
    return xs, ys


Advance = Callable[[np.ndarray, np.ndarray, int], float]
AdvanceMany = Callable[[np.ndarray, np.ndarray, int], Sequence[float]]


def schedule_key(config: SphereConfig) -> tuple:
    """What runs batched together must share: shapes, steps and the epochs where the driver stops."""
    return (config.n, config.d, config.batch, config.epoch_steps, config.epochs,
            tuple(trace_epochs(config).tolist()), tuple(snapshot_epochs(config)))


def drive(config: SphereConfig, advance: Advance, progress: bool = False) -> SimResult:
    """Run `advance(X, Y, n_epochs) -> last epoch's mean loss` (in place on the unit rows) from the
    config's init, stopping at every trace and snapshot epoch to record the geometry."""
    return drive_many([config], lambda X, Y, n: [advance(X[0], Y[0], n)], progress)[0]


def drive_many(configs: Sequence[SphereConfig], advance: AdvanceMany, progress: bool = False) -> list[SimResult]:
    """`drive` for R runs with one schedule: advance(X, Y, n_epochs) moves all of X, Y (R, n, d) in
    place and returns the R last-epoch mean losses; the geometry of every run is recorded at the
    shared trace and snapshot epochs."""
    k = _kernels()
    config = configs[0]
    if any(schedule_key(c) != schedule_key(config) for c in configs[1:]):
        raise GapkitError("runs batched together must share n, d, batch, steps per epoch, epochs, "
                          "trace and snapshot epochs (run_many groups them)")
    R = len(configs)
    t_start = time.perf_counter()
    X = np.empty((R, config.n, config.d))
    Y = np.empty((R, config.n, config.d))
    picks = []
    for r, c in enumerate(configs):
        X[r], Y[r] = initial_points(c)
        rng = np.random.default_rng([c.seed, 1])  # a stream apart from the init's
        picks.append(np.sort(rng.choice(c.n, size=min(c.snapshot_pairs, c.n), replace=False)))
    tr_epochs = trace_epochs(config)
    sn_epochs = snapshot_epochs(config)
    trace_set, snap_set = set(tr_epochs.tolist()), set(sn_epochs)
    rows: list[list[np.ndarray]] = [[] for _ in range(R)]
    losses: list[list[float]] = [[] for _ in range(R)]
    snaps_x: list[list[np.ndarray]] = [[] for _ in range(R)]
    snaps_y: list[list[np.ndarray]] = [[] for _ in range(R)]
    train_s, epoch = 0.0, 0
    last_loss = np.full(R, math.nan)
    bar = _progress_bar(config, progress, R)
    # Progress chunks: the loop is compiled, so the bar can only move between calls. Without a bar
    # the runs go straight to the next trace (each call costs a launch of the parallel kernel).
    chunk = max(1, config.epochs // 200) if bar is not None else max(1, config.epochs)
    for target in sorted(trace_set | snap_set):
        while epoch < target:
            step = min(chunk, target - epoch)
            t0 = time.perf_counter()
            last_loss = np.asarray(advance(X, Y, step), dtype=np.float64)
            train_s += time.perf_counter() - t0
            epoch += step
            if bar is not None:
                bar.update(step)
        # Without re-projection the parameters are off the sphere; the geometry is of their directions.
        xs, ys = _directions(X, Y, configs)
        if target in trace_set:
            stats = _trace_stats(k, xs, ys, configs if target == 0 else None)
            for r in range(R):
                rows[r].append(stats[r])
                losses[r].append(float(last_loss[r]) if target > 0 else math.nan)
        if target in snap_set:
            for r in range(R):
                snaps_x[r].append(xs[r][picks[r]].copy())
                snaps_y[r].append(ys[r][picks[r]].copy())
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    out = []
    for r, c in enumerate(configs):
        stats = np.array(rows[r])
        traces = {"epoch": tr_epochs.astype(np.int64), "loss": np.array(losses[r])}
        traces.update({name: stats[:, i] for i, name in enumerate(k.TRACE_KEYS)})
        xf, yf = (X[r], Y[r]) if c.reproject else (l2_normalize(X[r]), l2_normalize(Y[r]))
        out.append(SimResult(config=c, traces=traces, snapshot_epochs=sn_epochs, snapshot_indices=picks[r],
                             snapshots_image=np.array(snaps_x[r]), snapshots_text=np.array(snaps_y[r]),
                             image=np.ascontiguousarray(xf), text=np.ascontiguousarray(yf),
                             train_seconds=train_s / R, elapsed_seconds=elapsed / R,
                             steps=c.epochs * c.epoch_steps))
    return out


def _trace_stats(k: Any, xs: np.ndarray, ys: np.ndarray, start: Sequence[SphereConfig] | None) -> np.ndarray:
    """(R, len(TRACE_KEYS)) geometry of every run. At the start (`start` = the configs), runs with
    the same initial points (seed, init, spread, angle, re-projection) are measured once: a
    temperature sweep starts many runs from one set of points, and a trace costs O(n^2 d)."""
    R = xs.shape[0]
    if R == 1:
        return k.trace_stats(xs[0], ys[0])[None]
    if start is None:
        return k.trace_stats_many(xs, ys)
    first: dict[tuple, int] = {}
    rep = np.array([first.setdefault((c.seed, c.init, c.spread, c.angle, c.reproject), r)
                    for r, c in enumerate(start)])
    uniq = np.unique(rep)
    stats = k.trace_stats_many(xs[uniq], ys[uniq]) if len(uniq) > 1 else k.trace_stats(xs[uniq[0]], ys[uniq[0]])[None]
    return stats[np.searchsorted(uniq, rep)]


def _progress_bar(config: SphereConfig, enabled: bool, runs: int = 1) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    desc = f"{config.loss}/{config.init} tau={config.tau:g}" if runs == 1 else f"{runs} runs"
    return tqdm(total=config.epochs, unit="epoch", desc=desc, mininterval=0.5, dynamic_ncols=True)


def run_many(configs: Sequence[SphereConfig], processes: int = 2, progress: bool = False) -> list[SimResult]:
    """Run several simulations; results in the order given, each equal to `simulate(config)`.

    Configs that share a schedule (see `schedule_key`) run together (`simulate_many`: CLIP runs
    that share a seed as SIMD lanes of one chunk), spread over `processes` threads; a sweep over
    tau, loss, init or seed is one such batch. With one config the single-run loop is used.
    """
    configs = list(configs)
    if not configs:
        return []
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise GapkitError(f"processes must be a positive integer, got {processes!r}")
    if len(configs) == 1:
        return [simulate(configs[0], progress=progress)]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(schedule_key(c), []).append(i)
    out: list[SimResult | None] = [None] * len(configs)
    for idx in groups.values():
        for i, res in zip(idx, simulate_many([configs[i] for i in idx], threads=processes, progress=progress)):
            out[i] = res
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
