"""One look for every gapkit figure: Agg backend, colours per modality, atomic saving."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...atomic import atomic_path

# Colour per role, used by every figure: images orange, texts blue (as in Liang et al. Fig. 1).
COLORS = {"image": "#e4572e", "text": "#2e86de", "pair": "#b0b0b0", "accent": "#17a589",
          "neutral": "#555555", "fused": "#8e44ad"}


def plt() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend and gapkit's rc settings."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as _plt

    _plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 130, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.25, "legend.frameon": False, "savefig.bbox": "tight",
    })
    return _plt


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0, **kw: Any):
    """(fig, axes) with a size of width x height inches per panel."""
    p = plt()
    return p.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)


def legend_below(ax: Any, ncol: int = 2, **kw: Any) -> Any:
    """A legend under the axes, outside the plotted area, so it never covers data (save_figure
    keeps it in the image with a tight bounding box)."""
    kw.setdefault("fontsize", 7.5)
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False, **kw)


def save_figure(fig: Any, path: str | Path, svg: bool = False) -> Path:
    """Save `fig` as PNG at `path` (suffix forced to .png), plus .svg if asked; close it.
    The bounding box is tight, so legends placed outside the axes are kept."""
    p = Path(path).with_suffix(".png")
    with atomic_path(p) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    if svg:
        with atomic_path(p.with_suffix(".svg")) as tmp:
            fig.savefig(tmp, format="svg", bbox_inches="tight")
    plt().close(fig)
    return p
