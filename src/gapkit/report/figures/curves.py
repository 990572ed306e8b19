"""Line panels of metrics against one swept quantity: evaluation vs the remaining gap (a shift
sweep, SCIENCE.md section 4: "always as a curve over the gap, never a single point"), and gap /
recall vs temperature (Liang Supp. Fig. 8).

`line_panels(x, panels, xlabel)` draws one panel per entry of `panels` = {panel title: {line label:
values (len(x),)}}; `mark` draws a dashed vertical line (e.g. the raw model's gap) on every panel.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ...errors import GapkitError
from ._style import COLORS, legend_below, new_figure

LINE_COLORS = (COLORS["accent"], COLORS["image"], COLORS["text"], COLORS["fused"], COLORS["neutral"], "#b9770e")


def line_panels(x: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float]]], xlabel: str, *,
                logx: bool = False, mark: float | None = None, mark_label: str = "", title: str | None = None,
                ylabels: Mapping[str, str] | None = None) -> object:
    """Panels of lines sharing the x axis; points are drawn so every measured value is visible."""
    xs = np.asarray(x, dtype=np.float64)
    if not panels:
        raise GapkitError("line_panels: nothing to plot")
    fig, axes = new_figure(ncols=len(panels), width=4.8, height=3.7)
    for ax, (ptitle, lines) in zip(axes[0], panels.items()):
        for k, (label, ys) in enumerate(lines.items()):
            ys = np.asarray(ys, dtype=np.float64)
            if ys.shape != xs.shape:
                raise GapkitError(f"line_panels: '{label}' has {ys.size} values for {xs.size} x values")
            ax.plot(xs, ys, marker="o", ms=4, lw=1.6, color=LINE_COLORS[k % len(LINE_COLORS)], label=label)
        if mark is not None:
            ax.axvline(mark, color=COLORS["neutral"], ls="--", lw=1, label=mark_label or None)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel((ylabels or {}).get(ptitle, ""))
        ax.set_title(ptitle)
        legend_below(ax, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
