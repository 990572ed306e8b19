"""User-data readers on small files written here: formats, multi-caption maps, bad rows, escapes."""
from __future__ import annotations

import io
import json
import tarfile
import warnings

import numpy as np
import pytest
from PIL import Image

from gapkit.data import DataWarning, load_dataset
from gapkit.data.readers import (detect_format, open_user_dataset, read_coco, read_csv, read_flickr,
                                 read_folder, read_jsonl, read_webdataset)
from gapkit.errors import GapkitError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@pytest.fixture
def img_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name, rgb in COLOURS.items():
        Image.new("RGB", (8, 6), rgb).save(d / f"{name}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return d


def _colour_of(ds, i):
    return tuple(int(v) for v in np.asarray(ds.image(i))[0, 0])


def _check_colours(ds):
    """Every caption names the colour of its image: the caption -> image map is right."""
    for cap, i in zip(ds.captions, ds.text_to_image):
        word = next(w for w in COLOURS if w in cap)
        assert _colour_of(ds, int(i)) == COLOURS[word], (cap, ds.image_ids[i])


def test_tsv_groups_captions_and_skips_bad_rows(img_dir):
    tsv = img_dir / "train.tsv"
    tsv.write_text("filepath\ttitle\nred.png\ta red square\nblue.png\tblue\ngreen.png\tsomething green\n"
                   "red.png\tanother red one\nmissing.png\tred ghost\nbroken.png\ta red broken file\n"
                   "green.png\t  \nthree\tfields\there\n")
    with pytest.warns(DataWarning, match=r"skipped 4 rows.*1 missing image.*") as rec:
        ds = read_csv(tsv)
    msg = str(rec[0].message)
    assert "1 corrupt image" in msg and "1 empty caption" in msg and "1 unreadable row" in msg
    assert ds.image_ids == ["red.png", "blue.png", "green.png"]
    assert ds.captions == ["a red square", "another red one", "blue", "something green"]
    assert ds.text_to_image.tolist() == [0, 0, 1, 2]
    _check_colours(ds)
    with pytest.raises(GapkitError, match="strict mode"):
        read_csv(tsv, strict=True)


def test_csv_configurable_columns_and_separator(img_dir):
    p = img_dir / "caps.csv"
    p.write_text('img,text\nred.png,"red, bright"\nblue.png,blue sky\n')
    ds = read_csv(p, img_key="img", caption_key="text")  # comma guessed for a .csv without tabs
    assert ds.captions == ["red, bright", "blue sky"]
    p2 = img_dir / "caps.txt"
    p2.write_text("a|b\nred.png|red\n")
    assert read_csv(p2, img_key="a", caption_key="b", sep="|").captions == ["red"]
    p3 = img_dir / "ab.csv"
    p3.write_text("a,b\nred.png,red\n")  # no recognised column names: one clear error naming the option
    with pytest.raises(GapkitError, match="no image column in the header \\(a, b\\).*img_key"):
        read_csv(p3)
    with pytest.raises(GapkitError, match="no caption column 'title'"):
        read_csv(p, img_key="img", caption_key="title")


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "sub/../../x.png"])
def test_paths_escaping_the_root_are_refused(img_dir, tmp_path, bad):
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    tsv = img_dir / "m.tsv"
    tsv.write_text(f"filepath\ttitle\nred.png\tred\n{bad}\tsneaky\n")
    with pytest.raises(GapkitError, match="escapes|absolute"):
        read_csv(tsv)


def test_symlink_out_of_root_is_refused(img_dir, tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    (img_dir / "link.png").symlink_to(tmp_path / "secret.png")
    (img_dir / "m.tsv").write_text("filepath\ttitle\nlink.png\tred\n")
    with pytest.raises(GapkitError, match="outside the dataset root"):
        read_csv(img_dir / "m.tsv")


def test_jsonl_caption_lists_and_bad_lines(img_dir):
    p = img_dir / "d.jsonl"
    p.write_text(json.dumps({"image": "red.png", "captions": ["red one", "red two"]}) + "\n{not json\n"
                 + json.dumps({"filepath": "green.png", "text": "green"}) + "\n")
    with pytest.warns(DataWarning, match="1 unreadable row"):
        ds = read_jsonl(p)
    assert ds.captions == ["red one", "red two", "green"] and ds.text_to_image.tolist() == [0, 0, 1]
    _check_colours(ds)


def test_coco_several_captions_per_image(img_dir):
    coco = {"images": [{"id": 7, "file_name": "blue.png"}, {"id": 3, "file_name": "red.png"}],
            "annotations": [{"id": 1, "image_id": 3, "caption": "red a"}, {"id": 2, "image_id": 7, "caption": "blue a"},
                            {"id": 3, "image_id": 3, "caption": "red b"}, {"id": 4, "image_id": 99, "caption": "x"}]}
    p = img_dir / "captions_val.json"
    p.write_text(json.dumps(coco))
    with pytest.warns(DataWarning, match="unknown image_id"):
        ds = read_coco(p)
    assert ds.image_ids == ["blue.png", "red.png"]
    assert ds.captions == ["blue a", "red a", "red b"] and ds.text_to_image.tolist() == [0, 1, 1]
    _check_colours(ds)
    assert detect_format(p) == "coco"


def test_flickr_token_file_and_results_csv(img_dir):
    tok = img_dir.parent / "Flickr8k.token.txt"
    tok.write_text("red.png#0\tA red thing .\nred.png#1\tred again\ngreen.png#0\tgreen grass\n")
    (img_dir.parent / "Images").symlink_to(img_dir)
    ds = read_flickr(tok)
    assert ds.n_images == 2 and ds.captions_of(0) == ["A red thing .", "red again"]
    _check_colours(ds)
    res = img_dir / "results.csv"
    res.write_text("image_name| comment_number| comment\nblue.png| 0| a blue sky\nblue.png| 1| blue\n")
    ds2 = open_user_dataset(res, root=img_dir)
    assert ds2.captions == ["a blue sky", "blue"] and detect_format(res) == "flickr"


def test_folder_with_sidecars_and_captions_file(img_dir):
    (img_dir / "red.txt").write_text("red one\nred two\n")
    (img_dir / "blue.txt").write_text("blue\n")
    with pytest.warns(DataWarning, match="no caption"):
        ds = read_folder(img_dir)
    assert sorted(ds.image_ids) == ["blue.png", "red.png"] and len(ds.captions) == 3
    _check_colours(ds)
    cj = img_dir.parent / "caps.json"
    cj.write_text(json.dumps({"green.png": ["green 1", "green 2"], "red.png": "red"}))
    ds = read_folder(img_dir, captions=cj)
    assert ds.captions == ["green 1", "green 2", "red"]
    _check_colours(ds)


def _add(tf, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _png(rgb):
    buf = io.BytesIO()
    Image.new("RGB", (5, 5), rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_webdataset_shards(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    with tarfile.open(d / "000.tar", "w") as tf:
        _add(tf, "s/0001.png", _png(COLOURS["red"]))
        _add(tf, "s/0001.txt", b"red square\nred again")
        _add(tf, "s/0002.jpg", b"garbage")
        _add(tf, "s/0002.txt", b"red corrupt")
        _add(tf, "s/0003.txt", b"red without image")
    with tarfile.open(d / "001.tar", "w") as tf:
        _add(tf, "0004.png", _png(COLOURS["blue"]))
        _add(tf, "0004.json", json.dumps({"caption": "a blue one"}).encode())
    with pytest.warns(DataWarning) as rec:
        ds = read_webdataset(d)
    assert "1 corrupt image" in str(rec[0].message) and "1 missing image" in str(rec[0].message)
    assert ds.image_ids == ["000.tar/s/0001", "001.tar/0004"]
    assert ds.captions == ["red square", "red again", "a blue one"]
    _check_colours(ds)
    # also via load_dataset (cached) with a seeded split
    with pytest.warns(DataWarning):
        full = load_dataset(d, "all", cache_dir=tmp_path / "c")
    assert full.captions == ds.captions
    _check_colours(load_dataset(d, "all", cache_dir=tmp_path / "c"))


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png"])
def test_webdataset_escaping_member_is_refused(tmp_path, member):
    with tarfile.open(tmp_path / "bad.tar", "w") as tf:
        _add(tf, member, _png(COLOURS["red"]))
    with pytest.raises(GapkitError, match="escapes"):
        read_webdataset(tmp_path / "bad.tar")


def test_user_path_through_load_dataset_and_cache(img_dir, tmp_path):
    tsv = img_dir / "all.tsv"
    rows = "".join(f"{c}.png\t{c} {k}\n" for c in COLOURS for k in range(3))
    tsv.write_text("filepath\ttitle\n" + rows)
    cache = tmp_path / "cache"
    ds = load_dataset(tsv, "all", cache_dir=cache)
    assert ds.n_images == 3 and len(ds.captions) == 9
    assert any((cache / "datasets").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_dataset(tsv, "all", cache_dir=cache)
    assert again.captions == ds.captions
    _check_colours(again)
    with pytest.raises(GapkitError, match="neither a built-in name"):
        load_dataset(tmp_path / "nope.tsv")
    with pytest.raises(GapkitError, match="takes no option"):
        load_dataset(tsv, "all", cache_dir=cache, bogus=1)
