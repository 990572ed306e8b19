"""The pretrained towers: the EfficientNet-Lite0 weight mapping classifies real photos, heads, features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gapkit.data.dataset import ArrayImages, ImageTextDataset
from gapkit.encoders import get_encoder, tower_features
from gapkit.encoders.towers import make_heads, save_heads
from gapkit.errors import GapkitError


@pytest.fixture(scope="module")
def towers():
    return get_encoder("towers", dim=64, seed=0)


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two real photos: a Chinese temple and a flower (shipped with the package)."""
    from sklearn.datasets import load_sample_images

    return load_sample_images().images


def _top5(towers, image):
    from PIL import Image
    from timm.data import ImageNetInfo

    logits = towers.classify(towers.preprocess(Image.fromarray(image))[None])[0]
    info = ImageNetInfo()
    return [info.index_to_description(int(k)) for k in logits.topk(5).indices]


def test_efficientnet_mapping_classifies_real_photos(towers, photos):
    temple, flower = (_top5(towers, im) for im in photos)
    assert any("daisy" in c for c in flower), flower
    buildings = ("bell cote", "palace", "pagoda", "monastery", "stupa", "church", "boathouse", "castle")
    assert any(b in c for c in temple for b in buildings), temple


@pytest.mark.slow
def test_mapping_is_not_an_accident(photos):
    """A randomly initialised EfficientNet does not find the daisy: the weights carry the skill."""
    import timm
    from PIL import Image
    from timm.data import ImageNetInfo

    from gapkit.encoders.towers import efficientnet_preprocess

    torch.manual_seed(0)
    rand = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        top = rand(efficientnet_preprocess()(Image.fromarray(photos[1]))[None])[0].topk(5).indices
    assert not any("daisy" in ImageNetInfo().index_to_description(int(k)) for k in top)


def _tiny_dataset(photos):
    from PIL import Image

    arr = np.stack([np.asarray(Image.fromarray(p).resize((64, 48))) for p in photos] * 2).astype(np.uint8)
    return ImageTextDataset(ArrayImages(arr), ["a temple", "a flower", "a pagoda roof", "a daisy", "red petals"],
                            np.array([0, 1, 2, 3, 3]), ["t", "f", "t2", "f2"], name="photos")


def test_tower_features_shapes_cache_and_semantics(towers, photos, tmp_path):
    ds = _tiny_dataset(photos)
    img, txt = tower_features(ds, cache_dir=tmp_path, progress=False, encoder=towers)
    assert img.shape == (4, 1280) and txt.shape == (5, 384) and img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)  # MiniLM normalises itself
    np.testing.assert_allclose(img[0], img[2], rtol=1e-5, atol=1e-5)  # same photo twice
    img2, txt2 = tower_features(ds, cache_dir=tmp_path, progress=False, encoder=towers)
    np.testing.assert_array_equal(img2, img)
    # projected features = raw features through the random heads
    with torch.no_grad():
        proj = towers.heads.project_image(torch.from_numpy(img)).numpy()
    x = torch.stack([towers.preprocess(ds.image(i)) for i in range(4)])
    np.testing.assert_allclose(towers.encode_image(x).numpy(), proj, rtol=1e-4, atol=1e-4)


def test_heads_kinds_and_trained_heads_file(towers, tmp_path):
    ident = make_heads("identity")
    y = torch.randn(2, 384)
    out = ident.project_text(y)
    assert out.shape == (2, 1280) and torch.equal(out[:, :384], y) and not out[:, 384:].any()
    h = make_heads("random", dim=8, seed=3)
    save_heads(h, tmp_path / "heads.safetensors")
    back = make_heads(str(tmp_path / "heads.safetensors"))
    x = torch.randn(3, 1280)
    torch.testing.assert_close(back.project_image(x), h.project_image(x))
    with pytest.raises(GapkitError, match="unknown heads"):
        make_heads("fancy")


@pytest.mark.slow
def test_pca_heads_fit_on_data(towers, photos, tmp_path):
    from gapkit.encoders.towers import TowerEncoder

    enc = TowerEncoder.__new__(TowerEncoder)  # reuse the loaded towers, new pca heads
    enc.__dict__.update(towers.__dict__)
    enc.heads, enc.kind, enc.dim, enc.embed_dim = make_heads("pca"), "pca", 3, 3
    with pytest.raises(GapkitError, match="prepare"):
        enc.encode_text(["x"])
    ds = _tiny_dataset(photos)
    enc.prepare(ds, cache_dir=tmp_path, progress=False)
    img, _ = tower_features(ds, cache_dir=tmp_path, progress=False, encoder=towers)
    x = torch.stack([enc.preprocess(ds.image(i)) for i in range(4)])
    z = enc.encode_image(x).numpy()
    # an orthonormal projection onto 3 of the (rank-2) image directions keeps the norms
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), np.linalg.norm(img, axis=1), rtol=1e-3)


def test_towers_extract_reuses_raw_features_and_shards_agree(towers, photos, tmp_path):
    from gapkit.encoders.extraction import extract, merge_shards

    ds = _tiny_dataset(photos)
    img, txt = tower_features(ds, cache_dir=tmp_path, progress=False, encoder=towers)
    pe = extract(towers, ds, cache_dir=tmp_path, progress=False)
    with torch.no_grad():
        want = towers.heads.project_text(torch.from_numpy(txt)).numpy()
    np.testing.assert_allclose(pe.text, want, rtol=1e-5, atol=1e-6)
    parts = [extract(towers, ds, cache_dir=tmp_path, progress=False, shard=(i, 2)) for i in range(2)]
    merged = merge_shards(parts)
    np.testing.assert_allclose(merged.image, pe.image, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(merged.text, pe.text, rtol=1e-5, atol=1e-6)


def test_svd_basis_is_orthonormal_with_sign_convention():
    from gapkit.encoders.towers import svd_basis

    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 12)) + 3.0  # a cloud away from the origin
    b = svd_basis(x, 4)
    np.testing.assert_allclose(b.T @ b, np.eye(4), atol=1e-5)
    assert (x.mean(0) @ b >= 0).all()
    np.testing.assert_allclose(svd_basis(-x, 4), -b, atol=1e-5)  # flipping the data flips the basis
    with pytest.raises(GapkitError, match="at most"):
        svd_basis(x[:3], 4)
