"""Built-in offline datasets (Debian packages), splits, the prepared cache and batch samplers."""
from __future__ import annotations

import gzip
import time

import numpy as np
import pytest

from gapkit.data import load_dataset, load_fashion_mnist, split_indices
from gapkit.data.fashion_mnist import read_idx
from gapkit.data.samplers import DuplicateHeavyBatchSampler, RandomBatchSampler, false_negative_rate
from gapkit.errors import GapkitError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_read_idx_against_hand_written_file(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in data.shape) + data.tobytes()
    p = tmp_path / "x-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(p), data)
    p.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(GapkitError, match="holds"):
        read_idx(p)


def test_fashion_mnist_arrays_and_cache(cache):
    x, y, names = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    assert np.bincount(y).tolist() == [1000] * 10 and len(names) == 10
    x2, y2, _ = load_fashion_mnist("test")  # from the .npy cache now
    assert any((cache / "fashion-mnist").iterdir())
    np.testing.assert_array_equal(np.asarray(x2), x)
    np.testing.assert_array_equal(y2, y)
    with pytest.raises(GapkitError, match="splits"):
        load_fashion_mnist("validation")


def test_fashion_mnist_dataset_templates(cache):
    ds = load_dataset("fashion-mnist", "test", templates=["a photo of a {}.", "a sketch of a {}."], limit=20)
    assert ds.n_images == 20 and len(ds.captions) == 40
    i = 3
    caps = ds.captions_of(i)
    word = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"][ds.labels[i]]
    assert caps == [f"a photo of a {word}.", f"a sketch of a {word}."]
    im = ds.image(i)
    assert im.mode == "RGB" and im.size == (28, 28)


def test_missing_package_names_apt_get(monkeypatch, tmp_path):
    monkeypatch.setenv("GAPKIT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(GapkitError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", cache_dir=tmp_path)


def test_emoji_several_captions_and_fast_second_load(cache, monkeypatch):
    t0 = time.perf_counter()
    ds = load_dataset("emoji", "all")
    first = time.perf_counter() - t0

    def no_rebuild(**kw):
        raise AssertionError("the second load rebuilt the dataset instead of reading the cache")

    # the second load must come from the prepared cache: the builder is not called again
    monkeypatch.setattr("gapkit.data.emoji.build_emoji", no_rebuild)
    t0 = time.perf_counter()
    again = load_dataset("emoji", "all")
    second = time.perf_counter() - t0
    assert ds.n_images > 1000 and len(ds.captions) > 2 * ds.n_images
    assert second < first  # reading the cache beats rendering ~1,500 glyphs (ratio is load-dependent)
    assert again.captions == ds.captions and again.image_ids == ds.image_ids
    np.testing.assert_array_equal(np.asarray(again.image(7)), np.asarray(ds.image(7)))
    # U+1F600 is "grinning face"; its image is a real colour rendering, not blank.
    k = ds.image_ids.index("U+1F600")
    assert "grinning face" in ds.captions_of(k)
    a = np.asarray(ds.image(k))
    assert a.shape == (136, 136, 3) and (a < 250).any(axis=2).mean() > 0.3
    assert len(set(map(tuple, a.reshape(-1, 3)[::7]))) > 20  # colour, not a monochrome glyph


def test_splits_are_seeded_disjoint_and_cover():
    n = 1000
    parts = {s: split_indices(n, s, seed=3) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == n
    assert len(np.unique(np.concatenate(list(parts.values())))) == n
    np.testing.assert_array_equal(split_indices(n, "test", 3), parts["test"])
    assert not np.array_equal(split_indices(n, "test", 4), parts["test"])
    assert len(parts["train"]) == 700 and len(parts["test"]) == 200


@pytest.mark.filterwarnings("ignore:openclipart. skipped")
def test_openclipart_subset_captions_and_labels(cache):
    ds = load_dataset("openclipart", "test", seed=0, limit=40)
    assert ds.n_images == 40 and ds.labels is not None and len(ds.class_names) == 22
    assert all(c.strip() for c in ds.captions)
    assert set(np.unique(ds.text_to_image)) == set(range(40))  # every image kept its captions
    # image i belongs to the category named by its id's first path component
    for i in range(0, 40, 7):
        assert ds.class_names[ds.labels[i]] == ds.image_ids[i].split("/")[0]
        assert ds.image(i).mode == "RGB"


def test_random_sampler_is_a_seeded_partition():
    s = RandomBatchSampler(103, 10, seed=1)
    batches = list(s)
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    flat = np.concatenate(batches)
    assert len(np.unique(flat)) == 100
    assert list(RandomBatchSampler(103, 10, seed=1))[0] == batches[0]
    assert list(s)[0] != batches[0]  # next epoch differs


def test_duplicate_heavy_sampler_puts_groups_together():
    groups = np.repeat(np.arange(200), 3)  # 200 images with 3 captions each
    dup = DuplicateHeavyBatchSampler(groups, batch_size=16, per_group=4, seed=0)
    rnd = RandomBatchSampler(groups.size, 16, seed=0)
    assert len(dup) == len(rnd)
    d_rate = np.mean([false_negative_rate(b, groups) for b in dup])
    r_rate = np.mean([false_negative_rate(b, groups) for b in rnd])
    assert d_rate == pytest.approx(3 / 15)  # per_group - 1 same-group partners out of B - 1
    assert r_rate < 0.02
    with pytest.raises(GapkitError, match="divide"):
        DuplicateHeavyBatchSampler(groups, batch_size=16, per_group=3)


def test_unknown_builder_option_is_one_clear_error(cache):
    with pytest.raises(GapkitError, match="emoji takes no option colour"):
        load_dataset("emoji", "test", colour="red")
    with pytest.raises(GapkitError, match="fashion-mnist takes no option strict"):
        load_dataset("fashion-mnist", "test", strict=True)
    with pytest.raises(GapkitError, match="official splits"):
        load_dataset("fashion-mnist", "val")
