"""The training reproductions on diverse captions (gapkit.experiments.diverse): LiT heads on frozen
tower features, paired by seed. The tower features are replaced by a small synthetic two-view
dataset (the real ones are extracted once, minutes of CPU, not in a test); the fit_heads options
they need are tested for the properties they promise."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from gapkit.cli import main
from gapkit.errors import GapkitError
from tests._synthetic_pairs import single_thread
from gapkit.experiments import diverse, get_experiment
from gapkit.report import fidelity as F
from gapkit.train.lit import _batches, fit_heads, init_heads

NAMES = ("alignclip", "jina-false-negatives", "jina-high-temperature", "liang-temperature", "liang-init-amendment")


def synthetic(n_images: int, seed: int) -> diverse.Split:
    """Images with a latent z (6-d): image features z A + noise (24-d), two captions per image
    with text features z B + noise (16-d), so a linear head pair can align them."""
    rng = np.random.default_rng(seed)
    a, b = np.random.default_rng(99).normal(size=(6, 24)), np.random.default_rng(98).normal(size=(6, 16))
    z = rng.normal(size=(n_images, 6))
    t2i = np.repeat(np.arange(n_images), 2)
    img = z @ a + 0.1 * rng.normal(size=(n_images, 24))
    txt = z[t2i] @ b + 0.3 * rng.normal(size=(t2i.size, 16))
    captions = tuple(f"thing{j // 2} colour{j % 5} shape{j % 3} size{j % 4}" for j in range(t2i.size))
    return diverse.Split(img.astype(np.float32), txt.astype(np.float32), t2i, captions)


def bag_of_words(captions):
    """A stand-in text tower: the sum of a fixed random 16-d vector per word."""
    vec = lambda w: np.random.default_rng(zlib.crc32(w.encode())).normal(size=16)  # noqa: E731
    return np.stack([sum(vec(w) for w in c.split()) for c in captions]).astype(np.float32)


@pytest.fixture(autouse=True)
def one_thread():
    yield from single_thread()


@pytest.fixture
def tiny_data(monkeypatch):
    data = (synthetic(64, 0), synthetic(40, 1))
    monkeypatch.setattr(diverse, "load_data", lambda name, quick: data)
    return data


# the smallest non-quick runs (quick records are not read by the fidelity table)
SMALL = {"alignclip": dict(steps=15), "jina-false-negatives": dict(steps=15, batch_size=16),
         "jina-high-temperature": dict(epochs=3, batch_size=32), "liang-temperature": dict(base_steps=15, steps=5,
                                                                                          taus=[0.02, 0.1, 1.0]),
         "liang-init-amendment": dict(steps=15, n_fit=100)}


def test_each_setting_writes_a_record_the_fidelity_table_reads(tmp_path, tiny_data):
    for name in NAMES:
        params = {"data": "emoji+openclipart", "n_seeds": 3, "embed_dim": 8, **SMALL[name]}
        rec = get_experiment(name).run(tmp_path / name, seed=0, **params)
        assert (tmp_path / name / "record.json").is_file()
        assert rec["params"]["data"] == "emoji+openclipart" and rec["params"]["n_seeds"] == 3
        for diff in rec["results"]["paired"].values():  # paired by seed: the difference of the two per-seed lists
            assert diff["seeds"] == [0, 1, 2]
            assert diff["mean"] == pytest.approx(np.mean(np.subtract(diff["other"], diff["base"])))
            assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"] and diff["mde"] >= 0
    rows = F.build_rows(F.collect_records([tmp_path]))
    diverse_rows = [r for r in rows if r["claim"].endswith("(diverse captions)")]
    assert len(diverse_rows) == len(NAMES)
    for r in diverse_rows:
        assert r["verdict"] != "no record", r
        assert "LiT heads on emoji+openclipart" in r["reading"] and "--data emoji+openclipart" in r["command"]
    # the smoke rows do not take the diverse records
    smoke = [r for r in rows if r["command"] in {f"gapkit reproduce {n} --out runs/{n}" for n in NAMES}]
    assert len(smoke) == len(NAMES) and all(r["verdict"] == "no record" for r in smoke)


def test_quick_run_uses_two_seeds_from_the_given_one(tmp_path, tiny_data):
    rec = get_experiment("jina-false-negatives").run(tmp_path, quick=True, seed=3, data="openclipart", embed_dim=8,
                                                     batch_size=16)
    assert rec["params"]["quick"] and rec["params"]["n_seeds"] == 2 and rec["params"]["steps"] == 20
    assert sorted({c["seed"] for c in rec["results"]["curves"]}) == [3, 4]


def test_high_temperature_looks_after_every_epoch(tmp_path, tiny_data):
    train, _ = tiny_data
    rec = get_experiment("jina-high-temperature").run(tmp_path, data="emoji", n_seeds=2, epochs=4, batch_size=32,
                                                      embed_dim=8)
    per_epoch = train.text.shape[0] // 32
    for curve in rec["results"]["curves"]:
        assert [row["step"] for row in curve["rows"]] == [k * per_epoch for k in range(5)]
        if curve["arm"] == "fixed_0.1":
            assert all(row["tau"] == pytest.approx(0.1) for row in curve["rows"])


def test_procrustes_amendment_aligns_the_fit_pairs_at_init(tiny_data):
    train, _ = tiny_data
    h0 = init_heads(24, 16, 8, seed=0)
    amended = diverse.amend(h0, train, n_fit=128, seed=0)

    def mean_paired_cosine(h):
        return float((h.project_image(train.image[train.text_to_image]) * h.project_text(train.text)).sum(1).mean())

    # W = I is one orthogonal W, so the Procrustes optimum pairs at least as well as the original
    assert mean_paired_cosine(amended) > mean_paired_cosine(h0) + 0.05
    assert torch.equal(amended.image_proj.weight, h0.image_proj.weight)
    w = amended.text_proj.weight @ torch.linalg.pinv(h0.text_proj.weight)  # the rotation folded into the head
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-4)


def test_fit_heads_init_tau_and_sampler(tiny_data):
    train, _ = tiny_data
    h0 = init_heads(24, 16, 8, seed=1)
    before = {k: v.clone() for k, v in h0.state_dict().items()}
    h = fit_heads(train.image, train.text, steps=5, seed=1, text_to_image=train.text_to_image, embed_dim=8,
                  batch_size=16, init=h0, tau=0.05, learnable_tau=False)
    assert all(torch.equal(before[k], v) for k, v in h0.state_dict().items())  # init is copied, not trained
    assert 1 / h.scale().item() == pytest.approx(0.05)
    # without init, fit_heads starts from init_heads(seed): same result as passing it
    a = fit_heads(train.image, train.text, steps=5, seed=2, text_to_image=train.text_to_image, embed_dim=8, batch_size=16)
    b = fit_heads(train.image, train.text, steps=5, seed=2, text_to_image=train.text_to_image, embed_dim=8, batch_size=16,
                  init=init_heads(24, 16, 8, seed=2))
    assert torch.equal(a.text_proj.weight, b.text_proj.weight)
    seen = []
    fit_heads(train.image, train.text, steps=4, seed=2, text_to_image=train.text_to_image, embed_dim=8, batch_size=16,
              sampler="duplicates", per_group=4, on_step=lambda k, heads: seen.append(k))
    assert seen == [1, 2, 3, 4]
    with pytest.raises(GapkitError, match="sampler"):
        fit_heads(train.image, train.text, steps=1, text_to_image=train.text_to_image, sampler="bogus")


def test_duplicate_batches_hold_groups_of_one_image():
    t2i = np.repeat(np.arange(20), 3)
    batches = _batches("duplicates", t2i, 16, 4, 0)
    for step in range(3):
        images = t2i[batches.batch(step)].reshape(4, 4)
        assert (images == images[:, :1]).all()  # every group of 4 captions shares its image
        assert len(set(images[:, 0])) == 4  # and the four groups are four images


def test_imsep_needs_semantic_rows_per_caption(tiny_data):
    train, _ = tiny_data
    h = fit_heads(train.image, train.text, loss="imsep", steps=3, text_to_image=train.text_to_image, embed_dim=8,
                  batch_size=16, semantic=train.text)
    assert np.isfinite(h.project_text(train.text)).all()
    with pytest.raises(GapkitError, match="semantic"):
        fit_heads(train.image, train.text, loss="imsep", steps=1, text_to_image=train.text_to_image,
                  semantic=train.text[:5])


@pytest.mark.parametrize("args, message", [
    (["alignclip", "--data", "bogus"], "data must be"),
    (["alignclip", "--data", "emoji", "--set", "data=emoji"], "once"),
    (["alignclip", "--data", "emoji", "--set", "arms=[\"clip\"]"], "unknown parameter"),
    (["shi-init", "--data", "emoji"], "unknown"),
    (["jina-high-temperature", "--data", "emoji", "--set", "epochs=0"], "epochs must be > 0"),
    (["liang-temperature", "--data", "emoji", "--set", "base_steps=-1"], "base_steps must be > 0"),
])
def test_cli_bad_data_is_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["reproduce", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_committed_diverse_records_are_read(tmp_path):
    """docs/results/training/*-diverse.json (the committed runs) each give their row a verdict."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "docs" / "results" / "training"
    files = sorted(root.glob("*-diverse.json"))
    if not files:
        pytest.skip("no committed diverse records")
    rows = F.build_rows(F.collect_records(files))
    for f in files:
        name = json.loads(f.read_text())["params"]["experiment"]
        row = next(r for r in rows if r["command"].startswith(f"gapkit reproduce {name} --data emoji+openclipart"))
        assert row["verdict"] != "no record", (f.name, row["ours"])


def test_truncation_keeps_the_first_quarter_of_the_words(monkeypatch):
    assert diverse.truncate("a b c d e", 0.25) == "a b"  # ceil(1.25) = 2 words
    assert diverse.truncate("one", 0.25) == "one"
    assert diverse.truncate("a b c d", 0.5) == "a b"
    monkeypatch.setattr(diverse, "text_features", bag_of_words)
    split = synthetic(4, 0)
    cut = diverse.truncated(split, 0.25)
    assert cut.captions[0] == "thing0" and np.array_equal(cut.image, split.image)
    assert np.allclose(cut.text, bag_of_words(cut.captions))


def test_information_imbalance_record_feeds_its_row(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(diverse, "text_features", bag_of_words)
    rec = get_experiment("information-imbalance").run(tmp_path, data="emoji+openclipart", n_seeds=2, steps=15,
                                                      embed_dim=8)
    res = rec["results"]
    assert res["mean_words_per_caption"] == {"full": 4.0, "keep_0.25": 1.0}
    assert res["distinct_train_captions"]["keep_0.25"] == 64  # "thing{image}": one text per image
    rows = F.build_rows(F.collect_records([tmp_path]))
    row = next(r for r in rows if r["claim"].startswith("Information imbalance"))
    assert row["verdict"] != "no record" and "keep_0.25" in row["ours"]
    assert row["command"] == "gapkit reproduce information-imbalance --data emoji+openclipart --out runs/information-imbalance"


def test_a_claim_not_tested_says_why(monkeypatch):
    claim = F.Claim("a claim", "a source", "a number", "nothing-ran", "gapkit reproduce nothing-ran --out runs/x",
                    untested="needs 250M SGD steps")
    monkeypatch.setattr(F, "CLAIMS", (claim,))
    (row,) = F.build_rows([])
    assert row["verdict"] == "not tested" and row["ours"] == "not tested: needs 250M SGD steps"
    assert "not tested 1" in F.render_markdown([row])
