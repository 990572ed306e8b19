"""Measure one embedding set for the demo: gap metrics (gapkit.metrics) + the standard figures,
saved as one record with the figures beside it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..embeddings import PairedEmbeddings
from ..records import new_record, save_record
from ..report.collect import figure_entries
from ..report.standard import KINDS, embedding_figures, slug
from .pipeline import require


def gap_metrics(pe: PairedEmbeddings, seed: int = 0, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """gapkit.metrics.measure with bootstrap CIs (raises StageSkipped while metrics are not installed)."""
    mod = require("gapkit.metrics", "measure")
    return dict(mod.measure(pe.image, pe.text, pe.text_to_image, metrics=metrics, ci=True, seed=seed))


def measure_set(pe: PairedEmbeddings, name: str, out_dir: Path, *, seed: int = 0,
                methods: Sequence[str] = ("pca",), which: Sequence[str] = KINDS, with_metrics: bool = True,
                metrics: Sequence[str] | None = None, inputs: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write out_dir/<slug>/record.json (kind "measure") with metrics and figures; return it.

    When the metrics package is missing the record still carries the figures and says in
    results["metrics_status"] why no numbers are there."""
    d = Path(out_dir) / slug(name)
    figs = embedding_figures(pe, d, name=name, methods=methods, seed=seed, which=which) if which else []
    results: dict[str, Any] = {}
    if with_metrics:
        from .pipeline import StageSkipped

        try:
            results = gap_metrics(pe, seed=seed, metrics=metrics)
        except StageSkipped as exc:
            results = {"metrics_status": f"not measured: {exc}"}
    results.update(extra or {})
    rec = new_record("measure", title=name, seed=seed, results=results,
                     inputs=inputs or {}, params={"n_image": pe.n_image, "n_text": pe.n_text, "dim": pe.dim},
                     figures=figure_entries(figs, d))
    save_record(rec, d / "record.json")
    return rec


def figure_record(d: Path, figures: Sequence[tuple[Any, str, str, str]], *, kind: str = "figure", title: str,
                  seed: int, **fields: Any) -> dict[str, Any]:
    """Save each (matplotlib figure, file name, title, caption) under d and write d/record.json
    referencing them (plus any record fields: params, results, inputs); return the record."""
    from ..report.collect import Figure
    from ..report.figures import save_figure

    figs = [Figure(save_figure(fig, Path(d) / name), ftitle, caption) for fig, name, ftitle, caption in figures]
    fields.setdefault("results", {})
    rec = new_record(kind, title=title, seed=seed, figures=figure_entries(figs, d), **fields)
    save_record(rec, Path(d) / "record.json")
    return rec
