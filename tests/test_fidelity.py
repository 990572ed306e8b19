"""`gapkit reproduce --summary`: the fidelity table from saved records (statistics against a naive
computation, verdicts, every claim a row, missing runs named, the output never clobbers a user's file)."""
from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from gapkit.cli import main
from gapkit.report import fidelity as F


def test_paired_difference_matches_a_naive_t_interval():
    a, b = [1.0, 2.0, 3.0, 4.5], [1.5, 2.9, 3.2, 5.6]
    d = [y - x for x, y in zip(a, b)]
    n, mean = len(d), sum(d) / len(d)
    sd = (sum((v - mean) ** 2 for v in d) / (n - 1)) ** 0.5
    half = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
    got = F.paired_difference(a, b)
    assert got["mean"] == pytest.approx(mean)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((mean - half, mean + half))
    assert got["mde"] == pytest.approx((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / n ** 0.5)
    assert F.verdict_from_difference(got, +1) == "reproduces"
    assert F.verdict_from_difference(got, -1) == "does not reproduce"
    assert F.verdict_from_difference({"ci_low": -1.0, "ci_high": 2.0}, +1) == "inconclusive"
    assert math.isnan(F.paired_difference([1.0], [2.0])["ci_low"])


def _false_negative_record(random, dup):
    ci = lambda v: {"mean": sum(v) / len(v), "ci_low": 0.0, "ci_high": 1.0, "n": len(v), "values": v}  # noqa: E731
    return {"kind": "experiment", "created": "2026-01-01T00:00:00+00:00", "params": {"experiment": "jina-false-negatives",
            "quick": False}, "results": {"cosine_distance": {"random": ci(random), "duplicates": ci(dup)}}}


@pytest.mark.parametrize("dup_shift, verdict", [(0.05, "reproduces"), (-0.05, "does not reproduce"), (0.0, "inconclusive")])
def test_table_rows_from_records(tmp_path, dup_shift, verdict):
    random = [0.70, 0.74, 0.72, 0.75, 0.71]
    noise = [0.001, -0.002, 0.0015, -0.001, 0.0005] if dup_shift else [0.03, -0.02, 0.01, -0.04, 0.02]
    dup = [r + dup_shift + e for r, e in zip(random, noise)]
    (tmp_path / "jfn.json").write_text(json.dumps(_false_negative_record(random, dup)))
    (tmp_path / "fixer.json").write_text(json.dumps({"format": "gapkit-fixer"}))  # not a record: skipped
    rows = F.build_rows(F.collect_records([tmp_path]))
    assert len(rows) == len(F.CLAIMS)  # every claim has a row
    row = next(r for r in rows if r["claim"].startswith("False negatives"))
    assert row["verdict"] == verdict
    if verdict == "inconclusive":
        assert "detectable at 80 % power" in row["ours"]
    missing = [r for r in rows if r is not row]
    assert all(r["verdict"] == "no record" for r in missing)
    assert all(r["command"] for r in rows)


def test_quick_records_do_not_count(tmp_path):
    rec = _false_negative_record([0.7, 0.8], [0.9, 1.0])
    rec["params"]["quick"] = True
    (tmp_path / "r.json").write_text(json.dumps(rec))
    rows = F.build_rows(F.collect_records([tmp_path]))
    assert next(r for r in rows if r["claim"].startswith("False negatives"))["verdict"] == "no record"


def test_cli_summary_writes_and_never_clobbers_a_users_file(tmp_path, capsys):
    recs = tmp_path / "records"
    recs.mkdir()
    (recs / "a.json").write_text(json.dumps(_false_negative_record([0.7, 0.72, 0.71], [0.74, 0.755, 0.745])))
    out = tmp_path / "fidelity.md"
    assert main(["reproduce", "--summary", "--records", str(recs), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(F.MARKER) and "**reproduces**" in text
    assert main(["reproduce", "--summary", "--records", str(recs), "--out", str(out)]) == 0  # its own file: replaced
    mine = tmp_path / "mine.md"
    mine.write_text("my notes\n")
    assert main(["reproduce", "--summary", "--records", str(recs), "--out", str(mine)]) == 2
    assert mine.read_text() == "my notes\n"
    assert "not overwriting" in capsys.readouterr().err
    assert main(["reproduce", "--summary", "--records", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert main(["reproduce", "shi-init", "--records", str(recs), "--out", str(tmp_path / "x")]) == 2


def test_size_of_the_effect_decides_reproduces_vs_direction_only():
    diff = {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    assert F.verdict_from_difference(diff, +1, paper_effect=0.3) == "reproduces"   # 1.67x
    assert F.verdict_from_difference(diff, +1, paper_effect=0.1) == "direction only"  # 5x
    assert F.verdict_from_difference(diff, -1, paper_effect=-0.3) == "does not reproduce"
