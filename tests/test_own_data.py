"""The "study on your own model and data" workflow: CSV columns/separator, embed directories as
embeddings inputs, --out checks, and the pixel limit of the data layer (header-only checks)."""
from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from gapkit.cli import main
from gapkit.data import DataWarning, load_dataset
from gapkit.data.dataset import FileImages, TarImages, oversize
from gapkit.data.readers import read_csv, read_webdataset
from gapkit.embeddings import PairedEmbeddings, load_embeddings
from gapkit.errors import GapkitError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}
TINY = {"embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def fake_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels but whose data is a few bytes: opening
    it is cheap, decoding it would fail. A check that decodes cannot pass this test."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "mine"
    (d / "images").mkdir(parents=True)
    for name, rgb in COLOURS.items():
        Image.new("RGB", (12, 10), rgb).save(d / "images" / f"{name}.png")
    (d / "images" / "huge.png").write_bytes(fake_png(5000, 5000))  # 25 MP
    return d


def _colour_of(ds, i):
    return tuple(int(v) for v in np.asarray(ds.image(i))[0, 0])


# ------------------------------------------------------------------------- CSV columns / separator
@pytest.mark.parametrize("header,sep,suffix", [("image,caption", ",", ".csv"), ("image_path\ttext", "\t", ".csv"),
                                               ("path,title", ",", ".txt"), ("filepath\tcaption", "\t", ".tsv")])
def test_csv_columns_and_separator_are_detected(data_dir, header, sep, suffix):
    img_col, cap_col = header.split(sep)
    lines = [header] + [f"images/{c}.png{sep}a {c} square" for c in COLOURS]
    p = data_dir / f"pairs{suffix}"
    p.write_text("\n".join(lines) + "\n")
    ds = read_csv(p)
    assert ds.info["columns"] == {"image": img_col, "caption": cap_col, "sep": sep}
    assert ds.captions == [f"a {c} square" for c in COLOURS]
    for i, c in enumerate(COLOURS):  # the caption -> image map points at the right file
        assert _colour_of(ds, i) == COLOURS[c]


def test_explicit_columns_win_over_detection(data_dir):
    p = data_dir / "pairs.csv"
    # both 'image' and 'img' exist; the user names the other pair of columns and a ';' separator
    p.write_text("image;caption;img;alt\nimages/red.png;wrong;images/blue.png;a blue one\n")
    ds = read_csv(p, img_key="img", caption_key="alt", sep=";")
    assert ds.captions == ["a blue one"] and _colour_of(ds, 0) == COLOURS["blue"]
    assert read_csv(p, sep=";").captions == ["wrong"]  # detection: the first recognised names
    with pytest.raises(GapkitError, match="same column"):
        read_csv(p, img_key="img", caption_key="img", sep=";")


# ------------------------------------------------------------------------- pixel limit
def test_oversize_reads_the_header_only(data_dir):
    huge = data_dir / "images" / "huge.png"
    assert "25 MP, above the 16 MP limit" in oversize(huge)
    assert oversize(huge, max_pixels=None) is None
    assert oversize(huge.read_bytes(), max_pixels=30_000_000) is None
    bomb = data_dir / "bomb.png"  # 400 MP: PIL refuses it at open; we report it, no exception
    bomb.write_bytes(fake_png(20000, 20000))
    assert "decompression-bomb" in oversize(bomb, max_pixels=None)
    assert oversize(data_dir / "images" / "red.png", max_pixels=12 * 10) is None
    assert "above the 0.000119 MP limit" in oversize(data_dir / "images" / "red.png", max_pixels=119)


def test_readers_skip_images_above_the_limit_with_a_count(data_dir):
    p = data_dir / "pairs.csv"
    p.write_text("image,caption\n" + "".join(f"images/{c}.png,a {c} one\n" for c in [*COLOURS, "huge"]))
    with pytest.warns(DataWarning, match=r"skipped 1 rows: 1 image too large \(e.g. images/huge.png \(5000x5000"):
        ds = read_csv(p)
    assert ds.n_images == 4 and ds.info["skipped"] == {"image too large": 1}
    with pytest.warns(DataWarning, match="skipped 5 rows: 5 image too large"):  # a tiny limit: all skipped
        with pytest.raises(GapkitError, match="no usable"):
            read_csv(p, max_pixels=100)
    with pytest.raises(GapkitError, match="image too large"):
        read_csv(p, strict=True)


def test_file_and_tar_sources_refuse_before_decoding(data_dir, tmp_path):
    huge = str(data_dir / "images" / "huge.png")
    red = str(data_dir / "images" / "red.png")
    src = FileImages([red, huge])
    assert src.load(0).size == (12, 10)
    with pytest.raises(GapkitError, match="too large to decode.*5000x5000"):
        src.load(1)
    assert src.subset(np.array([1])).max_pixels == src.max_pixels
    with pytest.raises(GapkitError, match="above the 0.0001 MP limit"):
        FileImages([red], max_pixels=100).load(0)
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tf:
        for key, data in (("a", (data_dir / "images" / "red.png").read_bytes()), ("b", fake_png(5000, 5000))):
            for name, payload in ((f"{key}.png", data), (f"{key}.txt", b"a caption")):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    with pytest.warns(DataWarning, match="1 image too large"):
        ds = read_webdataset(shard)
    assert ds.n_images == 1 and _colour_of(ds, 0) == COLOURS["red"]
    with pytest.raises(GapkitError, match="too large to decode"):
        TarImages([(str(shard), *ds.images.members[0][1:])], max_pixels=10).load(0)


def test_openclipart_builder_skips_huge_pngs(tmp_path, monkeypatch):
    png, svg = tmp_path / "png" / "animals", tmp_path / "svg" / "animals"
    png.mkdir(parents=True)
    svg.mkdir(parents=True)
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(png / "cat.png")
    (png / "whale.png").write_bytes(fake_png(6000, 6000))
    for name in ("cat", "whale"):
        (svg / f"{name}.svg").write_text(f"<svg><metadata><cc:Work><dc:title>a {name}</dc:title></cc:Work>"
                                         "</metadata></svg>")
    monkeypatch.setenv("GAPKIT_OPENCLIPART_PNG_DIR", str(tmp_path / "png"))
    monkeypatch.setenv("GAPKIT_OPENCLIPART_SVG_DIR", str(tmp_path / "svg"))
    with pytest.warns(DataWarning, match="openclipart: skipped 1 rows: 1 image too large.*whale"):
        ds = load_dataset("openclipart", "all", cache_dir=tmp_path / "cache")
    assert ds.image_ids == ["animals/cat"] and ds.captions == ["a cat"]
    again = load_dataset("openclipart", "all", cache_dir=tmp_path / "cache")  # from the prepared cache
    assert again.image_ids == ["animals/cat"] and again.images.max_pixels == 16_000_000
    both = load_dataset("openclipart", "all", cache_dir=tmp_path / "cache", max_pixels=None)
    assert both.image_ids == ["animals/cat", "animals/whale"]


# ------------------------------------------------------------------------- embed directories
def test_load_embeddings_reads_an_embed_directory(tmp_path, rng):
    # Imported here, not at module level: importing the submodule at collection time would shadow
    # the function gapkit.encoders.extraction that other test modules import by name.
    from gapkit.encoders.extraction import load_embed_dir, save_embed_dir

    img, txt = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    pe = PairedEmbeddings(img, txt, np.array([0, 0, 1, 2]), image_ids=["a", "b", "c"],
                          captions=["w", "x", "y", "z"], metadata={"model": "m"})
    out = save_embed_dir(pe, tmp_path / "emb.npz")  # a directory whose name looks like a file
    back = load_embeddings(out)
    ref = load_embed_dir(out)
    np.testing.assert_array_equal(back.image, img)
    np.testing.assert_array_equal(back.text, ref.text)
    assert back.text_to_image.tolist() == [0, 0, 1, 2]
    assert back.captions == ["w", "x", "y", "z"] and back.image_ids == ["a", "b", "c"]
    assert back.metadata["layout"] == "embed-dir" and back.metadata["manifest"]["model"] == "m"
    (out / "captions.json").unlink()
    (out / "manifest.json").unlink()
    bare = load_embeddings(out)
    assert bare.captions is None and "manifest" not in bare.metadata
    with pytest.raises(GapkitError, match="given twice"):
        load_embeddings(out, text_to_image=np.array([0, 1, 2, 2]))


# ------------------------------------------------------------------------- the CLI, end to end
@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "gapkit-tiny-own.json"
    p.write_text(json.dumps(TINY))
    return p


def test_cli_embed_own_csv_then_measure_the_directory(data_dir, cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = data_dir / "pairs.csv"
    p.write_text("img;alt;extra\n" + "".join(f"images/{c}.png;a {c} one;x\n" for c in COLOURS))
    base = ["embed", "--encoder", f"open_clip:{cfg}", "--dataset", str(p), "--split", "all", "--quiet",
            "--cache-dir", str(tmp_path / "cache")]
    # without the options the columns are not recognised: one line, exit 2, nothing written
    assert main(base + ["--out", str(tmp_path / "e0")]) == 2
    assert "--image-column" in capsys.readouterr().err and not (tmp_path / "e0").exists()
    # an array-file name for --out is refused before any work
    assert main(base + ["--image-column", "img", "--caption-column", "alt", "--sep", ";",
                        "--out", str(tmp_path / "emb.npz")]) == 2
    assert "writes a directory" in capsys.readouterr().err and not (tmp_path / "emb.npz").exists()
    out = tmp_path / "emb"
    assert main(base + ["--image-column", "img", "--caption-column", "alt", "--sep", ";", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset_columns"] == {"image": "img", "caption": "alt", "sep": ";"}
    pe = load_embeddings(out)
    assert pe.captions == [f"a {c} one" for c in COLOURS] and pe.n_image == 4
    # `gapkit measure --embeddings DIR` gives the same numbers as on the safetensors inside it
    assert main(["measure", "--embeddings", str(out), "--out", str(tmp_path / "m1.json")]) == 0
    assert main(["measure", "--embeddings", str(out / "embeddings.safetensors"), "--out", str(tmp_path / "m2.json")]) == 0
    r1 = json.loads((tmp_path / "m1.json").read_text())["results"]
    r2 = json.loads((tmp_path / "m2.json").read_text())["results"]
    assert r1["centroid_distance"] == pytest.approx(r2["centroid_distance"]) and r1["centroid_distance"] > 0


def _documented_commands() -> list[str]:
    """Every `gapkit ...` command line of the own-data steps in docs/demo.md and `gapkit demo --help`."""
    import re
    from pathlib import Path

    from gapkit.commands.demo import DESCRIPTION

    doc = (Path(__file__).resolve().parents[1] / "docs" / "demo.md").read_text()
    section = doc[doc.index("## The same study on your own model and data"):doc.index("## The report")]
    help_part = DESCRIPTION[DESCRIPTION.index("the same study on your own model and data"):]
    help_part = re.sub(r"\n\s+(--fit)", r" \1", help_part)  # a command wrapped onto two lines
    lines = [ln.split("`")[0] for ln in re.findall(r"(?m)^\s*(?:\d\.\s+\w+:\s+)?(gapkit \w+ .*)$", section + help_part)]
    return [re.sub(r"\s+\(also .*$", "", ln).strip() for ln in lines]


def test_documented_own_data_commands_use_real_options():
    """The documented steps name only options that exist, spelled out (no argparse abbreviations
    such as --data for --dataset), and parse."""
    import shlex

    from gapkit.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    cmds = _documented_commands()
    assert sum(c.startswith("gapkit embed") for c in cmds) >= 4 and any("gapkit report" in c for c in cmds)
    for cmd in cmds:
        argv = shlex.split(cmd)[1:]
        sub = subs[argv[0]]
        for tok in argv[1:]:
            if tok.startswith("--"):
                assert tok in sub._option_string_actions, (tok, cmd)
        parser.parse_args(argv)


def test_embed_separator_names():
    from gapkit.cli import build_parser
    from gapkit.commands.embed import _dataset_kwargs

    base = ["embed", "--encoder", "towers", "--dataset", "x.tsv", "--out", "o"]
    for given, want in (("tab", "\t"), ("\\t", "\t"), (";", ";"), ("comma", ",")):
        assert _dataset_kwargs(build_parser().parse_args(base + ["--sep", given]))["sep"] == want
    assert _dataset_kwargs(build_parser().parse_args(base + ["--max-pixels", "0"]))["max_pixels"] is None
    assert _dataset_kwargs(build_parser().parse_args(base)) == {}
