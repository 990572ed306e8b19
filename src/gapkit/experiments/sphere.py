"""Shi et al.'s sphere experiments ("Understanding the modality gap in CLIP", Fig. 2-4, App. D).

Every experiment runs a few sphere simulations (gapkit.sim) from the same seed, spread over the
cores, and writes record.json (parameters, per-run summaries, traces, snapshots) and PNGs into
out_dir. Any SphereConfig field can be overridden (`--set tau=0.05 --set epochs=200000`), and
`processes` sets the worker count. `quick=True` shrinks the runs to seconds (200 pairs, a few
thousand epochs): the dynamics are the same kind, not the same numbers.

Per-run summary (all epochs are traced epochs, so they are resolved to the trace spacing):
  gap_closed_epoch   first epoch from which the centroid distance stays <= 0.1
  uniform_epoch      first epoch from which both modalities' uniformity stays within 0.05 of the
                     value of a uniform distribution on the sphere (-2.080 on S^2)
  separated_until    last epoch at which a hyperplane still splits the modalities (>= 99 % of
                     the points on their own side): the two rings are disjoint up to here
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapkitError
from ..records import new_record, save_record
from ..typecheck import check_positive
from . import Experiment

GAP_CLOSED = 0.1
UNIFORM_TOL = 0.05
SEPARATED = 0.99
QUICK = {"n": 200, "epochs": 20_000, "traces": 60}


def _configs(variants: list[dict[str, Any]], quick: bool, seed: int, defaults: dict[str, Any],
             overrides: dict[str, Any]) -> list[Any]:
    """One SphereConfig per variant: SphereConfig defaults < experiment defaults < quick < --set
    overrides < the variant's own fields (the variant is what the experiment compares)."""
    from ..sim import SphereConfig

    base = SphereConfig(seed=seed).replace(**defaults)
    if quick:
        base = base.replace(**QUICK)
    base = base.replace(**{k: v for k, v in overrides.items()})
    return [base.replace(**v) for v in variants]


def run_summary(results: dict[str, Any], d: int, steps_per_epoch: int) -> dict[str, Any]:
    """Headline numbers of one run from its results dict (see the module docstring). The *_step
    twins count SGD steps: the paper's "epoch" may well be one step (see docs/reproductions-toy.md)."""
    from ..sim import settled_epoch, uniform_uniformity

    tr = {k: np.asarray(v, dtype=float) for k, v in results["traces"].items()}
    ep = tr["epoch"].astype(np.int64)
    u_star = uniform_uniformity(d)
    uniform = (tr["uniformity_image"] <= u_star + UNIFORM_TOL) & (tr["uniformity_text"] <= u_star + UNIFORM_TOL)
    sep = np.flatnonzero(tr["linear_separation"] >= SEPARATED)
    epochs = {
        "gap_closed_epoch": settled_epoch(ep, tr["centroid_distance"] <= GAP_CLOSED),
        "uniform_epoch": settled_epoch(ep, uniform),
        "separated_until": int(ep[sep[-1]]) if sep.size else None,
    }
    steps = {k.replace("_epoch", "") + "_step" if k.endswith("_epoch") else k + "_step":
             (None if v is None else v * steps_per_epoch) for k, v in epochs.items()}
    return {
        **epochs,
        **steps,
        "initial_centroid_distance": float(tr["centroid_distance"][0]),
        "max_centroid_distance": float(tr["centroid_distance"].max()),
        "final_centroid_distance": float(tr["centroid_distance"][-1]),
        "final_paired_distance": float(tr["paired_distance_mean"][-1]),
        "final_uniformity_image": float(tr["uniformity_image"][-1]),
        "uniform_value": u_star,
        "steps_per_second": results["steps_per_second"],
    }


def _run_all(labels: list[str], configs: list[Any], processes: int) -> dict[str, dict[str, Any]]:
    from ..sim import run_many

    check_positive("processes", processes)
    results = run_many(configs, processes=processes, progress=True)
    out = {}
    for label, res in zip(labels, results):
        rd = res.results_dict()
        rd["params"] = res.config.to_dict()
        rd["summary"] = run_summary(rd, res.config.d, res.config.epoch_steps)
        out[label] = rd
    return out


def _write(out_dir: Path, name: str, runs: dict[str, dict[str, Any]], seed: int, quick: bool,
           summary: dict[str, Any], params: dict[str, Any], figures: list[Path]) -> dict[str, Any]:
    record = new_record("experiment", seed=seed, params={"experiment": name, "quick": quick, **params},
                        results={"runs": runs}, summary=summary,
                        figures=[p.name for p in figures])
    save_record(record, Path(out_dir) / "record.json")
    return record


def _snapshot_figures(out_dir: Path, runs: dict[str, dict[str, Any]], title: str) -> list[Path]:
    from ..report.figures import save_figure
    from ..report.figures.sphere import sphere_snapshots

    paths = []
    for label, rd in runs.items():
        sn = rd["snapshots"]
        fig = sphere_snapshots(sn["epochs"], np.asarray(sn["image"]), np.asarray(sn["text"]),
                               title=f"{label}: {title}")
        paths.append(save_figure(fig, Path(out_dir) / f"snapshots_{_slug(label)}.png"))
    return paths


def _curves_figure(out_dir: Path, runs: dict[str, dict[str, Any]], title: str, name: str = "distances",
                   keys: tuple[str, ...] = ("centroid_distance", "paired_distance_mean",
                                            "cross_distance_mean", "uniformity_image")) -> Path:
    from ..report.figures import save_figure
    from ..report.figures.sphere import distance_curves

    from ..sim import uniform_uniformity

    d = next(iter(runs.values()))["params"]["d"]
    fig = distance_curves({k: v["traces"] for k, v in runs.items()}, keys=keys, title=title,
                          references={"uniformity_image": uniform_uniformity(d)})
    return save_figure(fig, Path(out_dir) / f"{name}.png")


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def _describe(cfg: Any) -> str:
    return (f"{cfg.n} pairs on S^{cfg.d - 1}, batch {cfg.batch}, lr {cfg.lr:g}, tau {cfg.tau:g}, "
            f"spread {cfg.spread:g}, seed {cfg.seed}")


def _compare(name: str, variants: dict[str, dict[str, Any]], defaults: dict[str, Any], out_dir: Path,
             quick: bool, seed: int, overrides: dict[str, Any], processes: int) -> tuple[dict, list, Any]:
    """Run the labelled variants and draw their snapshots and distance curves."""
    configs = _configs(list(variants.values()), quick, seed, defaults, overrides)
    runs = _run_all(list(variants), configs, processes)
    title = _describe(configs[0])
    figs = _snapshot_figures(out_dir, runs, title)
    figs.append(_curves_figure(out_dir, runs, title))
    return runs, figs, configs[0]


#: Shi et al. Fig. 2 / Sec. 4 in the paper's "epochs": CLIP's modalities stay linearly separable
#: beyond 1M and reach uniformity at 2.5M; unimodal SimCLR is uniform before 100k.
SHI_TWO_RINGS_PAPER = {"clip_separated_until": 1_000_000, "clip_uniform": 2_500_000, "simclr_uniform": 100_000}
#: The two readings of Shi's undefined "epoch": a pass over the n pairs at tau 0.1 (gapkit's
#: default), or one SGD step at tau 0.025 (the middle of the 0.02-0.03 range that matches).
READINGS = {"pass": {"tau": 0.1, "epochs": 50_000}, "step": {"tau": 0.025, "epochs": 25_000}}


def shi_two_rings(out_dir: Path, quick: bool = False, seed: int = 0, processes: int = 2,
                  reading: str = "pass", **overrides: Any) -> dict[str, Any]:
    """CLIP vs unimodal NT-Xent (SimCLR) from the same polar init (Shi Fig. 2).

    reading="pass": Shi's "epoch" = one pass over the n pairs (n // batch SGD steps), tau 0.1.
    reading="step": "epoch" = one SGD step, tau 0.025 (50,000 passes = 2.5M steps at n = 1000).
    The summary compares the run, in the reading's unit, with the paper's numbers
    (SHI_TWO_RINGS_PAPER) as ours / paper; 1 is a match.
    """
    if reading not in READINGS:
        raise GapkitError(f"reading must be one of {', '.join(READINGS)}, got '{reading}'")
    variants = {"CLIP": {"loss": "clip"}, "SimCLR (unimodal NT-Xent)": {"loss": "simclr"}}
    defaults = {"init": "polar", "trace_spacing": "log", **READINGS[reading]}
    runs, figs, cfg = _compare("shi-two-rings", variants, defaults, out_dir, quick, seed, overrides, processes)
    clip, simclr = (runs[k]["summary"] for k in variants)
    summary = {
        "clip_gap_closed_epoch": clip["gap_closed_epoch"], "clip_uniform_epoch": clip["uniform_epoch"],
        "clip_separated_until": clip["separated_until"],
        "simclr_gap_closed_epoch": simclr["gap_closed_epoch"], "simclr_uniform_epoch": simclr["uniform_epoch"],
        "simclr_separated_until": simclr["separated_until"],
        "uniform_epoch_ratio_clip_over_simclr": _ratio(clip["uniform_epoch"], simclr["uniform_epoch"]),
        "clip_uniform_step": clip["uniform_step"], "simclr_uniform_step": simclr["uniform_step"],
        "clip_separated_until_step": clip["separated_until_step"],
        "reading": reading, "tau": cfg.tau,
    }
    unit = "_step" if reading == "step" else "_epoch"
    ours = {"clip_separated_until": clip["separated_until" + ("_step" if reading == "step" else "")],
            "clip_uniform": clip["uniform" + unit], "simclr_uniform": simclr["uniform" + unit]}
    for k, paper in SHI_TWO_RINGS_PAPER.items():
        summary[f"{k}_ours_over_paper"] = None if ours[k] is None else round(ours[k] / paper, 3)
    return _write(out_dir, "shi-two-rings", runs, seed, quick, summary,
                  {**defaults, **overrides, "reading": reading}, figs)


def shi_init(out_dir: Path, quick: bool = False, seed: int = 0, processes: int = 2,
             **overrides: Any) -> dict[str, Any]:
    """CLIP from polar, nearby (disjoint and touching caps) and overlapped inits (Shi Fig. 3).

    Narrower caps than the other experiments (spread 0.15, about 12 degrees) so that "nearby" caps
    60 degrees apart are disjoint at the start, as in the paper's figure; at 30 degrees they touch.
    """
    variants = {"polar": {"init": "polar"}, "nearby 60deg": {"init": "nearby", "angle": 60.0},
                "nearby 30deg": {"init": "nearby", "angle": 30.0}, "overlapped": {"init": "overlapped"}}
    defaults = {"loss": "clip", "epochs": 50_000, "trace_spacing": "log", "spread": 0.15}
    runs, figs, cfg = _compare("shi-init", variants, defaults, out_dir, quick, seed, overrides, processes)
    summary = {}
    for k in variants:
        s = runs[k]["summary"]
        key = _slug(k)
        summary[f"{key}_initial_separation"] = round(float(runs[k]["traces"]["linear_separation"][0]), 3)
        summary[f"{key}_gap_closed_epoch"] = s["gap_closed_epoch"]
        summary[f"{key}_max_centroid_distance"] = round(s["max_centroid_distance"], 4)
        summary[f"{key}_separated_until"] = s["separated_until"]
    return _write(out_dir, "shi-init", runs, seed, quick, summary, {**defaults, **overrides}, figs)


def shi_temperature(out_dir: Path, quick: bool = False, seed: int = 0, processes: int = 2,
                    taus: list[float] | None = None, inits: list[str] | None = None,
                    losses: list[str] | None = None, seeds: list[int] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """A sweep of the fixed temperature, from the polar and the nearby init, under the standard
    CLIP loss and under Shi's eq. 7 as printed (Shi Fig. 4 / Sec. 4.4: "lower tau closes the gap
    sooner").

    The default taus span both branches of the standard loss's U (0.01 -> 0.5 and 0.5 -> 10). The
    summary gives, per loss and init, the closing epoch by tau and the direction on each branch
    (Spearman rho of closing epoch vs tau; runs that never close rank last), read two ways:
    `tau` (the paper's axis is the temperature: Shi's claim is rho > 0) and `logit_scale` (the
    axis is s = 1/tau: Shi's claim is then rho < 0 against tau). `seeds` (default [seed]) repeats
    every run per seed; with several seeds the summary gives the median closing epoch per tau and
    each branch's rho per seed. All runs share one schedule, so they run as one compiled batch.
    """
    from ..report.figures import save_figure
    from ..report.figures.sphere import gap_closing_vs_tau

    default_taus = [0.05, 0.1, 0.5, 2.0] if quick else [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
    taus = list(default_taus if taus is None else taus)
    inits = list(["polar", "nearby"] if inits is None else inits)
    losses = list(["clip", "clip_shi_eq7"] if losses is None else losses)
    seeds = list([seed] if seeds is None else seeds)
    if not taus or not inits or not losses or not seeds:
        raise GapkitError("taus, inits, losses and seeds must each list at least one value")
    defaults = {"epochs": 50_000, "trace_spacing": "log"}
    combos = [(loss, init) for loss in losses for init in inits]

    def label(loss: str, init: str, t: float, sd: int) -> str:
        return f"{loss}, {init}, tau={t:g}" + (f", seed={sd}" if len(seeds) > 1 else "")

    grid = [(loss, init, t, sd) for loss, init in combos for t in taus for sd in seeds]
    configs = _configs([{"loss": lo, "init": i, "tau": t, "seed": sd} for lo, i, t, sd in grid],
                       quick, seed, defaults, overrides)
    runs = _run_all([label(*g) for g in grid], configs, processes)
    title = _describe(configs[0]).replace(f"tau {configs[0].tau:g}, ", "")
    if len(seeds) > 1:
        title = title.replace(f"seed {configs[0].seed}", f"{len(seeds)} seeds")
    figs = []
    for loss, init in combos:
        sub = {f"tau = {t:g}": runs[label(loss, init, t, seeds[0])] for t in taus}
        figs.append(_curves_figure(out_dir, sub, f"{loss}, {init} init: {title}", name=f"distances_{loss}_{init}",
                                   keys=("centroid_distance", "paired_distance_mean", "uniformity_image")))
    closed = {(loss, init, sd): [runs[label(loss, init, t, sd)]["summary"]["gap_closed_epoch"] for t in taus]
              for loss, init in combos for sd in seeds}
    medians = {f"{loss}, {init}": [_median_epoch([closed[(loss, init, sd)][k] for sd in seeds]) for k in range(len(taus))]
               for loss, init in combos}
    figs.append(save_figure(gap_closing_vs_tau(taus, medians, configs[0].epochs, title=title),
                            Path(out_dir) / "gap_closed_vs_tau.png"))
    summary: dict[str, Any] = {}
    for loss, init in combos:
        key = f"{loss}_{init}"
        summary[f"{key}_gap_closed_epoch_by_tau"] = dict(zip([f"{t:g}" for t in taus], medians[f"{loss}, {init}"]))
        for branch, (lo, hi) in {"low": (0.0, 0.5), "high": (0.5, math.inf)}.items():
            rhos = [closing_trend(taus, closed[(loss, init, sd)], lo, hi) for sd in seeds]
            summary[f"{key}_{branch}_tau_rho"] = rhos[0] if len(seeds) == 1 else rhos
            summary[f"{key}_{branch}_tau_direction"] = trend_words(_median_rho(rhos))
    return _write(out_dir, "shi-temperature", runs, seed, quick, summary,
                  {**defaults, **overrides, "taus": taus, "inits": inits, "losses": losses, "seeds": seeds}, figs)


def _median_epoch(values: list[int | None]) -> int | None:
    """Median closing epoch over seeds, a run that never closed counting as infinitely late
    (None when at least half never closed)."""
    v = sorted(math.inf if x is None else x for x in values)
    m = float(np.median(v)) if not math.isinf(v[(len(v) - 1) // 2 + (len(v) % 2 == 0)]) else math.inf
    return None if math.isinf(m) else int(round(m))


def _median_rho(rhos: list[float | None]) -> float | None:
    vals = [r for r in rhos if r is not None]
    return float(np.median(vals)) if vals else None


def closing_trend(taus: list[float], closed: list[int | None], lo: float, hi: float) -> float | None:
    """Spearman rho between tau and the closing epoch over taus in [lo, hi] (a run that never
    closed ranks after every run that did, ties among them share a rank); None with < 3 taus or
    when every run in the branch failed to close."""
    from scipy.stats import spearmanr

    pts = [(t, math.inf if c is None else c) for t, c in zip(taus, closed) if lo <= t <= hi]
    if len(pts) < 3 or all(math.isinf(c) for _, c in pts):
        return None
    t, c = zip(*pts)
    big = max(v for v in c if not math.isinf(v)) * 10.0 + 1.0  # a finite stand-in rank for "never"
    rho = spearmanr(t, [big if math.isinf(v) else v for v in c]).statistic
    return None if not math.isfinite(rho) else round(float(rho), 3)


def trend_words(rho: float | None) -> str:
    """Plain words for the direction of closing time in tau (|rho| >= 0.8 counts as monotone)."""
    if rho is None:
        return "undetermined"
    if rho >= 0.8:
        return "closes sooner at lower tau (Shi's reading)"
    if rho <= -0.8:
        return "closes sooner at higher tau (opposite; Shi's direction under the logit-scale reading)"
    return "no monotone trend"


def shi_slip(out_dir: Path, quick: bool = False, seed: int = 0, processes: int = 2,
             **overrides: Any) -> dict[str, Any]:
    """SLIP (CLIP + SimCLR on jittered image views) vs CLIP from the same polar init (Shi App. D)."""
    variants = {"CLIP": {"loss": "clip"}, "SLIP": {"loss": "slip"}}
    defaults = {"init": "polar", "epochs": 50_000, "trace_spacing": "log"}
    runs, figs, cfg = _compare("shi-slip", variants, defaults, out_dir, quick, seed, overrides, processes)
    clip, slip = runs["CLIP"]["summary"], runs["SLIP"]["summary"]
    summary = {
        "clip_gap_closed_epoch": clip["gap_closed_epoch"], "slip_gap_closed_epoch": slip["gap_closed_epoch"],
        "clip_uniform_epoch": clip["uniform_epoch"], "slip_uniform_epoch": slip["uniform_epoch"],
        "gap_closed_ratio_clip_over_slip": _ratio(clip["gap_closed_epoch"], slip["gap_closed_epoch"]),
        "slip_sigma": cfg.slip_sigma,
    }
    return _write(out_dir, "shi-slip", runs, seed, quick, summary, {**defaults, **overrides}, figs)


def _ratio(a: int | None, b: int | None) -> float | None:
    return round(a / b, 2) if a and b else None


EXPERIMENTS = {
    "shi-two-rings": Experiment(
        "shi-two-rings", shi_two_rings,
        "CLIP vs unimodal NT-Xent on a sphere from a polar init: two rings, then uniformity",
        "Shi et al., Fig. 2"),
    "shi-init": Experiment(
        "shi-init", shi_init, "CLIP from polar, nearby and overlapped inits: only overlap avoids the gap",
        "Shi et al., Fig. 3"),
    "shi-temperature": Experiment(
        "shi-temperature", shi_temperature, "fixed-temperature sweep: how fast the gap closes",
        "Shi et al., Fig. 4"),
    "shi-slip": Experiment(
        "shi-slip", shi_slip, "SLIP vs CLIP from the same polar init", "Shi et al., App. D / Fig. 6"),
}
