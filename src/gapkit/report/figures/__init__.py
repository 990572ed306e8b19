"""Figures, one module per area (embedding geometry, sphere simulations, training, shift/fixers).

Every figure function returns a matplotlib Figure; `save_figure(fig, path)` writes PNG (and SVG
when asked) atomically. Import matplotlib only through `_style.plt()` so the Agg backend is set
and `import gapkit` stays free of matplotlib.
"""
from ._style import COLORS, new_figure, plt, save_figure

__all__ = ["COLORS", "new_figure", "plt", "save_figure"]
