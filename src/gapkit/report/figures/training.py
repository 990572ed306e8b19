"""Training figures: gap metrics over training steps (from metrics.jsonl), metrics vs temperature,
and per-arm bars with seed CIs. Every function returns a matplotlib Figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._style import new_figure

LABELS = {
    "centroid_distance": "centroid distance ||mean x - mean y||",
    "paired_cosine_mean": "mean paired cosine (alignment score)",
    "rmg": "relative modality gap (RMG)",
    "linear_separability": "image-vs-text linear separability",
    "zero_shot_accuracy": "zero-shot accuracy",
    "t2i_recall@1": "text->image R@1",
    "i2t_recall@1": "image->text R@1",
    "contrastive_loss": "contrastive loss (mean since last eval)",
    "logit_scale": "logit scale 1/tau",
}


def runs_from_dirs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """[{"arm": label, "rows": metrics.jsonl rows}] for run directories (label = directory name)."""
    from ...train.telemetry import read_metrics

    return [{"arm": (labels[i] if labels else Path(d).name), "rows": read_metrics(Path(d) / "metrics.jsonl")}
            for i, d in enumerate(run_dirs)]


def metric_over_steps(runs: Sequence[Mapping[str, Any]], key: str = "centroid_distance", title: str = "") -> Any:
    """One line per arm: the mean over its seeds of `key` at every eval step (thin lines: seeds)."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.0)
    ax = axes[0, 0]
    colors = _arm_colors([r["arm"] for r in runs])
    for arm, color in colors.items():
        mine = [r["rows"] for r in runs if r["arm"] == arm]
        for rows in mine:
            ax.plot([x["step"] for x in rows], [x.get(key, np.nan) for x in rows], color=color, alpha=0.25, lw=0.8)
        n = min(len(rows) for rows in mine)
        steps = [x["step"] for x in mine[0][:n]]
        mean = np.nanmean([[x.get(key, np.nan) for x in rows[:n]] for rows in mine], axis=0)
        ax.plot(steps, mean, color=color, lw=2, marker="o", ms=3, label=f"{arm} (n={len(mine)})")
    ax.set_xlabel("training step")
    ax.set_ylabel(LABELS.get(key, key))
    ax.set_title(title or LABELS.get(key, key))
    ax.legend()
    return fig


def metric_vs_temperature(summary: Mapping[str, Mapping[str, Mapping[str, float]]], taus: Sequence[float],
                          keys: Sequence[str] = ("centroid_distance", "zero_shot_accuracy")) -> Any:
    """Per-tau means with 95 % CIs (summary[f"tau={tau:.4g}"][key] = {mean, ci_low, ci_high})."""
    fig, axes = new_figure(len(keys), 1, width=4.5, height=3.6)
    for ax, key in zip(axes[0], keys):
        rows = [summary.get(f"tau={t:.4g}", {}).get(key) for t in taus]
        ok = [(t, r) for t, r in zip(taus, rows) if r]
        t = np.array([x[0] for x in ok])
        mean = np.array([x[1]["mean"] for x in ok])
        lo = np.array([x[1]["ci_low"] for x in ok])
        hi = np.array([x[1]["ci_high"] for x in ok])
        ax.plot(t, mean, marker="o", color="#17a589")
        if np.isfinite(lo).all():
            ax.fill_between(t, lo, hi, color="#17a589", alpha=0.2, label="95 % CI over seeds")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel("fixed temperature tau (fine-tuning)")
        ax.set_ylabel(LABELS.get(key, key))
    fig.suptitle("Fine-tuning at a fixed temperature")
    return fig


def arm_bars(summary: Mapping[str, Mapping[str, Mapping[str, float]]], keys: Sequence[str]) -> Any:
    """One panel per metric, one bar per arm: mean over seeds with the 95 % CI as error bar."""
    arms = list(summary)
    fig, axes = new_figure(len(keys), 1, width=3.6, height=3.6)
    colors = _arm_colors(arms)
    for ax, key in zip(axes[0], keys):
        vals = [summary[a].get(key, {}) for a in arms]
        mean = np.array([v.get("mean", np.nan) for v in vals])
        err = np.array([[m - v.get("ci_low", np.nan), v.get("ci_high", np.nan) - m] for m, v in zip(mean, vals)]).T
        ax.bar(range(len(arms)), mean, color=[colors[a] for a in arms],
               yerr=np.where(np.isfinite(err), err, 0), capsize=3)
        for i, v in enumerate(vals):  # the individual seeds, so a wide t-CI of few seeds is read right
            pts = v.get("values") or []
            ax.plot([i] * len(pts), pts, "o", color="black", ms=3, zorder=3)
        ax.set_xticks(range(len(arms)), arms, rotation=35, ha="right", fontsize=8)
        ax.set_title(LABELS.get(key, key), fontsize=9)
    n = max((summary[a].get(k, {}).get("n", 0) for a in arms for k in keys), default=0)
    fig.suptitle(f"bars: mean over seeds, error bars: Student-t 95 % CI, dots: seeds (n = {n})", fontsize=9)
    return fig


def _arm_colors(arms: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    unique = list(dict.fromkeys(arms))
    cmap = matplotlib.colormaps["tab10"]
    return {a: cmap(i % 10) for i, a in enumerate(unique)}
