"""Small fixes from issue 12: --root for absolute paths and symlinks, measure --help families,
save_heads after fit_heads, one-line summaries of measure/evaluate --out, role-center's fit."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gapkit.cli import main
from gapkit.data.readers import read_csv
from gapkit.errors import GapkitError


@pytest.fixture
def outside(tmp_path):
    """Images in one folder, a CSV in another that names them by absolute path or symlink."""
    imgs = tmp_path / "store"
    imgs.mkdir()
    for name, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (8, 8), rgb).save(imgs / f"{name}.png")
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.png").symlink_to(imgs / "blue.png")
    (data / "pairs.csv").write_text(f"filepath,caption\n{imgs / 'red.png'},a red square\nlink.png,a blue square\n")
    return imgs, data / "pairs.csv"


def test_absolute_paths_and_symlinks_need_a_named_root(outside):
    imgs, csv = outside
    with pytest.raises(GapkitError, match="absolute path .* outside the dataset root.*--root"):
        read_csv(csv)
    ds = read_csv(csv, allow_roots=[imgs])
    assert ds.n_images == 2 and ds.captions == ["a red square", "a blue square"]
    assert np.asarray(ds.image(0))[0, 0].tolist() == [255, 0, 0]
    # a root that does not hold the target still refuses it
    with pytest.raises(GapkitError, match="outside the dataset root"):
        read_csv(csv, allow_roots=[csv.parent])


def test_cli_root_option(outside, tmp_path, capsys):
    imgs, csv = outside
    base = ["embed", "--encoder", "towers", "--dataset", str(csv), "--split", "all", "--quiet",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(base + ["--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--root" in err[0] and not (tmp_path / "e").exists()
    assert main(base + ["--root", str(tmp_path / "missing"), "--out", str(tmp_path / "e")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_measure_help_lists_only_families_it_accepts(capsys):
    from gapkit.metrics import FAMILIES

    with pytest.raises(SystemExit):
        main(["measure", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fam in FAMILIES:
        assert fam in text
    assert "entropy," not in text  # no family of that name (logit_entropy is a key of retrieval)


def test_fit_heads_then_save_heads_round_trips(tmp_path):
    from gapkit.encoders.towers import make_heads, save_heads
    from gapkit.train import fit_heads

    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(16, 12)).astype(np.float32), rng.normal(size=(16, 7)).astype(np.float32)
    heads = fit_heads(img, txt, steps=2, embed_dim=5, batch_size=8)
    save_heads(heads, tmp_path / "h.safetensors")
    loaded = make_heads(str(tmp_path / "h.safetensors"))
    import torch

    with torch.no_grad():
        got = loaded.image(torch.from_numpy(img)).numpy()
    assert np.allclose(got, img @ heads.image_proj.weight.detach().numpy().T, atol=1e-5)


def test_measure_and_evaluate_print_a_summary_with_out(tmp_path, capsys):
    assert main(["measure", "--sample", "clip", "--metrics", "geometry", "--ci", "--null", "--n-boot", "50",
                 "--n-perm", "50", "--out", str(tmp_path / "m.json")]) == 0
    line = capsys.readouterr().out.strip()
    rec = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert line.startswith("gapkit measure: 500 images") and f"{rec['centroid_distance']:.4f}" in line and "(p " in line
    assert main(["evaluate", "--task", "retrieval", "--sample", "clip", "--fixer", "center", "--fit-sample", "clip",
                 "--out", str(tmp_path / "e.json")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("gapkit evaluate: retrieval (center)") and "vs raw" in line


def test_role_center_from_the_cli_fits_query_and_document_roles(tmp_path):
    from gapkit.embeddings import PairedEmbeddings
    from gapkit.evaluate.protocol import fit_fixer, mixed_corpus
    from gapkit.fixers import create_fixer

    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 6))
    mapping = np.repeat(np.arange(40), 3)
    txt = img[mapping] + rng.normal(size=(120, 6))
    pe = PairedEmbeddings(img, txt, mapping)
    rc = fit_fixer(create_fixer("role-center"), pe, seed=0)
    c = mixed_corpus(pe, 0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    q_mean = unit(c.queries).mean(0)
    d_mean = unit(c.docs[c.role_rows("text")]).mean(0)
    assert np.allclose(rc.role_means_[rc.roles_.index("query_text")], q_mean)
    assert np.allclose(rc.role_means_[rc.roles_.index("doc_text")], d_mean)
    assert not np.allclose(q_mean, d_mean)  # so role-center no longer equals center here


def test_cli_records_name_model_dataset_and_fixer_in_the_report(tmp_path, capsys):
    """measure / evaluate / fix on an embed directory: every record and the report say which model,
    which dataset and which fixer; `fix` writes a record the report shows."""
    from gapkit.embeddings import PairedEmbeddings
    from gapkit.encoders.extraction import save_embed_dir
    from gapkit.report.html import build_report

    rng = np.random.default_rng(0)
    z = rng.normal(size=(80, 12))
    for name, shift in (("calib", 0), ("emb", 1)):
        pe = PairedEmbeddings(z + 2 + shift * 0.1, z - 2 + rng.normal(size=z.shape) * 0.3,
                              metadata={"model": "my-clip-b32", "dataset": "my_pairs.tsv", "split": "test"})
        save_embed_dir(pe, tmp_path / name)
    runs = tmp_path / "runs"
    emb, calib = str(tmp_path / "emb"), str(tmp_path / "calib")
    assert main(["measure", "--embeddings", emb, "--metrics", "geometry", "--out", str(runs / "measure.json")]) == 0
    assert main(["evaluate", "--task", "mixed-retrieval", "--embeddings", emb, "--fixer", "center", "--fit", calib,
                 "--out", str(runs / "mixed.json")]) == 0
    assert main(["fix", "--method", "center", "--fit", calib, "--apply", emb, "--out", str(runs / "fixed.npz")]) == 0
    capsys.readouterr()
    fix_rec = json.loads((runs / "fixed.npz.record.json").read_text())
    assert fix_rec["kind"] == "fix" and fix_rec["results"]["fixers"]["center"]["centroid_distance_after"] < 0.2
    ev = json.loads((runs / "mixed.json").read_text())
    assert (ev["model"], ev["dataset"], ev["fixer"]) == ("my-clip-b32", "my_pairs.tsv (test)", "center")
    page = build_report([runs], tmp_path / "r.html", embedding_figures=False).read_text()
    assert "gap of my-clip-b32 on my_pairs.tsv (test)" in page
    assert "mixed-retrieval on my_pairs.tsv (test) (my-clip-b32)" in page
    assert "fix: center fitted on" in page and "Fixer comparison" in page
    assert "unknown" not in page and "measure: measure" not in page
