"""Wall times of the study-level commands, as a user runs them (each a fresh process).

Targets (issue 12, 2 cores):
    gapkit demo, warm cache                      < 60 s
    gapkit demo --quick, warm cache              < 30 s
    gapkit study on 1,000 pairs, warm cache      < 30 s
    measure default report at 20k x 512          < 8 s, cost growing smoothly in N
Each timing prints wall and CPU seconds (user + sys of the process and its threads/children):
under load, CPU / 2 cores approximates the idle-machine wall time (BLAS spinning inflates it).
"Warm" = the embedding/feature cache already holds what the command needs: each command is run
once untimed (or timed as "cold") into --cache, then timed --repeats times. The machine is shared:
the 1-minute load average is printed beside every timing ("under load" when it exceeds the cores).

    PYTHONPATH=src python benchmarks/bench_study.py [--parts quick,study,measure,full] [--repeats 3]
        [--cache DIR]   # reuse a warm cache (e.g. a copy of ~/.cache/gapkit) to skip the cold runs
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def load() -> str:
    one = os.getloadavg()[0]
    return f"load {one:.1f}{' (under load)' if one > (os.cpu_count() or 2) else ''}"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, output) of a subprocess; its CPU seconds (user + sys, all threads) are kept in
    LAST_CPU: on a shared machine CPU time / cores is the better estimate of idle-machine wall time."""
    global LAST_CPU
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-1200:]}")
    return dt, done.stdout + done.stderr


LAST_CPU = 0.0


def stage_times(run_dir: Path) -> str:
    """Main-process wall/CPU seconds per stage from the run's demo.json, plus (+X/Y*) the wall/CPU
    seconds of work the stage's part in the demo's second process took (head training, samples
    or explain)."""
    import json
    import re

    f = run_dir / "demo.json"
    if not f.is_file():
        return ""
    parts = []
    for name, st in json.loads(f.read_text())["results"]["stages"].items():
        bg = re.search(r"in a second process: ([\d.]+) s, ([\d.]+) s CPU", st.get("detail", ""))
        parts.append(f"{name} {st.get('seconds', 0):.1f}/{st.get('cpu_seconds', float('nan')):.1f}"
                     + (f" (+{float(bg.group(1)):.1f}/{float(bg.group(2)):.1f}*)" if bg else ""))
    return (", ".join(parts) + "   (wall/CPU s; +X/Y* = wall/CPU s of work in the demo's second process, "
            "overlapping the main one)")


def bench_command(name: str, cmd: list[str], env: dict[str, str], repeats: int, target: float, tmp: Path,
                  warm_up: bool) -> None:
    """Cold run (fills the cache; skipped with warm_up=False), then `repeats` warm runs; median."""
    gk = [sys.executable, "-m", "gapkit", *cmd]
    if warm_up:
        before = load()
        dt, log = timed([*gk, "--out", str(tmp / f"{name}-cold")], env)
        print(f"{name:>28}: cold {dt:7.1f} s wall, {LAST_CPU:6.1f} s CPU   ({before} -> {load()})", flush=True)
    runs = []
    for r in range(repeats):
        before = load()
        dt, log = timed([*gk, "--out", str(tmp / f"{name}-warm{r}")], env)
        runs.append(dt)
        print(f"{name:>28}: warm {runs[-1]:7.1f} s wall, {LAST_CPU:6.1f} s CPU   ({before} -> {load()})", flush=True)
        if stages := stage_times(tmp / f"{name}-warm{r}"):
            print(f"{'':>28}  stages (s): {stages}", flush=True)
    med = statistics.median(runs)
    print(f"{name:>28}: warm median {med:.1f} s of {repeats}  target < {target:.0f} s  "
          f"{'MET' if med < target else 'MISSED'}", flush=True)


def bench_measure(repeats: int) -> None:
    """In-process default `measure` report over N (a fresh random gapped cloud per N)."""
    sys.path.insert(0, SRC)
    import numpy as np

    from gapkit.metrics import measure

    d = 512
    for n in (2_500, 5_000, 10_000, 20_000, 40_000):
        r = np.random.default_rng(0)
        z = r.standard_normal((n, d), dtype=np.float32)
        x = z + 0.5 * r.standard_normal(d, dtype=np.float32)
        y = z + 0.5 * r.standard_normal((n, d), dtype=np.float32)
        ts = []
        for _ in range(repeats):
            before = load()
            t0 = time.perf_counter()
            measure(x, y)
            ts.append(time.perf_counter() - t0)
        print(f"{'measure default report':>28}: N={n:>6} x {d}: median {statistics.median(ts):6.2f} s "
              f"{sorted(round(t, 2) for t in ts)}  ({before} -> {load()})"
              + ("  target < 8 s" if n == 20_000 else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="quick,study,measure,full")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", help="cache directory (default: a fresh temporary one, filled by cold runs)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold runs (the --cache is already warm)")
    ap.add_argument("--pairs", type=int, default=1000, help="images of the study run (openclipart, one title each)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        cache = Path(args.cache) if args.cache else tmp / "cache"
        env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1", GAPKIT_CACHE=str(cache))
        print(f"{os.cpu_count()} cores, cache {cache}, {load()}", flush=True)
        warm_up = not args.no_cold
        if "quick" in parts:
            bench_command("demo --quick", ["demo", "--quick"], env, args.repeats, 30, tmp, warm_up)
        if "study" in parts:
            bench_command(f"study {args.pairs} pairs", ["study", "--encoder", "towers", "--dataset", "openclipart",
                                                        "--split", "all", "--limit", str(args.pairs), "--quiet"],
                          env, args.repeats, 30, tmp, warm_up)
        if "measure" in parts:
            bench_measure(args.repeats)
        if "full" in parts:
            bench_command("demo", ["demo"], env, args.repeats, 60, tmp, warm_up)


if __name__ == "__main__":
    main()
