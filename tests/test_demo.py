"""`gapkit demo --quick` (the README's first command in its quick form) runs end to end."""
from __future__ import annotations

import json

from gapkit.cli import main

from .test_report import parse


def test_demo_quick_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["demo", "--quick", "--out", str(run)]) == 0
    out = capsys.readouterr()
    assert f"run directory: {run}" in out.out                        # the path is printed at the end
    assert "[1/" in out.err                                           # progress shown
    demo = json.loads((run / "demo.json").read_text())
    stages = demo["results"]["stages"]
    assert stages and all(s["status"] in ("ran", "skipped") for s in stages.values())
    assert all(s["detail"] for s in stages.values() if s["status"] == "skipped")  # a reason for each skip
    # every component is installed in this project, so every stage must have run
    assert {n: s["status"] for n, s in stages.items() if s["status"] != "ran"} == {}
    for name in ("samples", "features", "birth", "tuning", "evaluate", "fixers", "shift_sweep", "report"):
        assert name in stages
    # the measured effect: contrastive tuning closes part of the gap at birth of random heads
    records = {json.loads(p.read_text()).get("title"): json.loads(p.read_text()) for p in run.rglob("record.json")}
    birth = records["Two-tower, random heads (gap at birth)"]["results"]["centroid_distance"]
    tuned = records["Two-tower, heads tuned with CLIP"]["results"]["centroid_distance"]
    assert 0 < tuned < birth
    page = parse(run / "report.html")
    assert page.title.startswith("gapkit demo")
    assert len(page.imgs) >= 3 and all(i["src"].startswith("data:image/png;base64,") for i in page.imgs)
    text = " ".join(page.text)
    for section in ("Pipeline stages", "The gap at a glance", "Which fixer, and did it help?", "Evaluation",
                    "Provenance"):
        assert section in text
    assert "CLIP ViT-B/16" in text


def test_demo_help_explains_own_model_and_data(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for needle in ("--quick", "open_clip", "hf:", "csv", "gapkit report"):
        assert needle.lower() in text.lower()
