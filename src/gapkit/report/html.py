"""The self-contained HTML gap report, built from saved records only.

`build_report(records_or_run_dirs, html_path)` writes ONE HTML file that needs nothing else to be
viewed: figures are embedded as base64 data URIs, the stylesheet is inlined, fonts are the
system's, and the page has no scripts (a Content-Security-Policy forbids any, as a second line of
defence). Every string that came from data (captions, file names, model names, metric keys,
record values) goes through `esc()`, so a caption `<script>alert(1)</script>` renders as text.

Sections: pipeline stages (when a demo record lists them), the gap at a glance (summary table with
CIs and plain-language explanations), figures, fixer comparison, evaluation, every record's full
results, provenance (model, data, versions, seed, command).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import shlex
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import __version__
from ..atomic import write_text_atomic
from ..errors import GapkitError
from .collect import SUMMARY_KEYS, Figure, Loaded, Measurement, load_inputs, measurements
from .explain import info

# Results keys (and record kinds) whose tables get their own section: key -> (anchor, title, kinds).
SECTION_KEYS = {"fixers": ("fixers", "Fixer comparison", ("fix",)),
                "evaluation": ("evaluation", "Evaluation", ("evaluate", "evaluation"))}
_MAX_LIST = 12      # lists longer than this are summarised, not printed
_MAX_ROWS = 30      # rows of a list-of-dicts table before "... N more"
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n", "image/png"), ".jpg": (b"\xff\xd8", "image/jpeg"),
          ".jpeg": (b"\xff\xd8", "image/jpeg")}


def esc(x: Any) -> str:
    """HTML-escape any value's text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(x), quote=True)


def fmt(v: Any) -> str:
    """Display text of a scalar: floats with 3 decimals (4 significant digits when large or tiny),
    'n/a' for None/NaN."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if v == 0 or 1e-3 <= abs(v) < 1e3:
            return f"{v:.3f}"
        return f"{v:.1e}" if abs(v) < 1e-3 else f"{v:.4g}"
    return str(v)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


# ------------------------------------------------------------------------------ primitives
def _td(v: Any) -> str:
    cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
    return f"<td{cls}>{esc(fmt(v))}</td>"


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th>{_td(v) if _is_scalar(v) else f'<td>{_value_html(v)}</td>'}</tr>"
                   for k, v in d.items())
    return _wrap(f"<table>{rows}</table>")


def _wrap(table: str) -> str:
    """Tables scroll sideways inside their own box instead of widening the page."""
    return f'<div class="scroll">{table}</div>'


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are summarised."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and not all(_is_scalar(x) for x in v):
            out[key] = f"[{len(v)} items]"
        elif isinstance(v, list):
            out[key] = _list_text(v)
        else:
            out[key] = v
    return out


def _matrix_table(d: dict[str, dict[str, Any]], corner: str = "") -> str:
    """Rows = outer keys, columns = the union of the (flattened) inner keys."""
    flat = {k: _flatten(v) for k, v in d.items()}
    cols: list[str] = []
    for row in flat.values():
        cols.extend(c for c in row if c not in cols)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join(f"<tr><th>{esc(r)}</th>{''.join(_td(row.get(c)) for c in cols)}</tr>" for r, row in flat.items())
    return _wrap(f"<table><tr><th>{esc(corner)}</th>{head}</tr>{body}</table>")


def _list_text(v: list[Any]) -> str:
    if len(v) <= _MAX_LIST:
        return ", ".join(fmt(x) for x in v)
    nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
    rng = f"; min {fmt(float(min(nums)))}, max {fmt(float(max(nums)))}" if len(nums) == len(v) else ""
    return f"{len(v)} values: {fmt(v[0])}, {fmt(v[1])}, ..., {fmt(v[-1])}{rng}"


def _value_html(v: Any) -> str:
    """Any JSON value as HTML: tables for dicts and lists of dicts, text for the rest."""
    if _is_scalar(v):
        return esc(fmt(v))
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            rows = {str(i): x for i, x in enumerate(v[:_MAX_ROWS])}
            more = f"<p class='note'>... {len(v) - _MAX_ROWS} more rows</p>" if len(v) > _MAX_ROWS else ""
            return _matrix_table(rows, "#") + more
        return esc(_list_text(v) if all(_is_scalar(x) for x in v) else f"[{len(v)} items]")
    if isinstance(v, dict):
        if v and all(isinstance(x, dict) for x in v.values()):
            return _matrix_table(v)
        return _kv_table(v)
    return esc(fmt(v))


def _data_uri(fig: Figure) -> str:
    """Base64 data URI of a figure file; the bytes must really be that image type."""
    data = fig.path.read_bytes()
    suffix = fig.path.suffix.lower()
    if suffix == ".svg":
        if b"<svg" not in data[:4096]:
            raise GapkitError(f"figure {fig.path} is not an SVG image")
        mime = "image/svg+xml"
    else:
        magic, mime = _MAGIC[suffix]
        if not data.startswith(magic):
            raise GapkitError(f"figure {fig.path} is not a valid {suffix[1:].upper()} image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure_html(fig: Figure) -> str:
    cap = f"<b>{esc(fig.title)}</b>" + (f" {esc(fig.caption)}" if fig.caption else "")
    return (f'<figure><img src="{_data_uri(fig)}" alt="{esc(fig.title)}">'
            f"<figcaption>{cap}</figcaption></figure>")


# -------------------------------------------------------------------------------- sections
def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def _stages_section(records: list[Loaded]) -> str:
    parts = []
    for r in records:
        stages = r.record["results"].get("stages")
        if not isinstance(stages, dict) or not stages:
            continue
        rows = []
        for name, st in stages.items():
            st = st if isinstance(st, dict) else {"status": st}
            status = str(st.get("status", "?"))
            cls = f"status-{status}" if status in ("ran", "skipped", "failed") else ""
            secs = st.get("seconds")
            rows.append(f"<tr><th>{esc(name)}</th><td class='{cls}'>{esc(status)}</td>"
                        f"<td class='num'>{esc(f'{secs:.1f} s' if isinstance(secs, (int, float)) else '')}</td>"
                        f"<td>{esc(st.get('detail', ''))}</td></tr>")
        parts.append(f"<h3>{esc(r.title)}</h3>" + _wrap("<table><tr><th>stage</th><th>status</th><th>time</th>"
                     f"<th>what it did / why it was skipped</th></tr>{''.join(rows)}</table>"))
    if not parts:
        return ""
    note = ("<p class='note'>Which parts of the pipeline ran. A skipped stage says why (for example a "
            "component that is not installed); nothing is left out silently.</p>")
    return _section("stages", "Pipeline stages", note + "".join(parts))


def _summary_section(meas: list[Measurement]) -> str:
    if not meas:
        return _section("summary", "The gap at a glance",
                        "<p class='note'>No gap measurements were found in these records.</p>")
    keys = [k for k in SUMMARY_KEYS if any(k in m.values for m in meas)]
    head = "".join(f"<th>{esc(info(k).label)}</th>" for k in keys)
    rows = []
    for m in meas:
        cells = []
        for k in keys:
            v = m.values.get(k)
            ci = m.cis.get(k)
            ci_txt = f"<span class='ci'>95 % CI [{esc(fmt(ci[0]))}, {esc(fmt(ci[1]))}]</span>" if ci else ""
            if f"{k}_p_value" in m.stats:
                ci_txt += (f"<br><span class='ci'>null 95th pct {esc(fmt(m.stats[k + '_null_p95']))}, "
                           f"p = {esc(fmt(m.stats[k + '_p_value']))}</span>")
            cells.append(f"<td class='num'>{esc(fmt(v))}{'<br>' + ci_txt if ci_txt else ''}</td>")
        rows.append(f"<tr><th>{esc(m.label)}</th>{''.join(cells)}</tr>")
    table = _wrap(f"<table><tr><th>embeddings</th>{head}</tr>{''.join(rows)}</table>")
    return _section("summary", "The gap at a glance", table + _explanations(meas, keys))


def _explanations(meas: list[Measurement], keys: Sequence[str]) -> str:
    """A definition list: what each metric means, and what each measured value says."""
    items = []
    for k in keys:
        meta = info(k)
        verdicts = [f"{esc(m.label)}: {esc(t)}" for m in meas if k in m.values and (t := m.verdict(k))]
        extra = f"<br><span class='verdicts'>{'; '.join(verdicts)}.</span>" if verdicts else ""
        items.append(f"<dt>{esc(meta.label)} <code>{esc(k)}</code></dt><dd>{esc(meta.meaning)} {esc(meta.scale)}{extra}</dd>")
    return f"<h3>What the numbers mean</h3><dl class='explain'>{''.join(items)}</dl>"


def _figures_section(records: list[Loaded]) -> str:
    parts = []
    for r in records:
        if r.figures:
            figs = "".join(_figure_html(f) for f in r.figures)
            summary = r.record.get("summary")
            note = _value_html(summary) if isinstance(summary, dict) and summary else ""
            parts.append(f"<h3>{esc(r.title)}</h3>{note}<div class='figgrid'>{figs}</div>")
    return _section("figures", "Figures", "".join(parts)) if parts else ""


def _find_key(d: dict[str, Any], key: str) -> Iterable[tuple[str, Any]]:
    """(where, value) of every d[..][key] at any depth (the stages table is not searched)."""
    for k, v in d.items():
        if k == key:
            yield k, v
        elif isinstance(v, dict) and k != "stages":
            yield from ((f"{k} / {kk}", vv) for kk, vv in _find_key(v, key))


def _keyed_section(records: list[Loaded], key: str, anchor: str, title: str, kinds: Sequence[str]) -> str:
    """Tables of every results[..][key] and of whole records of the given kinds."""
    parts = []
    for r in records:
        found = list(_find_key(r.record["results"], key))
        for where, v in found:
            sub = f" <small>({esc(where)})</small>" if where != key else ""
            parts.append(f"<h3>{esc(r.title)}{sub}</h3>{_value_html(v)}")
        # a study's per-arm records are shown by the study section (one table, paired differences)
        if not found and r.record.get("kind") in kinds and r.record.get("task") != "held-out":
            parts.append(f"<h3>{esc(r.title)}</h3>{_value_html(r.record['results'])}")
    return _section(anchor, title, "".join(parts)) if parts else ""


def _records_section(records: list[Loaded]) -> str:
    parts = [f"<details><summary>{esc(r.title)}</summary>{_value_html(r.record['results'])}</details>"
             for r in records]
    return _section("results", "All results", "".join(parts))


def _provenance_section(records: list[Loaded]) -> str:
    """One row per record (what, when, seed, file); the command and library versions once when
    every record shares them; each record's inputs and parameters in a collapsible box."""
    def cmd_of(rec: dict[str, Any]) -> str:
        cmd = rec.get("command")
        return shlex.join(map(str, cmd)) if isinstance(cmd, list) else fmt(cmd)

    def versions_of(rec: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items())

    cmds = {cmd_of(r.record) for r in records}
    shared = len(cmds) == 1
    head = "<tr><th>record</th><th>kind</th><th>created</th><th>seed</th><th>file</th>"
    head += "</tr>" if shared else "<th>command</th></tr>"
    rows = []
    for r in records:
        rec = r.record
        cells = [rec.get("kind"), rec.get("created"), rec.get("seed"), r.source]
        extra = "" if shared else f"<td><code>{esc(cmd_of(rec))}</code></td>"
        rows.append(f"<tr><th>{esc(r.title)}</th>{''.join(_td(c) for c in cells)}{extra}</tr>")
    body = _wrap(f"<table>{head}{''.join(rows)}</table>")
    if shared:
        body = f"<p>Command: <code>{esc(cmds.pop())}</code></p>" + body
    versions = sorted({versions_of(r.record) for r in records}, key=len)
    body += f"<p>Library versions: <code>{esc(versions[-1])}</code></p>" if versions else ""
    for r in records:
        sub = "".join(f"<h4>{esc(key)}</h4>{_value_html(r.record[key])}" for key in ("inputs", "params")
                      if r.record.get(key))
        if sub:
            body += f"<details><summary>{esc(r.title)}: inputs and parameters</summary>{sub}</details>"
    return _section("provenance", "Provenance", body)


def _css() -> str:
    return (resources.files("gapkit.report") / "report.css").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- entry points
def render_html(records: list[Loaded], title: str | None = None) -> str:
    """The whole report page as a string (figures must already be resolved on the records)."""
    from .study import study_section

    title = title or "gapkit modality-gap report"
    meas = measurements(records)
    sections = [
        _stages_section(records),
        _summary_section(meas),
        _figures_section(records),
        *(_keyed_section(records, key, *spec) for key, spec in SECTION_KEYS.items()),
        study_section(records),
        _records_section(records),
        _provenance_section(records),
    ]
    sections = [s for s in sections if s]
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in _anchors(sections))
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    lead = ("The <b>modality gap</b>: contrastive image-text models put "
            "<span class='legend-image'>images</span> and <span class='legend-text'>texts</span> in "
            "two separate regions of the embedding space. This report measures how large the gap "
            "is, shows it, and compares ways to close it. "
            f"Built from {len(records)} saved record(s) by gapkit {esc(__version__)} at {esc(now)}.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_css()}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{lead}</p></header><nav>{nav}</nav>"
        f"<main>{''.join(sections)}</main>"
        "<footer>Made with gapkit. Definitions: docs/metrics.md. This file is self-contained: "
        "it embeds its figures and loads nothing from the network.</footer></body></html>\n"
    )


def _anchors(sections: list[str]) -> list[tuple[str, str]]:
    out = []
    for s in sections:
        anchor = s.split('id="', 1)[1].split('"', 1)[0]
        title = s.split("<h2>", 1)[1].split("</h2>", 1)[0]
        out.append((html.unescape(anchor), html.unescape(title)))
    return out


def build_report(records_or_run_dirs: Iterable[Any], html_path: str | Path, *, title: str | None = None,
                 embedding_figures: bool = True) -> Path:
    """Write the report for records (dicts), record JSON files and run directories to `html_path`.

    With `embedding_figures`, a "measure" record that names its embeddings (inputs.sample or
    inputs.embeddings) but carries no figures gets the embedding figures drawn from them
    (projection, cosine histograms, per-dimension gap). Missing figure files or embeddings raise
    GapkitError before anything is written; the file is written atomically.
    """
    records = load_inputs(list(records_or_run_dirs))
    with tempfile.TemporaryDirectory(prefix="gapkit-report-") as tmp:
        if embedding_figures:
            for k, r in enumerate(records):
                if r.record.get("kind") == "measure" and not r.figures:
                    r.figures = _draw_embedding_figures(r, Path(tmp) / f"r{k}")
        page = render_html(records, title)
    out = Path(html_path)
    write_text_atomic(out, page)
    # The temporary file behind the atomic write is private (0600); a report is meant to be shared.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out, 0o666 & ~umask)
    return out


def _draw_embedding_figures(r: Loaded, out_dir: Path) -> list[Figure]:
    """Projection, cosine histograms and per-dimension gap of the embeddings a record names."""
    from ..embeddings import load_embeddings
    from ..samples import load_sample
    from .standard import embedding_figures

    inputs = r.record.get("inputs") or {}
    if inputs.get("sample"):
        pe = load_sample(str(inputs["sample"]))
    elif inputs.get("embeddings") or inputs.get("image"):
        def resolve(p: Any) -> Any:
            if p is None:
                return None
            q = Path(str(p))
            return q if q.is_absolute() or q.exists() else r.base / q
        try:
            pe = load_embeddings(resolve(inputs.get("embeddings")), image=resolve(inputs.get("image")),
                                 text=resolve(inputs.get("text")), text_to_image=resolve(inputs.get("text_to_image")))
        except GapkitError as exc:
            raise GapkitError(f"{r.source}: cannot draw its figures: {exc}") from None
    else:
        return []
    return embedding_figures(pe, out_dir, name=r.title, methods=("pca",))

