"""The demo's speed paths change no result: stacked head training (fit_heads_many) gives every arm
the weights of its own run, fit_heads still is the textbook loop, and cached tower features /
text features are answered without loading the towers."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _synthetic_pairs import single_thread  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()


def _features(seed: int = 0, n_img: int = 60, n_txt: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (n_img, 20), captions (n_txt, 12) that see their image linearly, several per image."""
    r = np.random.default_rng(seed)
    img = r.standard_normal((n_img, 20)).astype(np.float32)
    t2i = np.concatenate([np.arange(n_img), r.integers(0, n_img, n_txt - n_img)])
    txt = (img[t2i] @ r.standard_normal((20, 12)) + 0.3 * r.standard_normal((n_txt, 12))).astype(np.float32)
    return img, txt, t2i


ARMS = [{"loss": "clip"}, {"loss": "clip", "tau": 0.5, "learnable_tau": False}, {"loss": "cuaxu"},
        {"loss": "clip", "tau": 0.03, "learnable_tau": False}]


def test_stacked_arms_end_with_the_weights_of_separate_runs():
    from gapkit.train import fit_heads, fit_heads_many

    img, txt, t2i = _features()
    kw = dict(steps=25, seed=3, text_to_image=t2i, embed_dim=8, batch_size=64, lr=5e-3, warmup_steps=5)
    stacked = fit_heads_many(img, txt, ARMS, **kw)
    assert len(stacked) == len(ARMS)
    for arm, h in zip(ARMS, stacked):
        alone = fit_heads(img, txt, **arm, **kw)
        for a, b in ((h.image_proj.weight, alone.image_proj.weight), (h.text_proj.weight, alone.text_proj.weight),
                     (h.logit_scale, alone.logit_scale)):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
    # the arms really differ (a fixed tau is kept; a learned one moved), so the comparison means something
    assert float(stacked[1].logit_scale) == pytest.approx(math.log(2.0))
    assert float(stacked[0].logit_scale.detach()) != pytest.approx(math.log(1 / 0.07), abs=1e-4)
    assert not torch.allclose(stacked[0].image_proj.weight, stacked[2].image_proj.weight)


def test_fit_heads_is_the_textbook_loop():
    """The pre-stacking fit_heads, written out: LiTHeads + loss + AdamW + warmup/cosine schedule."""
    from gapkit.data.samplers import RandomBatchSampler
    from gapkit.losses import create_loss
    from gapkit.models.heads import LiTHeads
    from gapkit.train import fit_heads
    from gapkit.train.data import StepBatches
    from gapkit.train.loop import lr_factor, make_optimizer

    img, txt, t2i = _features(1)
    steps, seed = 20, 5
    got = fit_heads(img, txt, loss="cuaxu", steps=steps, seed=seed, text_to_image=t2i, embed_dim=8, batch_size=50,
                    lr=5e-3, warmup_steps=4)
    torch.manual_seed(seed)
    ref = LiTHeads(20, 12, 8)
    loss_fn = create_loss("cuaxu")
    opt = make_optimizer([ref, loss_fn], 5e-3, 0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 4, steps, 0.0))
    batches = StepBatches(RandomBatchSampler(len(txt), 50, seed))
    x, y, m = torch.from_numpy(img), torch.from_numpy(txt), torch.from_numpy(t2i)
    for step in range(steps):
        idx = torch.from_numpy(batches.batch(step))
        out = ref(x[m[idx]], y[idx])
        terms = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        opt.zero_grad()
        sum(v for k, v in terms.items() if k.endswith("_loss")).backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            ref.logit_scale.clamp_(0, math.log(100))
    for a, b in ((got.image_proj.weight, ref.image_proj.weight), (got.text_proj.weight, ref.text_proj.weight),
                 (got.logit_scale, ref.logit_scale)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_fit_heads_many_rejects_bad_arms():
    from gapkit.errors import GapkitError
    from gapkit.train import fit_heads_many

    img, txt, t2i = _features()
    with pytest.raises(GapkitError, match="at least one arm"):
        fit_heads_many(img, txt, [], steps=1, text_to_image=t2i)
    with pytest.raises(GapkitError, match="unknown arm keys"):
        fit_heads_many(img, txt, [{"loss": "clip", "temperature": 1}], steps=1, text_to_image=t2i)


# ------------------------------------------------------------------------- cache without towers
class _FakeTowers:
    """A TowerEncoder stand-in with tiny modules: image features = mean pixel colour x 2, text
    features = (length, vowels) of each caption."""

    def __init__(self):
        self.image_model, self.text_model = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
        self.preprocess = lambda im: torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)
        self.preprocessing = {"image": "fake", "text": "fake"}
        self.calls = 0

    def image_features(self, images):
        self.calls += 1
        return images.mean(dim=(2, 3))[:, :2] * 2

    def text_features(self, texts):
        self.calls += 1
        return torch.tensor([[len(t), sum(c in "aeiou" for c in t)] for t in texts], dtype=torch.float32)


def _tiny_dataset():
    from gapkit.data.dataset import ArrayImages, ImageTextDataset

    px = np.random.default_rng(0).integers(0, 255, (4, 6, 6, 3), dtype=np.uint8)
    return ImageTextDataset(ArrayImages(px), ["a red one", "blue", "green dot", "a cat", "two"],
                            np.array([0, 1, 2, 3, 3]), [f"im{i}" for i in range(4)], name="tiny")


def test_cached_tower_features_need_no_towers(tmp_path, monkeypatch):
    from gapkit.encoders import towers

    ds, fake = _tiny_dataset(), _FakeTowers()
    img, txt = towers.tower_features(ds, encoder=fake, cache_dir=tmp_path, progress=False)
    assert fake.calls > 0 and img.shape == (4, 2) and txt.shape == (5, 2)
    np.testing.assert_allclose(txt[0], [len("a red one"), 4])

    def no_towers(*a, **k):
        raise AssertionError("the towers were loaded for a cached request")

    monkeypatch.setattr(towers, "efficientnet_lite0", no_towers)
    monkeypatch.setattr(towers.TowerEncoder, "__init__", no_towers)
    img2, txt2 = towers.tower_features(_tiny_dataset(), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_array_equal(txt2, txt)
    # other content misses the alias (and would need the towers)
    other = _tiny_dataset()
    other.captions[0] = "a red two"
    with pytest.raises(AssertionError, match="towers were loaded"):
        towers.tower_features(other, cache_dir=tmp_path, progress=False)


def test_text_features_are_cached_and_remembered(tmp_path, monkeypatch):
    from gapkit.encoders import sbert, towers

    fake = _FakeTowers()
    real_raw = towers._RawTowers

    def fake_raw(enc):  # the raw view over the fake towers, whatever encoder is passed
        return real_raw(fake)

    monkeypatch.setattr(towers, "_RawTowers", fake_raw)
    monkeypatch.setattr(towers, "_TOWER_HASH", {})
    texts = ["clip art of a cat.", "a drawing of a dog."]
    enc = towers.TowerEncoder("none")  # lazy: nothing loaded yet

    def no_load(*a, **k):
        raise AssertionError("MiniLM was loaded")

    monkeypatch.setattr(sbert, "load_sentence_transformer", no_load)
    rows = towers.tower_text_features(texts, encoder=enc, cache_dir=tmp_path)
    np.testing.assert_allclose(rows, [[18, 5], [19, 6]])
    calls = fake.calls
    again = towers.tower_text_features(texts, encoder=towers.TowerEncoder("none"), cache_dir=tmp_path)
    assert fake.calls == calls  # read from the cache
    np.testing.assert_array_equal(again, rows)
    # the encoder answers remembered texts itself (the demo's prompts, the index probe)
    np.testing.assert_array_equal(enc.text_features([texts[1]]).numpy(), rows[1:])
    with pytest.raises(AssertionError, match="MiniLM was loaded"):
        enc.text_features(["never seen"])


def test_numba_functions_of_a_package_are_cached_on_disk(tmp_path, monkeypatch):
    """What umap_2d does to umap-learn's jitted functions, on a throwaway package."""
    pytest.importorskip("numba")
    pkg = tmp_path / "gkfakejit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from numba import njit\n\n@njit\ndef twice(x):\n    return 2 * x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gkfakejit

    from gapkit.report.figures import embedding

    embedding._cache_compiled("gkfakejit")
    assert gkfakejit.twice(20) == 41
    assert list((pkg / "__pycache__").glob("*.nbi")), "numba wrote no cache index"
    assert "gkfakejit" in embedding._CACHED_PACKAGES


def test_umap_from_precomputed_cosine_distances():
    """umap_2d hands umap-learn the cosine distance matrix (one matrix product) instead of letting
    it call its numba cosine once per pair: the matrix equals the naive one, and the embedding
    keeps two groups that are apart in cosine apart in 2-D."""
    pytest.importorskip("umap")
    from gapkit.report.figures.embedding import cosine_distances, umap_2d

    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 16))
    x[:60, 0] += 10.0  # two groups, far apart in angle
    naive = np.array([[1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in x] for a in x])
    np.fill_diagonal(naive, 0.0)
    np.testing.assert_allclose(cosine_distances(x), np.clip(naive, 0, 2), atol=1e-12)
    e = umap_2d(x, seed=0)
    d2 = np.linalg.norm(e[:, None] - e[None], axis=2)
    np.fill_diagonal(d2, np.inf)
    group = np.arange(120) < 60
    same = group[np.argsort(d2, axis=1)[:, :5]] == group[:, None]  # 5 nearest in 2-D: same group?
    assert same.mean() > 0.95
