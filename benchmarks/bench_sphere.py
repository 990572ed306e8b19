"""Sphere engine speed: gapkit's compiled loop vs a textbook PyTorch loop, side by side.

Configuration (Shi et al.): 1,000 pairs on S^2, CLIP loss at tau = 0.1, SGD lr 0.01, batch 10,
rows re-projected to the sphere after every step. Both sides run on one thread in this process;
each figure is the median of --repeats timed repeats. Target: ratio >= 100x.

    python benchmarks/bench_sphere.py                 # ratio only (~30 s)
    python benchmarks/bench_sphere.py --full          # plus Shi's longest run: 2.5 M epochs = 250 M steps
                                                      # (issue 15 target: under 5 minutes)
    python benchmarks/bench_sphere.py --sweep 32      # also: 1 run vs two 32-run sweeps in one call
                                                      # (simulate_many, every core), vs the torch loop

The sweep part prints steps/s (wall and CPU) for one run step by step (the engine before issue 15:
one batch after another, libm exp), one run vectorised (an epoch's independent steps in SIMD
lanes, gapkit.sim.vector) and two R-run sweeps in one call of simulate_many (every core):

  * distinct seeds (seeds 0..R-1, tau cycling over 0.02..1): no two runs share their batches, so
    each run is its own chunk, one run per core at a time (the line printed before issue 15's
    run-lanes);
  * the shi configuration as shi-temperature sweeps it: taus x seeds x 2 losses (clip and
    clip_shi_eq7), R/4 taus log-spaced over 0.02..1, seeds 0 and 1. Runs with one seed share
    their permutations, so simulate_many puts them in SIMD lanes of one chunk (engine.plan_chunks:
    at R = 32, two chunks of 16 runs = 8 taus x 2 losses, one per core).

Each sweep's cost is given in units of one step-by-step run (issue 15's target: <= 4x for
R = 32) and of one vectorised run. The baseline is the same step-by-step run in both. The
machine's load average is printed beside it: on a shared machine the threads wait for cores, and
the R-run figures are the ones that suffer.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


from gapkit.sim import SphereConfig, simulate, simulate_many  # noqa: E402
from gapkit.sim.init import initial_points  # noqa: E402

CONFIG = SphereConfig(loss="clip", init="polar", tau=0.1, n=1000, d=3, lr=0.01, batch=10)


def torch_textbook_steps_per_second(steps: int) -> float:
    """Points as nn.Parameter, optim.SGD, loss.backward, re-projection after each step."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    x0, y0 = initial_points(CONFIG)
    X = nn.Parameter(torch.tensor(x0, dtype=torch.float32))
    Y = nn.Parameter(torch.tensor(y0, dtype=torch.float32))
    opt = torch.optim.SGD([X, Y], lr=CONFIG.lr)
    labels = torch.arange(CONFIG.batch)
    perm = torch.randperm(CONFIG.n)
    t0 = time.perf_counter()
    for step in range(steps):
        k = step % CONFIG.epoch_steps
        if k == 0:
            perm = torch.randperm(CONFIG.n)
        idx = perm[k * CONFIG.batch:(k + 1) * CONFIG.batch]
        x, y = F.normalize(X[idx], dim=1), F.normalize(Y[idx], dim=1)
        logits = x @ y.T / CONFIG.tau
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            X.copy_(F.normalize(X, dim=1))
            Y.copy_(F.normalize(Y, dim=1))
    return steps / (time.perf_counter() - t0)


def gapkit_steps_per_second(epochs: int) -> float:
    return simulate(CONFIG.replace(epochs=epochs, traces=1)).steps_per_second


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every thread of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def step_by_step_seconds(cfg: SphereConfig) -> Callable[[], object]:
    """The engine before issue 15's vectorisation, for CLIP: one batch after another through
    kernels._run_epochs_scalar (libm exp, fast-math), same stream; returns a timed callable."""
    from gapkit.sim import kernels as K
    from gapkit.sim.mt19937 import new_state

    x0, y0 = initial_points(cfg)

    def run() -> None:
        K._run_epochs_scalar(x0.copy(), y0.copy(), cfg.epochs, cfg.epoch_steps, cfg.batch, K.LOSS_IDS[cfg.loss],
                             cfg.logit_scale, cfg.lr, 0.0, 0.0, 1.0, 1.0, True, *new_state(cfg.seed))
    return run


def shi_sweep_configs(runs: int, epochs: int) -> list[SphereConfig]:
    """`runs` configs as shi-temperature sweeps them: runs/4 taus x seeds (0, 1) x losses (clip,
    clip_shi_eq7), the taus log-spaced over 0.02..1 (runs must be a multiple of 4)."""
    import numpy as np

    base = CONFIG.replace(epochs=epochs, traces=1)
    taus = np.geomspace(0.02, 1.0, max(1, runs // 4))
    return [base.replace(tau=float(t), seed=seed, loss=loss) for seed in (0, 1)
            for loss in ("clip", "clip_shi_eq7") for t in taus]


def sweep(runs: int, epochs: int, torch_sps: float, repeats: int) -> bool:
    """One run vs `runs` runs in one call of simulate_many, same epochs each (median of `repeats`);
    beside them the step-by-step loop (the engine before the vectorisation) and the torch loop."""
    import os

    if runs % 4:
        raise SystemExit(f"--sweep must be a multiple of 4 (taus x 2 seeds x 2 losses), got {runs}")
    taus = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    one_cfg = CONFIG.replace(epochs=epochs, traces=1)
    distinct = [one_cfg.replace(seed=r, tau=taus[r % len(taus)]) for r in range(runs)]
    shi = shi_sweep_configs(runs, epochs)
    simulate_many(distinct[:2])  # load the kernels before timing
    simulate_many(shi[:2])
    old = step_by_step_seconds(one_cfg)
    old()
    sweeps = {"distinct": distinct, "shi": shi}
    ts: dict[str, list[tuple[float, float]]] = {"one": [], "old": [], "distinct": [], "shi": []}
    for _ in range(repeats):  # interleaved, so a change of machine load hits all alike
        ts["one"].append(_timed(lambda: simulate(one_cfg)))
        ts["old"].append(_timed(old))
        for name, cfgs in sweeps.items():
            ts[name].append(_timed(lambda: simulate_many(cfgs)))
    med = {name: tuple(statistics.median(v[i] for v in t) for i in (0, 1)) for name, t in ts.items()}
    steps = one_cfg.epochs * one_cfg.epoch_steps
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"sweep: {runs} runs x {steps:,} steps (n={CONFIG.n}, batch {CONFIG.batch}), medians of {repeats}; "
          f"load average {load} on {os.cpu_count()} cores", flush=True)
    rows = (("old", "1 run, step by step", 1), ("one", "1 run, vectorised", 1),
            ("distinct", f"{runs} runs, distinct seeds", runs),
            ("shi", f"{runs} runs, shi sweep", runs))
    for name, label, r in rows:
        wall, cpu = med[name]
        print(f"  {label:24s}: {wall:8.2f} s wall {r * steps / wall:12,.0f} steps/s | {cpu:8.2f} s CPU "
              f"{r * steps / cpu:12,.0f} steps/CPU-s", flush=True)
    print(f"  {runs} torch loops          : {runs * steps / torch_sps:8.0f} s (at {torch_sps:,.0f} steps/s, one after "
          f"another)", flush=True)
    speedup, speedup_cpu = med["old"][0] / med["one"][0], med["old"][1] / med["one"][1]
    print(f"  vectorised 1 run      : {speedup:8.2f}x the step-by-step run's speed ({speedup_cpu:.2f}x in CPU time)",
          flush=True)
    print(f"  shi sweep = {len(shi) // 4} taus x 2 seeds x 2 losses, in lanes of {len(shi) // 2} runs sharing a seed",
          flush=True)
    ok = True
    for name in ("distinct", "shi"):
        cost_old, cost_new = med[name][0] / med["old"][0], med[name][0] / med["one"][0]
        cpu_old, cpu_new = med[name][1] / med["old"][1], med[name][1] / med["one"][1]
        hit = cost_old <= 4 * runs / 32
        print(f"  cost, {name:8s}      : {cost_old:6.2f}x one step-by-step run wall ({cpu_old:.2f}x CPU), "
              f"{cost_new:.2f}x one vectorised run wall ({cpu_new:.2f}x CPU); target <= {4 * runs / 32:g}x: "
              f"{'OK' if hit else 'ABOVE TARGET'}", flush=True)
        if name == "shi":
            ok = hit
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-steps", type=int, default=3000)
    ap.add_argument("--gapkit-epochs", type=int, default=20_000, help="2 M steps per repeat by default")
    ap.add_argument("--full", action="store_true", help="also time a full 2.5 M-epoch run")
    ap.add_argument("--full-epochs", type=int, default=2_500_000)
    ap.add_argument("--sweep", type=int, default=0, metavar="R", help="also time R runs in one kernel vs 1 run")
    ap.add_argument("--sweep-epochs", type=int, default=2_000)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # one core each: the compiled loop is single-threaded too
    gapkit_steps_per_second(10)  # load the compiled kernels before timing
    torch_textbook_steps_per_second(200)  # warm up torch's dispatcher
    base = [torch_textbook_steps_per_second(args.torch_steps) for _ in range(args.repeats)]
    fast = [gapkit_steps_per_second(args.gapkit_epochs) for _ in range(args.repeats)]
    b, f = statistics.median(base), statistics.median(fast)
    print(f"config: {CONFIG.n} pairs, d={CONFIG.d}, batch {CONFIG.batch}, CLIP tau={CONFIG.tau}", flush=True)
    print(f"torch textbook loop : {b:12,.0f} steps/s (median of {args.repeats}: {[round(v) for v in base]})", flush=True)
    print(f"gapkit numba engine : {f:12,.0f} steps/s (median of {args.repeats}: {[round(v) for v in fast]})", flush=True)
    print(f"ratio               : {f / b:12.1f}x  (target >= 100x) {'OK' if f / b >= 100 else 'BELOW TARGET'}", flush=True)
    ok = f / b >= 100
    if args.sweep:
        ok = sweep(args.sweep, args.sweep_epochs, b, args.repeats) and ok
    if args.full:
        cfg = CONFIG.replace(epochs=args.full_epochs, traces=100, trace_spacing="log")
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate(cfg, progress=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        # On a shared machine the wall time includes waiting for a core; the CPU time is what the
        # run costs on a core of its own. Both are printed; the target is checked on the wall time.
        print(f"full run            : {cfg.epochs:,} epochs = {res.steps:,} steps in {wall / 60:.2f} min wall, "
              f"{cpu / 60:.2f} min CPU ({res.steps_per_second:,.0f} steps/s wall in the loop; target < 5 min) "
              f"{'OK' if wall < 300 else 'OVER TARGET (wall)'}", flush=True)
        if res.steps < 250_000_000:
            print(f"extrapolated        : 250,000,000 steps would take {250e6 * cpu / res.steps / 60:.2f} min CPU, "
                  f"{250e6 * wall / res.steps / 60:.2f} min wall at this machine load", flush=True)
        print(f"final centroid distance {res.final('centroid_distance'):.4f}, "
              f"uniformity {res.final('uniformity_image'):.4f}", flush=True)
        ok = ok and wall < 300
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
