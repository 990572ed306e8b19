"""The report section of a `gapkit study` record: the comparison table (each arm's value with its
95 % CI, each fixer's paired difference from raw with its CI), the warnings, the evidence and,
last, the plain recommendation."""
from __future__ import annotations

from typing import Any

from .collect import Loaded
from .html import _section as section
from .html import esc

COLUMNS = {"mixed_ndcg@10": "mixed NDCG@10", "mixed_image_share@10": "image share of mixed top 10",
           "t2i_recall@1": "text->image R@1", "i2t_recall@1": "image->text R@1", "zero_shot_acc1": "zero-shot acc.",
           "heldout_centroid_distance": "held-out centroid distance"}


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if not isinstance(v, (int, float)):
        return "<td></td>"
    txt = f"{v:.3f}"
    if f"{key}_ci_low" in row:
        txt += f"<br><span class='ci'>[{row[key + '_ci_low']:.3f}, {row[key + '_ci_high']:.3f}]</span>"
    if f"{key}_diff" in row:
        d, lo, hi = row[f"{key}_diff"], row[f"{key}_diff_ci_low"], row[f"{key}_diff_ci_high"]
        cls = "better" if lo > 0 else "worse" if hi < 0 else "same"
        txt += f"<br><span class='diff {cls}'>vs raw {d:+.3f} [{lo:+.3f}, {hi:+.3f}]</span>"
    return f"<td class='num'>{txt}</td>"


def study_table(rec: dict[str, Any]) -> str:
    table = rec["results"].get("table") or {}
    cols = [k for k in COLUMNS if any(k in row for row in table.values())]
    head = "".join(f"<th>{esc(COLUMNS[k])}</th>" for k in cols)
    rows = "".join(f"<tr><th>{esc(arm)}</th>{''.join(_cell(row, k) for k in cols)}</tr>" for arm, row in table.items())
    return (f"<div class='scroll'><table><tr><th>arm ({esc(rec.get('model'))}, {esc(rec.get('dataset'))})</th>"
            f"{head}</tr>{rows}</table></div>")


def study_section(records: list[Loaded]) -> str:
    """'' when no record is a study."""
    parts = []
    for r in records:
        rec = r.record
        if rec.get("kind") != "study":
            continue
        res = rec["results"]
        body = [f"<h3>{esc(r.title)}</h3>",
                "<p class='note'>Every fixer was fitted on the calibration images only and evaluated on the held-out "
                "images; differences are paired with the raw embeddings on the same queries (95 % CIs: Wilson for "
                "recall, BCa bootstrap over queries for means and differences).</p>", study_table(rec)]
        if res.get("warnings"):
            body.append("<ul class='warnings'>" + "".join(f"<li>Warning: {esc(w)}</li>" for w in res["warnings"]) + "</ul>")
        if res.get("evidence"):
            body.append("<h4>Evidence per fixer</h4><ul>" + "".join(f"<li>{esc(e)}</li>" for e in res["evidence"]) + "</ul>")
        body.append(f"<p class='recommendation'><b>Recommendation:</b> {esc(res.get('recommendation'))}</p>")
        parts.append("".join(body))
    return section("study", "Which fixer, and did it help?", "".join(parts)) if parts else ""
