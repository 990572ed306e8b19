"""Extraction: batched pipeline vs a naive loop, the on-disk cache, shards + merge, `gapkit embed`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gapkit.cli import main
from gapkit.data import load_dataset
from gapkit.embeddings import load_embeddings
from gapkit.encoders import extract, get_encoder
from gapkit.encoders.extraction import load_embed_dir, merge_shards, save_embed_dir

TINY = {"embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "gapkit-tiny-extract.json"
    p.write_text(json.dumps(TINY))
    return p


@pytest.fixture(scope="module")
def enc(cfg):
    return get_encoder(f"open_clip:{cfg}", seed=0)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset("emoji", "test", seed=0, limit=13, cache_dir=tmp_path_factory.mktemp("data"))


class Counting:
    """Wraps an encoder and counts model calls (a cache hit must make none)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.embed_dim, self.preprocess = inner.name, inner.embed_dim, inner.preprocess
        self.preprocessing = inner.preprocessing

    def weights_hash(self):
        return self.inner.weights_hash()

    def encode_image(self, x):
        self.calls += 1
        return self.inner.encode_image(x)

    def encode_text(self, t):
        self.calls += 1
        return self.inner.encode_text(t)


def test_extract_matches_a_naive_loop(enc, ds, tmp_path):
    pe = extract(enc, ds, batch_size=4, cache_dir=tmp_path / "c", progress=False)
    ref_img = np.stack([enc.model.encode_image(enc.preprocess(ds.image(i))[None])[0].detach().numpy()
                        for i in range(ds.n_images)])
    with torch.no_grad():
        ref_txt = enc.model.encode_text(enc.tokenizer(ds.captions)).numpy()
    np.testing.assert_allclose(pe.image, ref_img, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pe.text, ref_txt, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(pe.text_to_image, ds.text_to_image)
    assert pe.captions == ds.captions and pe.image_ids == ds.image_ids
    m = pe.metadata
    assert m["model"] == enc.name and m["dataset"] == "emoji" and m["split"] == "test"
    assert m["weights_hash"] == enc.weights_hash() and "torch" in m["versions"]


def test_cache_hit_runs_no_model_and_keys_on_weights(enc, cfg, ds, tmp_path):
    first = Counting(enc)
    a = extract(first, ds, batch_size=8, cache_dir=tmp_path / "c", progress=False)
    assert first.calls > 0
    again = Counting(enc)
    b = extract(again, ds, batch_size=5, cache_dir=tmp_path / "c", progress=False)
    assert again.calls == 0
    np.testing.assert_array_equal(a.image, b.image)
    other = Counting(get_encoder(f"open_clip:{cfg}", seed=1))  # other weights -> other entry
    c = extract(other, ds, cache_dir=tmp_path / "c", progress=False)
    assert other.calls > 0 and not np.allclose(a.image, c.image)


def test_shards_merge_to_the_full_extraction(enc, ds, tmp_path):
    full = extract(enc, ds, cache_dir=tmp_path / "c", progress=False)
    parts = []
    for i in range(3):
        pe = extract(enc, ds, cache_dir=tmp_path / "c", progress=False, shard=f"{i}/3")
        save_embed_dir(pe, tmp_path / f"s{i}")
        parts.append(load_embed_dir(tmp_path / f"s{i}"))
    assert sum(p.n_image for p in parts) == ds.n_images
    merged = merge_shards(parts[::-1])  # order of the parts does not matter
    np.testing.assert_allclose(merged.image, full.image, atol=1e-6)
    np.testing.assert_allclose(merged.text, full.text, atol=1e-6)
    np.testing.assert_array_equal(merged.text_to_image, full.text_to_image)
    assert merged.captions == full.captions and merged.image_ids == full.image_ids
    from gapkit.errors import GapkitError

    with pytest.raises(GapkitError, match="shards 0..k-1"):
        merge_shards(parts[:2])


def test_cli_embed_cache_shards_and_errors(cfg, tmp_path, capsys, monkeypatch):
    base = ["embed", "--encoder", f"open_clip:{cfg}", "--dataset", "emoji", "--limit", "9", "--quiet",
            "--cache-dir", str(tmp_path / "cache"), "--batch-size", "4"]
    assert main(base + ["--out", str(tmp_path / "e1")]) == 0
    assert "from model" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "e2")]) == 0
    assert "from cache" in capsys.readouterr().err
    pe1 = load_embeddings(tmp_path / "e1" / "embeddings.safetensors")
    pe2 = load_embeddings(tmp_path / "e2" / "embeddings.safetensors")
    np.testing.assert_array_equal(pe1.image, pe2.image)
    man = json.loads((tmp_path / "e1" / "manifest.json").read_text())
    assert man["model"].startswith("open_clip:") and man["dataset"] == "emoji" and man["n_image"] == 9
    assert man["preprocessing"]["image"] and man["versions"]["torch"]
    for i in range(2):
        assert main(base + ["--shard", f"{i}/2", "--out", str(tmp_path / f"p{i}")]) == 0
    assert main(["embed", "--merge", str(tmp_path / "p0"), str(tmp_path / "p1"), "--out", str(tmp_path / "m")]) == 0
    merged = load_embed_dir(tmp_path / "m")
    np.testing.assert_allclose(merged.image, pe1.image, atol=1e-6)
    # torchrun-style: RANK / WORLD_SIZE pick the shard and the sub-directory
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(base + ["--shard", "auto", "--out", str(tmp_path / "tr")]) == 0
    auto = load_embed_dir(tmp_path / "tr" / "shard-1-of-2")
    np.testing.assert_array_equal(auto.image, load_embed_dir(tmp_path / "p1").image)
    # bad input: one line on stderr, exit 2, no output directory
    assert main(base[:-2] + ["--dataset", "no-such-set", "--out", str(tmp_path / "bad")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(base + ["--shard", "3/2", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_gap_at_birth_experiment_on_a_tiny_random_tower(cfg, tmp_path):
    """Liang's cone effect on a random-init open_clip model: narrow cones, separable modalities."""
    from gapkit.experiments import get_experiment

    rec = get_experiment("gap-at-birth").run(tmp_path, quick=True, seed=0, datasets=["emoji"],
                                             encoders=[f"open_clip:{cfg}"], n_images=16, cache_dir=str(tmp_path / "c"),
                                             progress=False)
    (row,) = rec["results"]["rows"]
    assert row["n_image"] == 16 and row["dataset"] == "emoji"
    assert row["image_cone_cosine_mean"] > 0.3  # a random network maps all images into a cone
    assert row["centroid_distance"] > 0.3 and row["linear_separability"] > 0.9
    assert json.loads((tmp_path / "record.json").read_text())["experiment"] == "gap-at-birth"


def test_cli_encoders_list_and_info(cfg, capsys):
    assert main(["encoders", "--list"]) == 0
    out = capsys.readouterr().out
    for prefix in ("towers", "open_clip", "hf", "sbert", "gapkit"):
        assert f"\n{prefix}" in "\n" + out
    assert main(["encoders", "--info", f"open_clip:{cfg}", "--seed", "2"]) == 0
    info = capsys.readouterr().out
    assert "embed_dim:     24" in info and "weights hash:" in info
    assert main(["encoders"]) == 2
