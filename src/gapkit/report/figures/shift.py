"""Figures of the post-hoc experiments: the shift loss landscape, metric-vs-gap curves, fixer bars.

Every function takes the `results` dict of a saved record (never recomputes) and returns a Figure.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._style import COLORS, legend_below, new_figure

LABELS = {
    "t2i_recall@1": "text→image R@1",
    "i2t_recall@1": "image→text R@1",
    "t2i_recall@5": "text→image R@5",
    "i2t_recall@5": "image→text R@5",
    "mixed_ndcg@10": "mixed corpus NDCG@10",
    "mixed_recall@10": "mixed corpus R@10",
    "mixed_image_share@10": "image share of mixed top-10",
    "centroid_gap": "centroid gap",
    "acc1": "zero-shot top-1 accuracy",
    "mean_per_class_recall": "zero-shot mean per-class recall",
}


def _tau_label(t: str) -> str:
    v = float(t)
    return "τ = 1" if v == 1 else f"τ = 1/{round(1 / v)}"


def landscape_figure(results: dict[str, Any], title: str = "Embedding-shift loss landscape") -> Any:
    """Liang Fig. 3b-d: symmetric CLIP loss vs signed remaining gap, one panel per temperature.

    Solid: symmetric shift (both sides by lam/2); dashed: image-only shift. The model's own gap is
    the dotted vertical line, the loss minimum of the symmetric shift a filled dot.
    """
    taus = list(results["symmetric"]["loss"])
    ncols = 3
    nrows = -(-len(taus) // ncols)
    fig, axes = new_figure(ncols, nrows, width=3.6, height=2.9)
    raw = results["raw_gap"]
    for ax, t in zip(axes.flat, taus):
        for key, style, label in (("symmetric", "-", "both sides (λ/2 each)"), ("image_only", "--", "image only")):
            gap = np.asarray(results[key]["signed_gap"])
            loss = np.asarray(results[key]["loss"][t])
            order = np.argsort(gap)
            ax.plot(gap[order], loss[order], style, color=COLORS["text"] if key == "symmetric" else COLORS["image"],
                    lw=1.6, label=label)
        gap = np.asarray(results["symmetric"]["signed_gap"])
        loss = np.asarray(results["symmetric"]["loss"][t])
        i = int(np.argmin(loss))
        ax.plot(gap[i], loss[i], "o", color=COLORS["accent"], ms=6, zorder=5, label="loss minimum (both sides)")
        ax.axvline(raw, color=COLORS["neutral"], ls=":", lw=1.2, label=f"the model's own gap ({raw:.2f})")
        ax.axvline(0, color=COLORS["pair"], lw=0.8)
        ax.set_title(f"{_tau_label(t)}: minimum at gap {gap[i]:+.2f}")
        ax.set_xlabel("signed remaining gap")
        ax.set_ylabel("symmetric CLIP loss")
    for ax in list(axes.flat)[len(taus):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _grid(n: int, width: float, height: float):
    ncols = min(n, 2)
    fig, axes = new_figure(ncols, -(-n // ncols), width=width, height=height)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def _reference(ax: Any, metric: str, references: dict[str, tuple[float, str]] | None) -> None:
    """A horizontal dash-dot line for a metric's modality-blind reference value, if given."""
    if references and metric in references:
        value, label = references[metric]
        ax.axhline(value, color=COLORS["fused"], ls="-.", lw=1, label=label)


def sweep_figure(curve: dict[str, Any], metrics: Sequence[str], title: str = "Metrics vs remaining gap",
                 references: dict[str, tuple[float, str]] | None = None) -> Any:
    """Each metric as a curve over the signed remaining gap of the shift sweep; the raw model is a
    star, the gap-zero line is grey; `references` adds a labelled horizontal line per metric."""
    fig, axes = _grid(len(metrics), width=4.2, height=3.2)
    pts = curve["points"]
    gap = np.array([p["signed_gap"] for p in pts])
    order = np.argsort(gap)
    raw = curve["raw"]
    for ax, m in zip(axes.flat, metrics):
        vals = np.array([p[m] for p in pts])
        ax.plot(gap[order], vals[order], "-", color=COLORS["text"], lw=1.6, label="shift along gap")
        ax.plot(raw["centroid_gap"], raw[m], "*", color=COLORS["image"], ms=13, zorder=5,
                label=f"raw model ({raw[m]:.3f})")
        best = int(np.argmax(vals))
        ax.plot(gap[best], vals[best], "o", mfc="none", color=COLORS["accent"], ms=8,
                label=f"best {vals[best]:.3f} at gap {gap[best]:+.2f}")
        ax.axvline(0, color=COLORS["pair"], lw=0.8)
        _reference(ax, m, references)
        ax.set_xlabel("signed remaining gap")
        ax.set_title(LABELS.get(m, m))
        legend_below(ax, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fixer_bars(results: dict[str, dict[str, float]], metrics: Sequence[str], title: str = "Fixer comparison",
               references: dict[str, tuple[float, str]] | None = None) -> Any:
    """One panel per metric: a bar per fixer (raw first, in grey) with the raw value as a dashed line."""
    names = ["raw"] + [k for k in results if k != "raw"]
    fig, axes = _grid(len(metrics), width=4.4, height=3.4)
    for ax, m in zip(axes.flat, metrics):
        vals = [results[n].get(m, np.nan) for n in names]
        colors = [COLORS["neutral"]] + [COLORS["accent"]] * (len(names) - 1)
        ax.bar(range(len(names)), vals, color=colors)
        ax.axhline(vals[0], color=COLORS["image"], ls="--", lw=1, label="raw")
        _reference(ax, m, references)
        if references and m in references:  # below the axes: the bars fill the upper left
            legend_below(ax, fontsize=7)
        for i, v in enumerate(vals):
            if np.isfinite(v):
                ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(LABELS.get(m, m))
    fig.suptitle(title)
    fig.tight_layout()
    return fig
