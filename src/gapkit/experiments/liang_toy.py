"""Liang et al.'s toy experiments ("Mind the Gap", NeurIPS 2022): the mismatched-data loss
landscape (Fig. 3e-g, Supp. Fig. 9) and the cone effect of random MLPs (Fig. 2b).

Both are deterministic given the seed and cheap; `quick=True` uses a coarser d_theta grid and a
smaller MLP (256 inputs of dimension 128, 12 layers) so the tests run in about a second.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapkitError
from ..records import new_record, save_record
from ..typecheck import check_positive
from . import Experiment


def liang_mismatch(out_dir: Path, quick: bool = False, seed: int = 0,
                   scales: list[float] | None = None, step: float | None = None) -> dict[str, Any]:
    """CLIP loss vs the texts' latitude shift d_theta, with and without the swapped pair."""
    from ..report.figures import save_figure
    from ..report.figures.sphere import mismatch_landscape as landscape_figure
    from ..sim.landscape import LIANG_SCALES, mismatch_landscape, optimal_dtheta

    scales = [float(s) for s in (LIANG_SCALES if scales is None else scales)]
    if not scales:
        raise GapkitError("scales must list at least one logit scale")
    for s in scales:
        check_positive("each of scales", s)
    step = float(step if step is not None else (1.0 if quick else 0.25))
    if not 0 < step <= 90:
        raise GapkitError(f"step must be in (0, 90] degrees, got {step}")
    grid = np.linspace(-90.0, 90.0, int(round(180.0 / step)) + 1)
    curves, optimum = {}, {}
    for setting, mismatch in (("with mismatch", True), ("without mismatch", False)):
        dthetas, losses = mismatch_landscape(tuple(scales), grid, mismatch=mismatch)
        curves[setting] = {s: losses[r] for r, s in enumerate(scales)}
        optimum[setting] = {f"{s:g}": optimal_dtheta(dthetas, losses[r]) for r, s in enumerate(scales)}
    fig = landscape_figure(grid, curves, title="Liang Fig. 3e-g / Supp. Fig. 9: 6 pairs on S^2")
    figs = [save_figure(fig, Path(out_dir) / "mismatch_landscape.png")]
    summary = {f"optimal_abs_dtheta_{'mismatch' if k == 'with mismatch' else 'no_mismatch'}": v
               for k, v in optimum.items()}
    results = {"dtheta": grid.tolist(),
               "losses": {k: {f"{s:g}": c.tolist() for s, c in v.items()} for k, v in curves.items()},
               "optimal_abs_dtheta": optimum}
    record = new_record("experiment", seed=seed, params={"experiment": "liang-mismatch", "quick": quick,
                                                         "scales": scales, "step_deg": step},
                        results=results, summary=summary, figures=[p.name for p in figs])
    save_record(record, Path(out_dir) / "record.json")
    return record


def liang_cone_mlp(out_dir: Path, quick: bool = False, seed: int = 0, n: int | None = None,
                   dim: int | None = None, depth: int | None = None, repeats: int | None = None,
                   activations: list[str] | None = None) -> dict[str, Any]:
    """Mean off-diagonal cosine vs depth of random MLPs, per activation (mean +- s.d. over repeats)."""
    from ..report.figures import save_figure
    from ..report.figures.sphere import cone_depth
    from ..sim.cone import ACTIVATIONS, cone_curve

    n = n if n is not None else (256 if quick else 1024)
    dim = dim if dim is not None else (128 if quick else 512)
    depth = depth if depth is not None else (12 if quick else 25)
    repeats = repeats if repeats is not None else (1 if quick else 3)
    activations = list(ACTIVATIONS if activations is None else activations)
    check_positive("repeats", repeats)  # n, dim, depth are checked by cone_curve
    if not activations:
        raise GapkitError("activations must list at least one activation")
    curves = {a: np.array([cone_curve(a, n=n, dim=dim, depth=depth, seed=seed + r) for r in range(repeats)])
              for a in activations}
    mean = {a: c.mean(0) for a, c in curves.items()}
    sd = {a: c.std(0) for a, c in curves.items()}
    fig = cone_depth(list(range(depth + 1)), mean, sd if repeats > 1 else None,
                     title=f"Liang Fig. 2b: {n} N(0, I) inputs, Linear({dim}, {dim}) layers, {repeats} seed(s)")
    figs = [save_figure(fig, Path(out_dir) / "cone_vs_depth.png")]
    at = [k for k in (1, 2, 5, 10, depth) if k <= depth]
    summary = {f"{a}_cos_at_depth": {str(k): round(float(mean[a][k]), 4) for k in at} for a in activations}
    results = {"depth": list(range(depth + 1)), "mean_cosine": {a: m.tolist() for a, m in mean.items()},
               "sd_cosine": {a: s.tolist() for a, s in sd.items()},
               "per_seed": {a: c.tolist() for a, c in curves.items()}}
    record = new_record("experiment", seed=seed, params={"experiment": "liang-cone-mlp", "quick": quick, "n": n,
                                                         "dim": dim, "depth": depth, "repeats": repeats,
                                                         "activations": activations},
                        results=results, summary=summary, figures=[p.name for p in figs])
    save_record(record, Path(out_dir) / "record.json")
    return record


EXPERIMENTS = {
    "liang-mismatch": Experiment(
        "liang-mismatch", liang_mismatch,
        "6-pair loss landscape vs text latitude shift, with/without one swapped pair, s in {1,5,35,50,100}",
        "Liang et al., Fig. 3e-g and Supp. Fig. 9"),
    "liang-cone-mlp": Experiment(
        "liang-cone-mlp", liang_cone_mlp,
        "mean cosine vs depth of random MLPs for each activation (the cone effect)",
        "Liang et al., Fig. 2b"),
}
