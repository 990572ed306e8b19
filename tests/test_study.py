"""`gapkit study` and the held-out protocol it shares with `evaluate` and the gap-sweep."""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.embeddings import PairedEmbeddings
from gapkit.evaluate import mixed_retrieval
from gapkit.evaluate.protocol import kfold_images, mixed_corpus, split_images

OPENCLIPART = "/usr/share/openclipart/png"
TINY = {"embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def multi_caption(n: int = 30, seed: int = 0) -> PairedEmbeddings:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 8))
    mapping = np.repeat(np.arange(n), rng.integers(1, 4, n))
    return PairedEmbeddings(img, img[mapping] + 0.3 * rng.normal(size=(mapping.size, 8)) + 2.0, mapping)


# ----------------------------------------------------------------------------- protocol
def test_split_images_keeps_every_caption_with_its_image():
    pe = multi_caption()
    calib, test = split_images(pe, 0.5, seed=1)
    assert calib.n_image + test.n_image == pe.n_image and calib.n_text + test.n_text == pe.n_text
    for part in (calib, test):  # every caption row still sits beside its own image row
        own = {tuple(np.round(pe.image[i], 12)) for i in range(pe.n_image)}
        assert all(tuple(np.round(r, 12)) in own for r in part.image)
        src = [int(np.flatnonzero((pe.image == part.image[j]).all(1))[0]) for j in part.mapping]
        for t, i in zip(part.text, src):
            assert any(np.array_equal(t, pe.text[k]) for k in np.flatnonzero(pe.mapping == i))
    seen = np.concatenate([np.flatnonzero((pe.image[:, None] == t.image[None]).all(-1).any(1))
                           for _, t in kfold_images(pe, 3, seed=0)])
    assert np.array_equal(np.sort(seen), np.arange(pe.n_image))  # K folds evaluate every image once


def test_evaluate_and_gap_sweep_share_one_mixed_corpus(tmp_path):
    """The same evaluation pairs give the same mixed NDCG@10 from `gapkit evaluate` and the sweep."""
    from gapkit.embeddings import save_embeddings
    from gapkit.experiments.posthoc import evaluate_pairs

    pe = multi_caption(60)
    x = pe.image / np.linalg.norm(pe.image, axis=1, keepdims=True)
    y = pe.text / np.linalg.norm(pe.text, axis=1, keepdims=True)
    sweep = evaluate_pairs(x, y, ("mixed-retrieval",), seed=0, mapping=pe.mapping)["mixed_ndcg@10"]
    save_embeddings(pe, tmp_path / "e.npz")
    assert main(["evaluate", "--task", "mixed-retrieval", "--embeddings", str(tmp_path / "e.npz"),
                 "--out", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["metrics"]["ndcg@10"] == pytest.approx(sweep)
    assert rec["metrics"]["ndcg@10"] == pytest.approx(mixed_retrieval(mixed_corpus(pe, 0))["ndcg@10"])
    lo, hi = rec["metrics"]["ndcg@10_ci_low"], rec["metrics"]["ndcg@10_ci_high"]
    assert lo <= rec["metrics"]["ndcg@10"] <= hi


# ----------------------------------------------------------------------------- the command
def test_study_on_the_clip_sample(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["study", "--sample", "clip", "--fixers", "center,role-center,procrustes,calibrated",
                 "--n-boot", "100", "--n-perm", "100", "--quiet", "--out", str(out)]) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["model"].startswith("CLIP ViT-B/16") and "COCO" in study["dataset"]
    table = study["results"]["table"]
    assert set(table) == {"raw", "center", "role-center", "procrustes", "calibrated"}
    for arm, row in table.items():
        for key in ("mixed_ndcg@10", "t2i_recall@1"):
            if key in row:
                assert row[f"{key}_ci_low"] <= row[key] <= row[f"{key}_ci_high"]
            if arm != "raw" and f"{key}_diff" in row:
                assert row[f"{key}_diff_ci_low"] <= row[f"{key}_diff"] <= row[f"{key}_diff_ci_high"]
                assert row[f"{key}_diff"] == pytest.approx(row[key] - table["raw"][key])
    # centring closes most of the gap of real CLIP and helps mixed retrieval beyond noise
    assert table["center"]["heldout_centroid_distance"] < 0.3 < table["raw"]["heldout_centroid_distance"]
    assert table["center"]["mixed_ndcg@10_diff_ci_low"] > 0
    rec = study["results"]["recommendation"]
    assert study["results"]["best"] in table and "mixed NDCG@10 +" in rec and "[" in rec
    gap = json.loads((out / "gap" / "record.json").read_text())["results"]
    assert gap["centroid_distance_p_value"] < 0.01 and "centroid_distance_bias" in gap
    page = (out / "report.html").read_text()
    for name in ("CLIP ViT-B/16", "COCO", "role-center", "procrustes", "Recommendation"):
        assert name in page
    assert "unknown" not in page
    # `gapkit build` tables carry the CIs and the paired differences
    assert main(["build", str(out), "--out", str(tmp_path / "t.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert {r["fixer"] for r in rows} == {"", "center", "role-center", "procrustes", "calibrated"}
    center = next(r for r in rows if r["fixer"] == "center")
    assert center["model"].startswith("CLIP") and float(center["mixed_ndcg@10_diff_ci_low"]) > 0


@pytest.mark.parametrize("argv,msg", [
    (["--fixers", "center,bogus"], "unknown fixer"),
    (["--folds", "1"], "folds"),
    (["--n-boot", "3"], "--n-boot"),
])
def test_study_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, msg):
    out = tmp_path / "s"
    assert main(["study", "--sample", "clip", "--quiet", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and not out.exists()


@pytest.mark.skipif(not os.path.isdir(OPENCLIPART), reason="openclipart-png is not installed")
def test_study_on_an_openclipart_subset_with_labels(tmp_path, monkeypatch):
    """Own CSV (openclipart images, category column) through a tiny random-init open_clip model:
    records with CIs, zero-shot from the label column, warnings, and names in every table."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "images").mkdir()
    lines = ["image,caption,category"]
    for cat in ("animals", "food", "plants"):
        files = sorted(f for f in os.listdir(os.path.join(OPENCLIPART, cat))
                       if f.endswith(".png") and os.path.getsize(os.path.join(OPENCLIPART, cat, f)) < 30_000)[:7]
        for f in files:
            shutil.copy(os.path.join(OPENCLIPART, cat, f), tmp_path / "images" / f)
            lines.append(f"images/{f},{f[:-4].replace('_', ' ')},{cat}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "tiny-clip.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "study"
    assert main(["study", "--encoder", f"open_clip:{cfg}", "--dataset", str(tmp_path / "pairs.csv"),
                 "--labels", "category", "--fixers", "center,calibrated", "--n-boot", "100", "--n-perm", "100",
                 "--quiet", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["model"] == "open_clip:tiny-clip" and study["dataset"] == "pairs.csv"
    raw = study["results"]["table"]["raw"]
    assert raw["zero_shot_acc1_ci_low"] <= raw["zero_shot_acc1"] <= raw["zero_shot_acc1_ci_high"]
    assert "zero_shot_acc1_diff" in study["results"]["table"]["center"]
    assert any("held-out images" in w for w in study["results"]["warnings"])  # ~10 images: too few
    page = (out / "report.html").read_text()
    for name in ("open_clip:tiny-clip", "pairs.csv", "center", "calibrated", "Warning"):
        assert name in page
    ev = json.loads((out / "evaluations" / "center.json").read_text())
    assert (ev["model"], ev["dataset"], ev["fixer"], ev["task"]) == ("open_clip:tiny-clip", "pairs.csv", "center",
                                                                     "held-out")
