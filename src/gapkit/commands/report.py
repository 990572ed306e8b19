"""`gapkit report RUN_OR_RECORDS... --html report.html`: one self-contained HTML report."""
from __future__ import annotations

import argparse

HELP = "build a self-contained HTML report from run directories and JSON records"
OUTPUT_ARGS = ("html",)
OUTPUTS_IN_INPUT_DIRS = True  # `report run/ --html run/report.html`: the page sits beside the records
DESCRIPTION = """\
Build ONE self-contained HTML file (figures embedded, no network needed to view it) from saved
records: run directories (every gapkit record under them) and/or record JSON files. It shows the
gap metrics with confidence intervals and plain-language explanations, the figures the records
reference, fixer comparisons, evaluation tables and provenance (model, data, versions, seed,
command). Nothing is recomputed except the embedding figures of a `gapkit measure` record that has
none (drawn from the embeddings it names; --no-embedding-figures turns that off).

examples:
  gapkit report runs/demo-20261122-0700 --html report.html
  gapkit measure --sample clip --out clip.json && gapkit report clip.json --html clip.html
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_RECORD", help="run directories and/or record JSON files")
    p.add_argument("--html", required=True, metavar="PATH", help="where to write the report (.html)")
    p.add_argument("--title", default=None, help="page title (default: 'gapkit modality-gap report')")
    p.add_argument("--no-embedding-figures", action="store_true",
                   help="do not draw figures from the embeddings that measure records name")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import GapkitError
    from ..report.html import build_report
    from ._common import ensure_output_differs

    ensure_output_differs(args.html, args.inputs)
    if Path(args.html).suffix.lower() not in (".html", ".htm"):
        # the page may sit in a run folder beside the records, so it must never take a record's name
        raise GapkitError(f"--html {args.html}: the report is an HTML page; give a path ending in .html")

    out = build_report(args.inputs, args.html, title=args.title,
                       embedding_figures=not args.no_embedding_figures)
    print(f"report written: {out}")
    return 0
