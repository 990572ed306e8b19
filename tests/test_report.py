"""The HTML report: built from saved records, self-contained, escaped, and clear about bad input."""
from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gapkit.cli import main
from gapkit.errors import GapkitError
from gapkit.records import load_record, new_record, save_record
from gapkit.report import build_report
from gapkit.report.figures import embedding as E
from gapkit.report.figures import save_figure

from .conftest import gapped_pairs

XSS = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Collects what the tests look at: title, tags, table count, img sources, visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.text.append(data)


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def make_run(run: Path, title: str = "toy CLIP", caption: str = "matched vs unmatched") -> Path:
    """A small run directory: one measure record with two figures, one fixer record."""
    x, y = gapped_pairs(n=60, d=8)
    save_figure(E.cosine_histograms(x, y), run / "figs" / "hist.png")
    save_figure(E.gap_dimensions(x, y, top=5), run / "figs" / "dims.png")
    rec = new_record("measure", title=title, seed=3, inputs={"embeddings": "toy.npz"},
                     results={"centroid_distance": 0.82, "centroid_distance_ci": [0.8, 0.84],
                              "paired_cosine_mean": 0.31, "rmg": 0.6, "linear_separability": 1.0},
                     figures=[{"path": "figs/hist.png", "title": "cosines", "caption": caption},
                              "figs/dims.png"])
    save_record(rec, run / "measure.json")
    fix = new_record("fix", title="fixers", results={"fixers": {
        "none": {"centroid_distance": 0.82, "i2t_recall@1": 0.5},
        "mean_centering": {"centroid_distance": 0.01, "i2t_recall@1": 0.55}}})
    save_record(fix, run / "sub" / "fix.json")
    (run / "not_a_record.json").write_text('{"lr": 0.1}')  # configs etc. are ignored
    return run


def test_report_of_a_small_run_is_complete_and_self_contained(tmp_path):
    run = make_run(tmp_path / "run")
    out = build_report([run], tmp_path / "report.html", title="My report")
    page = parse(out)
    assert page.title == "My report"
    assert "script" not in page.tags and "link" not in page.tags  # no scripts, no external CSS
    assert page.tags.count("table") >= 4
    assert len(page.imgs) == 2
    for img in page.imgs:
        assert img["src"].startswith("data:image/png;base64,")  # embedded, nothing fetched
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(page.text)
    assert "0.820" in text and "[0.800, 0.840]" in text      # value with its CI
    assert "large gap" in text                                # plain-language explanation
    assert "mean_centering" in text and "Fixer comparison" in text
    assert "Provenance" in text and "seed" in text
    html = out.read_text()
    assert "http://" not in html and "https://" not in html   # nothing to fetch from the network


def test_report_accepts_record_files_and_dicts(tmp_path):
    run = make_run(tmp_path / "run")
    rec = new_record("evaluate", title="zero-shot", results={"evaluation": {"raw": {"top1": 0.42}}})
    out = build_report([run / "measure.json", rec], tmp_path / "r.html")
    text = " ".join(parse(out).text)
    assert "Evaluation" in text and "0.42" in text


def test_every_string_from_data_is_escaped(tmp_path):
    run = make_run(tmp_path / "run", title=f"model {XSS}", caption=f"caption {XSS}")
    rec = load_record(run / "measure.json")
    rec["results"][f"metric_{XSS}"] = XSS                     # a hostile metric key and value
    rec["params"]["file"] = f'a"b{XSS}.png'
    rec["command"] = ["gapkit", XSS]
    save_record(rec, run / "measure.json")
    out = build_report([run], tmp_path / "report.html")
    page = parse(out)
    assert "script" not in page.tags
    text = "".join(page.text)
    assert text.count(XSS) >= 5                               # rendered as visible text
    assert XSS not in out.read_text()                         # never as markup


def test_missing_figure_is_a_clear_error_and_writes_nothing(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "figs" / "hist.png").unlink()
    target = tmp_path / "report.html"
    with pytest.raises(GapkitError, match=r"figure file not found: .*hist\.png"):
        build_report([run], target)
    assert not target.exists()
    assert main(["report", str(run), "--html", str(target)]) == 2
    assert not target.exists()


def test_corrupt_figure_is_rejected(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "figs" / "dims.png").write_text("<html>not a png</html>")
    with pytest.raises(GapkitError, match="not a valid PNG"):
        build_report([run], tmp_path / "r.html")


def test_measure_record_pointing_at_missing_embeddings_is_a_clear_error(tmp_path):
    rec = new_record("measure", inputs={"embeddings": str(tmp_path / "gone.npz")},
                     results={"centroid_distance": 0.5, "rmg": 0.5})
    save_record(rec, tmp_path / "m.json")
    with pytest.raises(GapkitError, match="gone.npz"):
        build_report([tmp_path / "m.json"], tmp_path / "r.html")


def test_measure_record_of_a_sample_gets_its_figures_drawn(tmp_path):
    rec = new_record("measure", inputs={"sample": "clip"}, results={"centroid_distance": 0.85, "rmg": 0.7})
    save_record(rec, tmp_path / "m.json")
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "m.json"), "--html", str(out)]) == 0
    assert len(parse(out).imgs) == 3


def test_inputs_that_are_not_records_are_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GapkitError, match="no gapkit records"):
        build_report([tmp_path / "empty"], tmp_path / "r.html")
    with pytest.raises(GapkitError, match="not found"):
        build_report([tmp_path / "nope"], tmp_path / "r.html")
    with pytest.raises(GapkitError, match="not a record"):
        build_report([{"a": 1}], tmp_path / "r.html")
