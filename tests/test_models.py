"""Models: shapes, EOT pooling, causal masking, SharedCLIP's sharing, tokenizers, configs, heads."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gapkit.errors import GapkitError
from gapkit.models import available_models, create_model, get_model_config

sys.path.insert(0, str(Path(__file__).parent))
from _synthetic_pairs import single_thread  # noqa: E402


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-cnn", "tiny-shared"])
def test_tiny_presets_forward_shapes(name):
    model = create_model(name, seed=0)
    s = model.config["vision_cfg"]["image_size"]
    tokens = model.tokenizer(["a photo of a shoe", "a bag", "x", "a very long caption " * 10])
    out = model(torch.randn(4, 3, s, s), tokens)
    e = model.config["embed_dim"]
    assert out["image_features"].shape == (4, e) and out["text_features"].shape == (4, e)
    assert torch.allclose(out["image_features"].norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(out["text_features"].norm(dim=1), torch.ones(4), atol=1e-5)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_logit_scale_is_clamped_to_100():
    model = create_model("tiny-vit")
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0, rel=1e-5)


def test_every_preset_validates_and_open_clip_json_loads():
    for name in available_models():
        cfg = get_model_config(name)
        assert cfg["model"] in ("clip", "sharedclip")
    import open_clip

    path = Path(open_clip.__file__).parent / "model_configs" / "ViT-B-32.json"
    assert get_model_config(str(path))["vision_cfg"]["patch_size"] == 32
    with pytest.raises(GapkitError, match="ResNet"):
        get_model_config(str(path.with_name("RN50.json")))
    with pytest.raises(GapkitError, match="unsupported model config keys"):
        get_model_config({"embed_dim": 8, "vision_cfg": {"image_size": 8, "patch_size": 4, "width": 8, "layers": 1,
                                                          "bogus": 1}, "text_cfg": {}})
    with pytest.raises(GapkitError, match="unknown model"):
        get_model_config("no-such-model")


def _eot_reference(model, tokens):
    """Text features computed with the EOT position found by a Python scan for the EOT id."""
    eot = model.tokenizer.eot_id
    hidden = model.text.transformer(model.text.embed(tokens), causal=True)
    rows = []
    for i in range(tokens.shape[0]):
        pos = [j for j, t in enumerate(tokens[i].tolist()) if t == eot][0]
        rows.append(model.text.ln_final(hidden[i, pos]) @ model.text.text_projection)
    return torch.stack(rows)


def test_text_tower_pools_at_the_eot_token():
    model = create_model("tiny-vit", seed=0).eval()
    tokens = model.tokenizer(["a", "a photo of a cat", "one two three four five six"])
    with torch.no_grad():
        got = model.encode_text(tokens)
        ref = _eot_reference(model, tokens)
    assert torch.allclose(got, ref, atol=1e-5)
    # EOT is the largest id, so argmax finds it; positions differ per caption here.
    assert len(set(tokens.argmax(dim=1).tolist())) == 3


def test_text_attention_is_causal():
    model = create_model("tiny-vit", seed=0).eval()
    a = model.tokenizer(["a photo of a cat"])
    b = a.clone()
    b[0, -1] = 5  # change a token after the EOT (padding region)
    with torch.no_grad():
        ha = model.text.transformer(model.text.embed(a), causal=True)
        hb = model.text.transformer(model.text.embed(b), causal=True)
    n = int(a.argmax())
    assert torch.allclose(ha[0, : n + 1], hb[0, : n + 1], atol=1e-6)
    assert not torch.allclose(ha[0, -1], hb[0, -1])


def _params_with_grad(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_sharedclip_shares_transformer_norm_and_projection():
    model = create_model("tiny-shared", seed=0)
    s = model.config["vision_cfg"]["image_size"]
    img_names = _params_with_grad(model, model.encode_image(torch.randn(2, 3, s, s)).sum())
    txt_names = _params_with_grad(model, model.encode_text(model.tokenizer(["a cat", "a dog"])).sum())
    shared = img_names & txt_names
    assert any(n.startswith("transformer.") for n in shared)
    assert {"ln_final.weight", "proj"} <= shared
    # Only the input embedders are modality-specific.
    assert {n.split(".")[0] for n in img_names - txt_names} == {"image_embed"}
    assert {n.split(".")[0] for n in txt_names - img_names} == {"text_embed"}
    assert not hasattr(model.image_embed.conv1, "bias") or model.image_embed.conv1.bias is None
    n_shared = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("transformer.", "ln_final", "proj")))
    two_tower = create_model("tiny-vit")
    assert n_shared < sum(p.numel() for n, p in two_tower.named_parameters() if ".transformer." in n)


def test_clip_tokenizer_matches_open_clip_and_has_full_vocab():
    import open_clip

    from gapkit.models.tokenizers import ClipTokenizer

    tok = ClipTokenizer(context_length=77)
    assert tok.vocab_size == 49408 and tok.eot_id == 49407
    texts = ["a photo of a cat.", "Ünïcödé and punctuation!!"]
    assert torch.equal(tok(texts), open_clip.tokenize(texts, context_length=77))
    short = ClipTokenizer(context_length=5)(["one two three four five six"])
    assert short[0, -1].item() == 49407  # truncation keeps EOT


def test_word_tokenizer_is_stateless_and_puts_eot_last():
    from gapkit.models.tokenizers import WordTokenizer

    tok = WordTokenizer(vocab_size=64, context_length=6)
    ids = tok(["A photo of a cat", "cat"])
    assert ids[0, 0] == 62 and ids[0, 5] == 63  # SOT, truncated, EOT kept at the end
    assert ids[1].tolist()[:3] == [62, tok.word_id("cat"), 63] and ids[1, 3:].sum() == 0
    assert ids[0, 1] == ids[0, 4] == tok.word_id("a")  # "a" -> same id wherever it appears (case folded)
    assert int(ids.max()) == 63 and torch.equal(WordTokenizer(64, 6)(["A photo of a cat", "cat"]), ids)


def test_lit_heads_project_and_round_trip(tmp_path):
    from gapkit.models import LiTHeads, load_heads

    heads = LiTHeads(12, 7, embed_dim=5)
    x, y = np.random.default_rng(0).standard_normal((4, 12)), np.random.default_rng(1).standard_normal((3, 7))
    px, py = heads.project_image(x), heads.project_text(y)
    assert px.shape == (4, 5) and py.shape == (3, 5)
    assert np.allclose(np.linalg.norm(px, axis=1), 1, atol=1e-5)
    again = load_heads(heads.save(tmp_path / "h"))
    assert np.array_equal(again.project_image(x), px)
    with pytest.raises(GapkitError, match="expected dim 12"):
        heads.project_image(y)


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()
