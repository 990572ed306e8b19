"""`gapkit embed --texts/--images` (one side alone), --key, and the torch-free cache hit.

References are computed here with the encoder itself (encode_text / preprocess + encode_image on
the same inputs), never read back from what the command wrote.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.embeddings import load_array, load_embeddings
from gapkit.errors import GapkitError

ENC = "gapkit:tiny-vit"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def encoder():
    from gapkit.encoders import get_encoder

    return get_encoder(ENC, seed=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("sides")
    (d / "q.txt").write_text("a red apple\n\n  the   moon at night \nblue sky\n")
    (d / "q.tsv").write_text("id\ttitle\n1\ta red apple\n2\tthe moon at night\n")
    (d / "q.jsonl").write_text('{"text": "a red apple"}\n{"text": ["the moon at night", "blue sky"]}\n')
    (d / "one.csv").write_text("sentence\nhello world\nsecond line\n")
    imgs = d / "imgs"
    (imgs / "sub").mkdir(parents=True)
    for name, c in (("b.png", "red"), ("a.png", "green"), ("sub/c.png", "blue")):
        Image.new("RGB", (24, 16), c).save(imgs / name)
    (imgs / "broken.png").write_bytes(b"not an image")
    (imgs / "notes.txt").write_text("not an image file\n")
    return d


def run(*argv: str) -> int:
    return main([str(a) for a in argv])


# ----------------------------------------------------------------------------- reading inputs
def test_read_texts_formats(files):
    from gapkit.encoders.sides import read_texts

    txt = read_texts(files / "q.txt")
    assert txt.items == ["a red apple", "the moon at night", "blue sky"]  # blank line skipped, spaces folded
    assert txt.ids == ["line 1", "line 3", "line 4"]
    assert read_texts(files / "q.tsv").items == ["a red apple", "the moon at night"]
    assert read_texts(files / "q.jsonl").items == ["a red apple", "the moon at night", "blue sky"]
    assert read_texts(files / "one.csv").items == ["hello world", "second line"]  # one column needs no name
    with pytest.raises(GapkitError, match="no text column 'nope'"):
        read_texts(files / "q.tsv", column="nope")


def test_list_images_sorted_under_folder_corrupt_skipped(files):
    from gapkit.encoders.sides import list_images

    with pytest.warns(UserWarning, match="1 corrupt image"):
        got = list_images(files / "imgs")
    assert got.ids == ["a.png", "b.png", "sub/c.png"]
    assert all(Path(p).is_absolute() and Path(p).is_relative_to((files / "imgs").resolve()) for p in got.items)


def test_list_images_refuses_a_link_out_of_the_folder(tmp_path, files):
    from gapkit.encoders.sides import list_images

    (tmp_path / "f").mkdir()
    os.symlink(files / "imgs" / "a.png", tmp_path / "f" / "x.png")
    with pytest.raises(GapkitError, match="outside"):
        list_images(tmp_path / "f")
    assert list_images(tmp_path / "f", allow_roots=[files / "imgs"]).ids == ["x.png"]  # --root lets it in


# ----------------------------------------------------------------------------- embed one side
def test_embed_texts_equals_the_encoder_and_is_cached(files, tmp_path, encoder, capsys):
    import torch

    out, cache = tmp_path / "q", tmp_path / "cache"
    assert run("embed", "--encoder", ENC, "--texts", files / "q.txt", "--cache-dir", cache, "--out", out) == 0
    assert "from model" in capsys.readouterr().out
    rows = load_array(out)
    with torch.inference_mode():
        ref = encoder.encode_text(["a red apple", "the moon at night", "blue sky"]).numpy()
    np.testing.assert_allclose(rows, ref, rtol=1e-5, atol=1e-6)
    man = json.loads((out / "manifest.json").read_text())
    assert man["sides"] == ["text"] and man["model"] == ENC and man["n_text"] == 3 and man["dataset"] == "q.txt"
    assert json.loads((out / "captions.json").read_text())["captions"][1] == "the moon at night"
    # a repeat is answered from the cache, same rows
    assert run("embed", "--encoder", ENC, "--texts", files / "q.txt", "--cache-dir", cache, "--out", tmp_path / "q2") == 0
    assert "from cache" in capsys.readouterr().out
    np.testing.assert_array_equal(load_array(tmp_path / "q2"), rows)
    # other texts are a new entry, not a stale hit
    assert run("embed", "--encoder", ENC, "--texts", files / "q.tsv", "--cache-dir", cache, "--out", tmp_path / "q3") == 0
    assert "from model" in capsys.readouterr().out
    assert load_array(tmp_path / "q3").shape == (2, encoder.embed_dim)


def test_embed_images_equals_the_encoder(files, tmp_path, encoder, capsys):
    import torch
    from PIL import Image

    out = tmp_path / "i"
    assert run("embed", "--encoder", ENC, "--images", files / "imgs", "--no-cache", "--out", out, "--quiet") == 0
    assert "1 corrupt image" in capsys.readouterr().err
    rows = load_array(out)
    with torch.inference_mode():
        batch = torch.stack([encoder.preprocess(Image.open(files / "imgs" / n).convert("RGB"))
                             for n in ("a.png", "b.png", "sub/c.png")])
        ref = encoder.encode_image(batch).numpy()
    np.testing.assert_allclose(rows, ref, rtol=1e-4, atol=1e-5)
    assert json.loads((out / "captions.json").read_text())["image_ids"] == ["a.png", "b.png", "sub/c.png"]
    assert json.loads((out / "manifest.json").read_text())["sides"] == ["image"]


# ----------------------------------------------------------------------------- one-side dirs downstream
@pytest.fixture()
def side_dirs(tmp_path):
    from gapkit.encoders.embed_dir import save_side_dir

    r = np.random.default_rng(0)
    x, y = r.standard_normal((12, 8)).astype(np.float32), r.standard_normal((12, 8)).astype(np.float32)
    save_side_dir(x, "image", tmp_path / "im", {"model": "m"}, image_ids=[f"{k}.png" for k in range(12)])
    save_side_dir(y, "text", tmp_path / "tx", {"model": "m"}, captions=[f"caption {k}" for k in range(12)])
    return tmp_path, x, y


def test_measure_pairs_two_one_side_dirs(side_dirs, capsys):
    from gapkit.metrics import measure

    d, x, y = side_dirs
    assert run("measure", "--image", d / "im", "--text", d / "tx", "--metrics", "geometry", "--out", d / "m.json") == 0
    rec = json.loads((d / "m.json").read_text())
    assert (rec["model"], rec["dataset"]) == ("m", "im + tx")  # names flow from the two manifests
    got = rec["results"]
    ref = measure(x, y, metrics=["geometry"])
    assert got["centroid_distance"] == pytest.approx(ref["centroid_distance"], rel=1e-6)
    with pytest.raises(GapkitError, match="text embeddings only"):
        load_embeddings(d / "tx")


def test_fix_apply_text_writes_a_one_side_dir(side_dirs):
    from gapkit.encoders.embed_dir import save_side_dir
    from gapkit.fixers import create_fixer

    d, x, y = side_dirs
    np.savez(d / "calib.npz", image=x + 1.0, text=y - 1.0)
    q = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    save_side_dir(q, "text", d / "q", {"model": "m"}, captions=list("abcde"))
    assert run("fix", "--method", "center", "--fit", d / "calib.npz", "--apply-text", d / "q", "--out", d / "qf") == 0
    fx = create_fixer("center").fit(x + 1.0, y - 1.0)
    np.testing.assert_allclose(load_array(d / "qf"), fx.transform(q, "text"), rtol=1e-5, atol=1e-6)
    man = json.loads((d / "qf" / "manifest.json").read_text())
    assert man["sides"] == ["text"] and man["fixer"]["name"] == "center"
    assert json.loads((d / "qf" / "captions.json").read_text())["captions"] == list("abcde")


def test_search_query_vector_embed_dir_one_list_per_row(side_dirs, capsys):
    from gapkit.search import open_index
    from gapkit.search.build import build_index

    d, x, y = side_dirs
    from gapkit.embeddings import PairedEmbeddings

    build_index(PairedEmbeddings(x, y), out=d / "idx", backend="exact")
    assert run("search", d / "idx", "--query-vector", d / "tx", "--k", "3", "--json") == 0
    got = json.loads(capsys.readouterr().out)
    assert got["query_role"] == "text" and len(got["queries"]) == 12
    assert got["queries"][4]["query"] == "caption 4"
    idx = open_index(d / "idx")
    for i in (0, 4, 11):
        ref = idx.search(vector=y[i], query_role="text", k=3)
        assert [h["id"] for h in got["queries"][i]["hits"]] == [h.id for h in ref]
    # an image-only directory queries as an image without --query-role
    assert run("search", d / "idx", "--query-vector", d / "im", "--k", "2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["query_role"] == "image"


# ----------------------------------------------------------------------------- --key
def test_key_picks_arrays(tmp_path):
    r = np.random.default_rng(2)
    a, b, c = (r.standard_normal((6, 4)).astype(np.float32) for _ in range(3))
    np.savez(tmp_path / "m.npz", feats_img=a, feats_txt=b, other=c)
    pe = load_embeddings(tmp_path / "m.npz", key="feats_img,feats_txt")
    np.testing.assert_array_equal(pe.image, a)
    np.testing.assert_array_equal(pe.text, b)
    pe2 = load_embeddings(image=tmp_path / "m.npz", text=tmp_path / "m.npz", key="other,feats_txt")
    np.testing.assert_array_equal(pe2.image, c)
    np.testing.assert_array_equal(load_array(tmp_path / "m.npz", "other"), c)
    with pytest.raises(GapkitError, match=r"feats_img, feats_txt, other.*--key"):
        load_array(tmp_path / "m.npz")
    np.savez(tmp_path / "s.npz", both=np.stack([a, b]), meta=np.zeros(3))
    np.testing.assert_array_equal(load_embeddings(tmp_path / "s.npz", key="both").text, b)


# ----------------------------------------------------------------------------- cache without torch
def test_encoder_spec_changes_when_a_named_weight_file_changes(tmp_path):
    from gapkit.encoders.cache import encoder_spec

    heads = tmp_path / "heads.safetensors"
    heads.write_bytes(b"1234")
    s1 = encoder_spec(f"towers:{heads}", None, 0)
    os.utime(heads, ns=(1, 1))
    assert encoder_spec(f"towers:{heads}", None, 0) != s1
    assert encoder_spec("towers", None, 0) != encoder_spec("towers", None, 1)


def test_a_cache_hit_does_not_import_torch(files, tmp_path, encoder):
    """Whole-process property behind the >= 20x target of bench_embed.py: a repeat embed (paired
    dataset and one side) reads the cache without importing torch or the model. The first call
    runs here (the model is built in this process), the repeat in a fresh interpreter."""
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=SRC, HF_HUB_OFFLINE="1")
    jobs = [["--texts", str(files / "q.txt")],
            ["--dataset", "emoji", "--limit", "6", "--split", "all"]]
    probe = ("import sys; from gapkit.cli import main; rc = main(sys.argv[1:]); "
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")
    for k, job in enumerate(jobs):
        argv = ["embed", "--encoder", ENC, *job, "--cache-dir", str(cache), "--quiet"]
        assert main([*argv, "--out", str(tmp_path / f"a{k}")]) == 0
        second = subprocess.run([sys.executable, "-c", probe, *argv, "--out", str(tmp_path / f"b{k}")],
                                capture_output=True, text=True, env=env, timeout=600)
        assert second.returncode == 0, second.stderr[-800:]
        assert "NO-TORCH" in second.stdout.split(), second.stdout + second.stderr[-800:]
        assert "from cache" in second.stderr
        np.testing.assert_array_equal(load_array(tmp_path / f"b{k}", side="text"),
                                      load_array(tmp_path / f"a{k}", side="text"))
