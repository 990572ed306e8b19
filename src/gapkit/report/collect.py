"""Gather what a report shows from saved records: the records themselves, their figures, and the
gap measurements inside their results.

Conventions for records that want to appear in a report (all optional):
  record["title"]     a short human name for the run (else kind + file name)
  record["figures"]   PNG/SVG paths relative to the record's directory: a list of paths, a list
                      of {"path", "title", "caption"} dicts, or a {title: path} dict
  results dicts that hold gap metrics (a "centroid_distance" key or other known metric keys) are
  listed in the summary table; CIs are read from "<key>_ci" = [low, high] (or {"low", "high"}),
  "<key>_ci_low"/"<key>_ci_high", or a sibling "ci" = {key: [low, high]}.
A run directory contributes every JSON file under it that is a record (has "kind" and "results").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import GapkitError
from ..records import load_record
from .explain import info

FIGURE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg")


@dataclass
class Figure:
    path: Path
    title: str
    caption: str = ""


@dataclass
class Loaded:
    """One record with where it came from (figure paths are relative to `base`)."""
    record: dict[str, Any]
    source: str                     # file path, or "(in memory #k)"
    base: Path
    figures: list[Figure] = field(default_factory=list)

    @property
    def title(self) -> str:
        rec = self.record
        t = rec.get("title")
        if isinstance(t, str) and t.strip():
            return t
        if rec.get("task"):  # evaluation records (CLIP_benchmark style): task, dataset, model
            return " ".join(str(x) for x in (rec["task"], rec.get("dataset") and f"on {rec['dataset']}",
                                             rec.get("model") and f"({rec['model']})") if x)
        name = Path(self.source).stem if Path(self.source).stem != "record" else Path(self.source).parent.name
        return f"{rec.get('kind', 'record')}: {name or self.source}"


@dataclass
class Measurement:
    """One set of gap metrics found in a record: label, {key: value}, {key: (low, high)}."""
    label: str
    values: dict[str, float]
    cis: dict[str, tuple[float, float]]
    record: Loaded


def _is_record(obj: Any) -> bool:
    return not _record_problem(obj)


def _record_problem(obj: Any) -> str:
    """What keeps `obj` from being a record ('' when it is one), for a precise error message."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    missing = [k for k in ("kind", "results") if k not in obj]
    if missing:
        return f"missing {' and '.join(repr(k) for k in missing)}"
    if not isinstance(obj["results"], dict):
        return f"'results' must be a JSON object, got a {type(obj['results']).__name__}"
    return ""


def load_inputs(items: Iterable[Any]) -> list[Loaded]:
    """Records from a mix of record dicts, record JSON files and run directories (searched
    recursively, sorted by path). Raises GapkitError for a missing path or when nothing is found."""
    out: list[Loaded] = []
    for k, item in enumerate(items):
        if isinstance(item, dict):
            if not _is_record(item):
                raise GapkitError(f"input #{k + 1} is a dict but not a record ({_record_problem(item)})")
            out.append(Loaded(item, f"(in memory #{k + 1})", Path.cwd()))
            continue
        p = Path(item)
        if p.is_dir():
            found = [q for q in sorted(p.rglob("*.json")) if not any(s.startswith(".") for s in q.relative_to(p).parts)]
            recs = [(q, _read_json(q)) for q in found]
            recs = [(q, r) for q, r in recs if _is_record(r)]
            if not recs:
                raise GapkitError(f"{p}: no gapkit records (JSON with 'kind' and 'results') in this directory")
            out.extend(Loaded(r, str(q), q.parent) for q, r in recs)
        elif p.is_file():
            rec = load_record(p)
            if not _is_record(rec):
                raise GapkitError(f"{p}: not a gapkit record ({_record_problem(rec)})")
            out.append(Loaded(rec, str(p), p.parent))
        else:
            raise GapkitError(f"record or run directory not found: {p}")
    if not out:
        raise GapkitError("no records given")
    # Pipeline order: records by creation time (ISO strings sort in time order), then by path.
    out.sort(key=lambda r: (str(r.record.get("created") or ""), r.source))
    for loaded in out:
        loaded.figures = record_figures(loaded)
    return out


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError):
        return None  # not every JSON file in a run directory is a record (configs, fixer params)


def record_figures(loaded: Loaded) -> list[Figure]:
    """The figures a record references, resolved against its directory; a missing file is an error."""
    spec = loaded.record.get("figures")
    if spec is None:
        return []
    entries: list[tuple[str, str, str]] = []  # (path, title, caption)
    if isinstance(spec, dict):
        entries = [(str(v), str(k), "") for k, v in spec.items()]
    elif isinstance(spec, list):
        for e in spec:
            if isinstance(e, dict) and "path" in e:
                entries.append((str(e["path"]), str(e.get("title") or Path(str(e["path"])).stem),
                                str(e.get("caption") or "")))
            elif isinstance(e, str):
                entries.append((e, Path(e).stem.replace("_", " "), ""))
            else:
                raise GapkitError(f"{loaded.source}: bad figure entry {e!r:.80}")
    else:
        raise GapkitError(f"{loaded.source}: 'figures' must be a list or a dict")
    figs = []
    base = Path(loaded.base).resolve()
    for path, title, caption in entries:
        p = (base / path).resolve()  # an absolute `path` stays absolute here and is refused below
        if p != base and base not in p.parents:
            # a record is data, not instructions: it may only show figures inside its own folder
            raise GapkitError(f"{loaded.source}: figure '{path}' lies outside the record's folder {base}; "
                              "only figures inside it are embedded")
        if p.suffix.lower() not in FIGURE_SUFFIXES:
            raise GapkitError(f"{loaded.source}: figure '{path}' is not an image ({', '.join(FIGURE_SUFFIXES)})")
        if not p.is_file():
            raise GapkitError(f"{loaded.source}: figure file not found: {p}")
        figs.append(Figure(p, title, caption))
    return figs


# ------------------------------------------------------------------------------ measurements
def _is_metric_key(key: str) -> bool:
    return info(key) is not None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _ci_of(d: dict[str, Any], key: str) -> tuple[float, float] | None:
    cand = d.get(f"{key}_ci")
    if cand is None and isinstance(d.get("ci"), dict):
        cand = d["ci"].get(key)
    if isinstance(cand, dict):
        cand = (cand.get("low"), cand.get("high"))
    if cand is None and f"{key}_ci_low" in d:
        cand = (d.get(f"{key}_ci_low"), d.get(f"{key}_ci_high"))
    if isinstance(cand, (list, tuple)) and len(cand) == 2:
        lo, hi = _number(cand[0]), _number(cand[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


# Results subtrees that are not gap measurements of an embedding set (they get their own sections).
NOT_MEASUREMENTS = ("ci", "stages", "fixers", "evaluation")


def _walk(d: dict[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    yield path, d
    for k, v in d.items():
        if isinstance(v, dict) and k not in NOT_MEASUREMENTS:
            yield from _walk(v, path + (str(k),))


def measurements(records: list[Loaded]) -> list[Measurement]:
    """Every results dict (at any depth) holding at least two known gap-metric numbers."""
    out = []
    for loaded in records:
        for path, d in _walk(loaded.record["results"], ()):
            values = {k: _number(v) for k, v in d.items() if _is_metric_key(str(k))}
            values = {k: v for k, v in values.items() if v is not None}
            if len(values) < 2:
                continue
            cis = {k: ci for k in values if (ci := _ci_of(d, k)) is not None}
            label = f"{loaded.title} / {' / '.join(path)}" if path else loaded.title
            out.append(Measurement(label, values, cis, loaded))
    return out


# Columns of the summary table, in this order when present (others go to the per-record tables).
SUMMARY_KEYS = ("centroid_distance", "paired_cosine_mean", "rmg", "linear_separability",
                "i2t_recall@1", "t2i_recall@1")


def figure_entries(figs: Iterable[Figure], base: str | Path) -> list[dict[str, str]]:
    """The JSON form of figures for record["figures"]: paths relative to the record's directory."""
    b = Path(base).resolve()
    out = []
    for f in figs:
        p = Path(f.path).resolve()
        rel = p.relative_to(b) if p.is_relative_to(b) else p
        out.append({"path": rel.as_posix(), "title": f.title, "caption": f.caption})
    return out
