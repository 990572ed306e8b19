"""PairedEmbeddings: every reader/writer round-trips, and every bad input fails with one clear message."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import gapkit
from gapkit.embeddings import (PairedEmbeddings, iter_clip_retrieval_shards, load_array, load_embeddings,
                               save_array, save_embeddings)
from gapkit.errors import GapkitError

from .conftest import gapped_pairs


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors", ".parquet", ""])
def test_roundtrip_one_to_one(tmp_path, pairs, suffix):
    x, y = pairs
    pe = PairedEmbeddings(x, y)
    out = save_embeddings(pe, tmp_path / f"emb{suffix}")
    back = load_embeddings(out)
    np.testing.assert_array_equal(back.image, x)
    np.testing.assert_array_equal(back.text, y)
    assert back.one_to_one
    # nothing else left behind (temp files are renamed or removed)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".safetensors"])
def test_roundtrip_multi_caption(tmp_path, rng, suffix):
    img = rng.standard_normal((4, 8)).astype(np.float32)
    txt = rng.standard_normal((10, 8)).astype(np.float32)
    m = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 3])
    pe = PairedEmbeddings(img, txt, m)
    back = load_embeddings(save_embeddings(pe, tmp_path / f"e{suffix}"))
    np.testing.assert_array_equal(back.text_to_image, m)
    assert not back.one_to_one
    pi, pt = back.pairs()
    np.testing.assert_array_equal(pi, img[m])
    fi, ft = back.first_caption_pairs()
    np.testing.assert_array_equal(fi, img)
    np.testing.assert_array_equal(ft, txt[[0, 2, 5, 6]])


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors", ".parquet"])
def test_separate_files_and_mapping(tmp_path, rng, suffix):
    img = rng.standard_normal((3, 5)).astype(np.float32)
    txt = rng.standard_normal((6, 5)).astype(np.float32)
    save_array(img, tmp_path / f"img{suffix}")
    save_array(txt, tmp_path / f"txt{suffix}")
    (tmp_path / "map.txt").write_text("0\n0\n1\n1\n2\n2\n")
    pe = load_embeddings(image=tmp_path / f"img{suffix}", text=tmp_path / f"txt{suffix}",
                         text_to_image=tmp_path / "map.txt")
    np.testing.assert_allclose(pe.image, img)
    np.testing.assert_allclose(pe.text, txt)
    assert pe.text_to_image.tolist() == [0, 0, 1, 1, 2, 2]


def test_clip_retrieval_shards(tmp_path, pairs):
    x, y = pairs
    root = tmp_path / "cr"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    # shards numbered 0..10: numeric, not lexical, order must be kept (10 after 9)
    bounds = np.linspace(0, len(x), 12).astype(int)
    for k in range(11):
        np.save(root / "img_emb" / f"img_emb_{k}.npy", x[bounds[k]:bounds[k + 1]])
        np.save(root / "text_emb" / f"text_emb_{k}.npy", y[bounds[k]:bounds[k + 1]])
    shards = list(iter_clip_retrieval_shards(root))
    assert len(shards) == 11
    pe = load_embeddings(root)
    np.testing.assert_array_equal(pe.image, x)
    np.testing.assert_array_equal(pe.text, y)


def test_parquet_list_column(tmp_path, rng):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    a = rng.standard_normal((7, 3)).astype(np.float32)
    pq.write_table(pa.table({"id": list(range(7)), "vec": [list(r) for r in a]}), tmp_path / "v.parquet")
    np.testing.assert_allclose(load_array(tmp_path / "v.parquet"), a)


def test_sample_is_real_and_normalised():
    pe = gapkit.load_sample("clip")
    assert (pe.n_image, pe.n_text, pe.dim) == (500, 500, 512)
    np.testing.assert_allclose(np.linalg.norm(pe.image, axis=1), 1, atol=1e-3)


def _err(tmp_path, fn):
    with pytest.raises(ValueError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs(tmp_path, rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    bad = x.copy()
    bad[3, 1] = np.nan
    assert "row 3" in _err(tmp_path, lambda: PairedEmbeddings(bad, x))
    z = x.copy()
    z[2] = 0
    assert "row 2 is all zeros" in _err(tmp_path, lambda: PairedEmbeddings(x, z))
    assert "2-D" in _err(tmp_path, lambda: PairedEmbeddings(x[0], x))
    assert "2-D" in _err(tmp_path, lambda: PairedEmbeddings(x[None], x))
    assert "dims differ" in _err(tmp_path, lambda: PairedEmbeddings(x, x[:, :3]))
    assert "no text_to_image" in _err(tmp_path, lambda: PairedEmbeddings(x, x[:3]))
    assert "out of range" in _err(tmp_path, lambda: PairedEmbeddings(x, x[:3], np.array([0, 1, 5])))
    assert "length" in _err(tmp_path, lambda: PairedEmbeddings(x, x[:3], np.array([0, 1])))
    assert "empty" in _err(tmp_path, lambda: PairedEmbeddings(x[:0], x[:0]))
    assert "not found" in _err(tmp_path, lambda: load_embeddings(tmp_path / "nope.npy"))
    (tmp_path / "a.csv").write_text("1,2\n")
    assert "unknown format" in _err(tmp_path, lambda: load_embeddings(tmp_path / "a.csv"))
    with open(tmp_path / "a.pkl", "wb") as f:
        pickle.dump({"image": x}, f)
    assert "pickle" in _err(tmp_path, lambda: load_embeddings(tmp_path / "a.pkl"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "pickle" in _err(tmp_path, lambda: load_embeddings(tmp_path / "obj.npy"))
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    assert "unreadable" in _err(tmp_path, lambda: load_embeddings(tmp_path / "junk.npy"))
    np.save(tmp_path / "flat.npy", x)
    assert "(2, N, D)" in _err(tmp_path, lambda: load_embeddings(tmp_path / "flat.npy"))


def test_pt_with_pickled_object_is_refused(tmp_path):
    torch = pytest.importorskip("torch")

    import argparse

    torch.save({"image": argparse.Namespace(a=1)}, tmp_path / "evil.pt")
    assert "refusing to unpickle" in _err(tmp_path, lambda: load_embeddings(tmp_path / "evil.pt"))


def test_failed_write_leaves_nothing(tmp_path, rng):
    img = rng.standard_normal((3, 4)).astype(np.float32)
    txt = rng.standard_normal((5, 4)).astype(np.float32)
    pe = PairedEmbeddings(img, txt, np.array([0, 1, 2, 2, 2]))
    with pytest.raises(ValueError):
        save_embeddings(pe, tmp_path / "x.npy")  # a stack needs 1:1 pairs
    assert list(tmp_path.iterdir()) == []


def test_gapped_pairs_helper_has_gap():
    x, y = gapped_pairs(gap=2.0)
    assert np.linalg.norm(x.mean(0) - y.mean(0)) > 0.5
