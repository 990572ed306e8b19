"""Encoder adapters with tiny models saved to disk and loaded back offline; tokenizers checked."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gapkit.encoders import get_encoder, list_encoders, register_encoder
from gapkit.encoders.base import state_hash
from gapkit.errors import GapkitError

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    p = tmp_path_factory.mktemp("oc") / "gapkit-tiny-test.json"
    p.write_text(json.dumps(TINY_OPEN_CLIP))
    return p


def test_open_clip_random_init_is_seeded_and_checkpoint_round_trips(tiny_cfg, tmp_path):
    a = get_encoder(f"open_clip:{tiny_cfg}", seed=1)
    b = get_encoder(f"open_clip:{tiny_cfg}", seed=2)
    assert a.embed_dim == 32
    x = torch.randn(3, 3, 32, 32)
    assert not torch.allclose(a.encode_image(x), b.encode_image(x))
    assert a.weights_hash() != b.weights_hash()
    # save a's weights in both formats; load them into a differently seeded model: same outputs
    torch.save(a.model.state_dict(), tmp_path / "w.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in a.model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for ck in ("w.pt", "w.safetensors"):
        c = get_encoder(f"open_clip:{tiny_cfg}", checkpoint=tmp_path / ck, seed=9)
        torch.testing.assert_close(c.encode_image(x), a.encode_image(x))
        torch.testing.assert_close(c.encode_text(["a red cat", "two dogs"]), a.encode_text(["a red cat", "two dogs"]))
        assert c.weights_hash() == a.weights_hash()
    out = a.encode_text(["x"])
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    n = a.encode_text_normalized(["x", "y"])
    torch.testing.assert_close(n.norm(dim=1), torch.ones(2))


def test_weights_hash_memo_sees_in_place_updates(tiny_cfg):
    enc = get_encoder(f"open_clip:{tiny_cfg}", seed=1)
    h = enc.weights_hash()
    assert enc.weights_hash() == h == state_hash(enc.model, extra=(enc.name, enc.preprocessing))
    with torch.no_grad():
        enc.model.visual.conv1.weight.mul_(2)  # an in-place update must not hit the memo
    assert enc.weights_hash() != h
    assert enc.weights_hash() == state_hash(enc.model, extra=(enc.name, enc.preprocessing))


def test_open_clip_tokenizer_is_the_real_bpe(tiny_cfg):
    enc = get_encoder(f"open_clip:{tiny_cfg}")
    tok = enc.tokenizer
    assert tok.vocab_size == 49408
    ids = tok(["a photo of a cat"])[0].tolist()
    # <start> a photo of a cat <end>: 6 real tokens then padding to the config's context length 16
    assert len(ids) == 16 and ids[0] == 49406 and ids[6] == 49407 and ids[7:] == [0] * 9
    assert tok.decode(ids[1:6]).strip() == "a photo of a cat"


def test_open_clip_bad_inputs(tiny_cfg, tmp_path):
    with pytest.raises(GapkitError, match="unknown open_clip architecture"):
        get_encoder("open_clip:NoSuchNet")
    with pytest.raises(GapkitError, match="checkpoint not found"):
        get_encoder(f"open_clip:{tiny_cfg}", checkpoint=tmp_path / "missing.pt")
    torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(GapkitError, match="invalid open_clip .* checkpoint"):
        get_encoder(f"open_clip:{tiny_cfg}", checkpoint=tmp_path / "bad.pt")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from gapkit.encoders.hf import build_clip_tokenizer

    d = tmp_path_factory.mktemp("hf") / "tiny-clip"
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2),
        projection_dim=16)
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(d)
    build_clip_tokenizer(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    return d, model


def test_hf_tokenizer_from_bundled_bpe_matches_open_clip(hf_dir):
    import open_clip
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(hf_dir[0], local_files_only=True)
    assert len(tok) == 49408
    ref = open_clip.get_tokenizer("ViT-B-32")
    for text in ["a photo of a cat", "Two dogs, playing in the snow!", "emoji: grinning face"]:
        ids = tok(text)["input_ids"]
        want = ref([text])[0]
        want = want[: int((want != 0).sum())].tolist()
        assert ids == want
        # CLIP's BPE ends words with </w>, so decoding spaces punctuation apart: compare without spaces
        assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == text.lower().replace(" ", "")


def test_hf_clip_round_trip_offline(hf_dir):
    d, model = hf_dir
    enc = get_encoder(f"hf:{d}")
    assert enc.embed_dim == 16 and len(enc.tokenizer) == 49408
    from PIL import Image

    imgs = [Image.new("RGB", (40, 50), c) for c in ((255, 0, 0), (0, 90, 200))]
    x = torch.stack([enc.preprocess(im) for im in imgs])
    assert x.shape == (2, 3, 32, 32)
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=x).pooler_output
        tok = enc.tokenizer(["a red square", "blue"], padding=True, return_tensors="pt")
        ref_t = model.get_text_features(**tok).pooler_output
    torch.testing.assert_close(enc.encode_image(x), ref)
    torch.testing.assert_close(enc.encode_text(["a red square", "blue"]), ref_t)


def test_hf_empty_tokenizer_is_refused(hf_dir, tmp_path):
    import shutil

    d = tmp_path / "broken"
    shutil.copytree(hf_dir[0], d)
    (d / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    (d / "tokenizer.json").unlink(missing_ok=True)
    with pytest.raises(GapkitError, match="tokenizer has 2 tokens"):
        get_encoder(f"hf:{d}")


def test_registry_errors_and_extension_point():
    with pytest.raises(GapkitError, match="unknown encoder"):
        get_encoder("nope:thing")
    assert {"towers", "open_clip", "hf", "sbert", "gapkit"} <= set(list_encoders())
    with pytest.raises(GapkitError, match="already registered"):
        register_encoder("towers", lambda *a, **k: None)


def test_gapkit_model_hook_wraps_a_module():
    from gapkit.encoders import gapkit_models
    from gapkit.encoders.gapkit_models import ModuleEncoder

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.img = torch.nn.Linear(12, 4)
            self.emb = torch.nn.Embedding(10, 4)

        def encode_image(self, x):
            return self.img(x.flatten(1))

        def encode_text(self, tokens):
            return self.emb(tokens).mean(1)

    toy = Toy()
    tok = lambda texts: torch.tensor([[len(t) % 10, 1] for t in texts])  # noqa: E731
    gapkit_models.set_model_loader(lambda name, checkpoint=None, **kw: ModuleEncoder(
        toy, tok, lambda im: torch.zeros(3, 2, 2), f"gapkit:{name}", 4))
    try:
        enc = get_encoder("gapkit:toy")
        x = torch.randn(2, 3, 2, 2)
        torch.testing.assert_close(enc.encode_image(x), toy.img(x.flatten(1)).detach())
        assert enc.encode_text(["ab", "abc"]).shape == (2, 4)
        assert enc.weights_hash() == state_hash(toy, extra=("gapkit:toy", enc.preprocessing))
    finally:
        gapkit_models.set_model_loader(None)


def test_sbert_text_side(monkeypatch):
    enc = get_encoder("sbert:minilm")
    e = enc.encode_text(["a cat sits on the mat", "a kitten on a rug", "stock market crash"])
    assert e.shape == (3, 384) and enc.embed_dim == 384
    n = torch.nn.functional.normalize(e, dim=1)
    sims = n @ n.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # real semantics: cat/kitten closer than finance
    with pytest.raises(GapkitError, match="text only"):
        enc.encode_image(torch.zeros(1, 3, 8, 8))


def test_hf_siglip_round_trip_with_max_length_padding(tmp_path):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    from gapkit.encoders.hf import build_clip_tokenizer

    d = tmp_path / "tiny-siglip"
    cfg = SiglipConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2))
    torch.manual_seed(0)
    model = SiglipModel(cfg).eval()
    model.save_pretrained(d)
    tok = build_clip_tokenizer(d, model_max_length=16)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    enc = get_encoder(f"hf:{d}")
    assert enc.is_siglip and enc.embed_dim == 32
    texts = ["a red square", "a much longer caption about a blue circle"]
    ids = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = model.get_text_features(input_ids=ids).pooler_output
    torch.testing.assert_close(enc.encode_text(texts), ref)
    from PIL import Image

    x = enc.preprocess(Image.new("RGB", (48, 40), (10, 200, 30)))[None]
    with torch.no_grad():
        torch.testing.assert_close(enc.encode_image(x), model.get_image_features(pixel_values=x).pooler_output)
