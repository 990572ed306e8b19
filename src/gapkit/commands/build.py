"""`gapkit build`: aggregate evaluation records into one CSV table (one row per record)."""
from __future__ import annotations

import argparse

HELP = "aggregate evaluation records (JSON files or folders of them) into one CSV table"
DESCRIPTION = """Aggregate evaluation records into one CSV (as CLIP_benchmark's build step).

Columns: model, dataset, task, fixer, pretrained, source, then every metric key found in any
record (empty where a record lacks it). Folders are searched recursively for *.json records of
kind "evaluate"; other JSON files in folders are skipped, named files must be records.
example:
  gapkit build results/ extra.json --out table.csv
"""

ID_COLUMNS = ("model", "dataset", "task", "fixer", "pretrained", "source")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="+", metavar="RECORD", help="record files or folders")
    p.add_argument("--out", required=True, metavar="PATH", help="CSV output path, or - for stdout")


def collect(paths: list[str]) -> list[dict]:
    """Rows (flat dicts) of every evaluation record under `paths`, in path order."""
    from pathlib import Path

    from ..errors import GapkitError
    from ..records import load_record

    rows = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files, strict = sorted(p.rglob("*.json")), False
        elif p.is_file():
            files, strict = [p], True
        else:
            raise GapkitError(f"not found: {p}")
        for f in files:
            try:
                rec = load_record(f)
            except GapkitError:
                if strict:
                    raise
                continue
            metrics = rec.get("metrics")
            if rec.get("kind") != "evaluate" or not isinstance(metrics, dict):
                if strict:
                    raise GapkitError(f"{f}: not an evaluation record (no 'metrics')")
                continue
            row = {k: rec.get(k) for k in ID_COLUMNS[:-1]}
            row["source"] = str(f)
            # a metric may not overwrite an identifying column (a record naming a metric "model")
            row.update({(f"metric_{k}" if k in ID_COLUMNS else str(k)): v for k, v in metrics.items()
                        if not isinstance(v, (dict, list))})
            rows.append(row)
    if not rows:
        raise GapkitError("no evaluation records found")
    return rows


def to_csv(rows: list[dict]) -> str:
    import csv
    import io

    metric_cols = sorted({k for r in rows for k in r} - set(ID_COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ID_COLUMNS) + metric_cols, restval="", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    return buf.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): text cells
# that do get a leading apostrophe, which spreadsheets show as text. Numbers are written as numbers.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(FORMULA_START):
        return "'" + v
    return v


def run(args: argparse.Namespace) -> int:
    import sys

    from ..atomic import write_text_atomic

    from ._common import ensure_output_differs

    ensure_output_differs(args.out, args.records)
    text = to_csv(collect(args.records))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(args.out, text)
    return 0
