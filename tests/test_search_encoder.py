"""An index that embeds its own queries: a user's CSV of images + captions, a real gapkit model
(random-init tiny ViT CLIP), text and image queries, registered files, the encoder probe."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gapkit.errors import GapkitError

pytestmark = pytest.mark.slow  # loads torch and a model (~15 s on a loaded 2-core machine)


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = ["image,caption"]
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"img{i}.png")
        rows += [f"img{i}.png,picture number {i}", f"img{i}.png,another view of thing {i}"]
    (d / "pairs.csv").write_text("\n".join(rows) + "\n")
    return d


@pytest.fixture(scope="module")
def idx(user_data, tmp_path_factory):
    from gapkit.search import build_index_from_dataset

    return build_index_from_dataset(str(user_data / "pairs.csv"), "gapkit:tiny-vit", split="all",
                                    out=tmp_path_factory.mktemp("i") / "idx", correction="role-center",
                                    backend="exact")


def test_text_and_image_queries(idx, user_data):
    info = idx.info()
    assert info["query_roles"] == ["text", "image"] and info["encoder"]["name"] == "gapkit:tiny-vit"
    assert info["roles"] == {"image": 24, "text": 48, "fused": 24}
    hits = idx.search(text="picture number 3", k=5)
    assert len(hits) == 5 and hits[0].id == "text:6" and hits[0].raw_cosine == pytest.approx(1.0, abs=1e-5)
    img_hits = idx.search(image=str(user_data / "img5.png"), k=3, role="image")
    assert img_hits[0].raw_cosine == pytest.approx(1.0, abs=1e-4)
    assert idx.image_file(img_hits[0].id) == user_data / "img5.png"
    assert idx.image_file("text:0") is None and idx.image_file("../../etc/passwd") is None
    from gapkit.search import score

    s = score(idx, image=str(user_data / "img5.png"), text="picture number 5")
    assert -1 <= s["raw_cosine"] <= 1 and s["probability"] is None


def test_bad_image_and_changed_weights(idx, tmp_path):
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(GapkitError, match="not a readable image"):
        idx.search(image=str(tmp_path / "not.png"))
    from gapkit.search import open_index

    meta = json.loads((idx.path / "index.json").read_text())
    meta["encoder"]["kwargs"] = {"seed": 1}  # other random weights than the documents were made with
    import shutil

    other = tmp_path / "other"
    shutil.copytree(idx.path, other)
    (other / "index.json").write_text(json.dumps(meta))
    with pytest.raises(GapkitError, match="does not reproduce the embeddings"):
        open_index(other).search(text="picture number 3")
