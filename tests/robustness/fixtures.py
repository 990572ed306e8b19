"""The world the fuzz cases run in, and the cases themselves.

World.build(root) writes, under root/in, valid inputs made with gapkit's own writers (a stack, an
embed directory, a clip-retrieval folder, a saved fixer, records, a tiny image dataset, run
folders) and hostile variants of each; under root/out, output hazards (a FIFO, a device node, links,
a user's folder, a file where a folder is expected). Cases name them as {placeholders}.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEEP = 100_000  # nesting depth of the "JSON bomb" inputs


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: str = ""  # a word the one error line must contain (case-insensitive), if any


def fingerprint_tree(root: Path) -> dict[str, tuple]:
    """{relative path: (kind, size, mtime_ns, sha256 of regular files)} of everything under root,
    without following links or opening FIFOs and devices."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                out[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode), st.st_rdev)
    return out


def _deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def _gapped(n: int = 40, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, d))
    x, y = z + 1.5 * np.eye(d)[0], z - 1.5 * np.eye(d)[0]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.float32)


@dataclass
class World:
    root: Path
    paths: dict[str, str]

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    def expand(self, argv: tuple[str, ...]) -> list[str]:
        return [a.format(**self.paths) for a in argv]

    @classmethod
    def build(cls, root: Path) -> "World":
        i, o = root / "in", root / "out"
        for d in (i, o, root / "scratch"):
            d.mkdir(parents=True)
        p: dict[str, str] = {"root": str(root), "in": str(i), "out": str(o)}
        _arrays(i, p)
        _embed_dirs(i, p)
        _fixers(i, p)
        _records(i, p)
        _datasets(i, p, root)
        _runs(i, p)
        _hazards(i, o, p)
        (root / "paths.json").write_text(json.dumps(p))
        return cls(root, p)

    @classmethod
    def reopen(cls, root: Path) -> "World":
        """A world built earlier (for running cases by hand while debugging)."""
        return cls(root, json.loads((root / "paths.json").read_text()))


# --------------------------------------------------------------------------------- inputs
def _arrays(i: Path, p: dict[str, str]) -> None:
    import torch

    x, y = _gapped()
    np.save(i / "stack.npy", np.stack([x, y]))
    np.save(i / "image.npy", x)
    np.save(i / "text.npy", y)
    np.save(i / "text9.npy", np.random.default_rng(1).standard_normal((40, 9)).astype(np.float32))
    np.save(i / "nan.npy", np.stack([np.full_like(x, np.nan), y]))
    np.save(i / "one_row.npy", np.stack([x[:1], y[:1]]))
    np.save(i / "ragged3d.npy", np.zeros((3, 4, 8), np.float32))
    np.save(i / "int.npy", np.zeros((2, 40, 8), np.int64))
    np.save(i / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(i / "pairs.npz", image=x, text=y)
    np.savez(i / "unnamed.npz", a=x, b=y)
    raw = (i / "stack.npy").read_bytes()
    (i / "truncated.npy").write_bytes(raw[:150])
    (i / "garbage.npy").write_bytes(os.urandom(300))
    (i / "empty.npy").write_bytes(b"")
    (i / "garbage.npz").write_bytes(os.urandom(300))
    (i / "garbage.safetensors").write_bytes(os.urandom(300))
    (i / "huge_header.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    (i / "garbage.parquet").write_bytes(b"PAR1" + os.urandom(200))
    (i / "evil.pkl").write_bytes(b"\x80\x04K\x01.")
    torch.save({"image": torch.zeros(3, 4), "obj": Path("/etc")}, i / "evil.pt")
    (i / "data.xyz").write_text("1 2 3\n")
    (i / "plainfile").write_text("not a folder\n")
    (i / "target.txt").write_text("the user's file\n")
    # text_to_image maps
    (i / "map_big.json").write_text(json.dumps([10**30] * 40))
    (i / "map_float.json").write_text(json.dumps([0.5] * 40))
    (i / "map_neg.json").write_text(json.dumps([-1] * 40))
    (i / "map_short.json").write_text(json.dumps([0, 1]))
    (i / "map_deep.json").write_text(_deep_json())
    (i / "map_dict.json").write_text(json.dumps({"a": 1}))
    (i / "map_words.txt").write_text("one\ntwo\n")
    (i / "map_bin.txt").write_bytes(b"\xff\xfe\x00\x01" * 10)
    # a 3 MB-ish zip bomb: 400 MiB of zeros declared as an .npy member
    with zipfile.ZipFile(i / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        hdr = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
        hdr["shape"] = (2, 100 * 2**20 // 2 // 1, 1)
        with zf.open("arr_0.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, hdr)
            chunk = bytes(2**20)
            for _ in range(400):
                fh.write(chunk)
    p.update({k: str(i / f) for k, f in {
        "stack": "stack.npy", "image": "image.npy", "text": "text.npy", "text9": "text9.npy", "nan": "nan.npy",
        "one_row": "one_row.npy", "ragged3d": "ragged3d.npy", "int_npy": "int.npy", "objects": "objects.npy",
        "npz": "pairs.npz", "unnamed_npz": "unnamed.npz", "truncated": "truncated.npy", "garbage": "garbage.npy",
        "empty": "empty.npy", "garbage_npz": "garbage.npz", "garbage_st": "garbage.safetensors",
        "huge_header": "huge_header.safetensors", "garbage_parquet": "garbage.parquet", "pkl": "evil.pkl",
        "evil_pt": "evil.pt", "xyz": "data.xyz", "plainfile": "plainfile", "target": "target.txt",
        "map_big": "map_big.json", "map_float": "map_float.json", "map_neg": "map_neg.json",
        "map_short": "map_short.json", "map_deep": "map_deep.json", "map_dict": "map_dict.json",
        "map_words": "map_words.txt", "map_bin": "map_bin.txt", "bomb": "bomb.npz"}.items()})


def _embed_dirs(i: Path, p: dict[str, str]) -> None:
    from safetensors.numpy import load_file, save_file

    from gapkit.embeddings import PairedEmbeddings
    from gapkit.encoders.extraction import save_embed_dir

    x, y = _gapped()
    pe = PairedEmbeddings(x, y, None, image_ids=[f"im{k}" for k in range(40)],
                          captions=[f"caption {k}" for k in range(40)],
                          metadata={"model": "fuzz", "weights_hash": "0", "dataset_fingerprint": "f",
                                    "n_images_total": 80, "n_texts_total": 80, "shard": [0, 2],
                                    "image_index": list(range(0, 80, 2)), "text_index": list(range(0, 80, 2))})
    save_embed_dir(pe, i / "embdir")
    for name, change in {
        "shard_noindex": lambda a: a.pop("image_index"),
        "shard_dims": lambda a: a.update(image=np.zeros((40, 5), np.float32), text=np.zeros((40, 5), np.float32)),
        "shard_badindex": lambda a: a.update(image_index=np.full(40, 10**6, np.int64)),
    }.items():
        shutil.copytree(i / "embdir", i / name)
        arrays = dict(load_file(str(i / name / "embeddings.safetensors")))
        change(arrays)
        save_file(arrays, str(i / name / "embeddings.safetensors"))
    shutil.copytree(i / "embdir", i / "shard_badmanifest")
    (i / "shard_badmanifest" / "manifest.json").write_text(_deep_json())
    shutil.copytree(i / "embdir", i / "shard_capslist")
    (i / "shard_capslist" / "captions.json").write_text("[1, 2, 3]")
    # clip-retrieval folders
    for name, dims in {"clip": (8, 8), "clip_mixed": (8, 6)}.items():
        for sub in ("img_emb", "text_emb", "metadata"):
            (i / name / sub).mkdir(parents=True)
        np.save(i / name / "img_emb" / "img_emb_0.npy", x[:20])
        np.save(i / name / "text_emb" / "text_emb_0.npy", y[:20])
        np.save(i / name / "img_emb" / "img_emb_1.npy", np.zeros((20, dims[1]), np.float32) + 0.1)
        np.save(i / name / "text_emb" / "text_emb_1.npy", np.zeros((20, dims[1]), np.float32) + 0.1)
    shutil.copytree(i / "clip", i / "clip_badmeta")
    (i / "clip_badmeta" / "metadata" / "metadata_0.parquet").write_bytes(b"PAR1garbagePAR1")
    # one-side embed directories (gapkit embed --texts / --images)
    from gapkit.encoders.embed_dir import save_side_dir

    save_side_dir(y, "text", i / "texts_dir", {"model": "fuzz"}, captions=[f"caption {k}" for k in range(40)])
    save_side_dir(x, "image", i / "images_dir", {"model": "fuzz"}, image_ids=[f"im{k}.png" for k in range(40)])
    p.update(texts_dir=str(i / "texts_dir"), images_dir=str(i / "images_dir"))
    p.update({k: str(i / k) for k in ("embdir", "shard_noindex", "shard_dims", "shard_badindex",
                                      "shard_badmanifest", "shard_capslist", "clip", "clip_mixed", "clip_badmeta")})


def _fixers(i: Path, p: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    from gapkit.fixers import create_fixer

    x, y = _gapped()
    create_fixer("center").fit(x, y).save(i / "fixer")
    meta = json.loads((i / "fixer" / "fixer.json").read_text())
    variants = {
        "fixer_vstr": dict(meta, version="x"), "fixer_vnull": dict(meta, version=None),
        "fixer_params_list": dict(meta, params=[1, 2]), "fixer_attrs_list": dict(meta, attributes=[1]),
        "fixer_name": dict(meta, name="no-such-fixer"), "fixer_format": dict(meta, format="other"),
        "fixer_dim_str": dict(meta, attributes=dict(meta["attributes"], dim_="eight")),
        "fixer_newer": dict(meta, version=999),
    }
    for name, m in variants.items():
        shutil.copytree(i / "fixer", i / name)
        (i / name / "fixer.json").write_text(json.dumps(m))
    for name, text in {"fixer_deep": _deep_json(), "fixer_notjson": "{nope", "fixer_list": "[]"}.items():
        shutil.copytree(i / "fixer", i / name)
        (i / name / "fixer.json").write_text(text)
    shutil.copytree(i / "fixer", i / "fixer_shape")
    arrays = {k: np.zeros((3, 3), np.float32) for k in meta["arrays"]}
    save_file(arrays, str(i / "fixer_shape" / "arrays.safetensors"))
    shutil.copytree(i / "fixer", i / "fixer_noarrays")
    (i / "fixer_noarrays" / "arrays.safetensors").unlink()
    shutil.copytree(i / "fixer", i / "fixer_badarrays")
    (i / "fixer_badarrays" / "arrays.safetensors").write_bytes(os.urandom(64))
    p.update({k: str(i / k) for k in ["fixer", *variants, "fixer_deep", "fixer_notjson", "fixer_list",
                                      "fixer_shape", "fixer_noarrays", "fixer_badarrays"]})


def _records(i: Path, p: dict[str, str]) -> None:
    from gapkit.records import new_record, save_record

    rdir = i / "records"
    rdir.mkdir()
    save_record(new_record("measure", results={"centroid_distance": 0.5}), rdir / "m.json")
    ev = new_record("evaluate", results={})
    ev.update(model="m", dataset="d", task="retrieval", metrics={"recall@1": 0.5})
    save_record(ev, rdir / "ev.json")
    (i / "rec_deep.json").write_text(_deep_json())
    (i / "rec_list.json").write_text("[1, 2]")
    (i / "rec_bad.json").write_text("{not json")
    (i / "rec_bin.json").write_bytes(b"\xff\xfe\xfa")
    figdir = i / "figrec"
    figdir.mkdir()
    for name, figs in {"abs": ["/etc/hostname.png"], "up": ["../target.png"], "notimg": ["x.txt"],
                       "missing": ["nothere.png"], "dict_bad": 5}.items():
        save_record(dict(new_record("measure", results={}), figures=figs), figdir / f"{name}.json")
    (i / "target.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    p.update(records=str(rdir), rec_m=str(rdir / "m.json"), rec_ev=str(rdir / "ev.json"),
             rec_deep=str(i / "rec_deep.json"), rec_list=str(i / "rec_list.json"), rec_bad=str(i / "rec_bad.json"),
             rec_bin=str(i / "rec_bin.json"),
             **{f"fig_{n}": str(figdir / f"{n}.json") for n in ("abs", "up", "notimg", "missing", "dict_bad")})


def _png(path: Path, rgb: tuple[int, int, int]) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), rgb).save(path)


def _datasets(i: Path, p: dict[str, str], root: Path) -> None:
    d = i / "data"
    (d / "images").mkdir(parents=True)
    for k, rgb in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        _png(d / "images" / f"c{k}.png", rgb)
    (d / "pairs.csv").write_text("image,caption\n" + "".join(f"images/c{k}.png,colour {k}\n" for k in range(3)))
    (d / "nocols.csv").write_text("a,b\n1,2\n")
    (d / "escape.csv").write_text("image,caption\n../../target.png,escape\n/etc/hostname,abs\n")
    (d / "bigfield.csv").write_text('image,caption\nimages/c0.png,"' + "x" * 200_000 + '"\n')
    (d / "nul.csv").write_text("image,caption\nimages/c0.png,a\x00b\n")
    (d / "bin.csv").write_bytes(b"image,caption\n\xff\xfe\xfd\n")
    (d / "empty.csv").write_text("")
    (d / "queries.txt").write_text("a red apple\nthe moon\n")
    (d / "blank.txt").write_text("\n   \n\n")
    (d / "texts.tsv").write_text("id\tnote\n1\tx\n")
    (i / "noimages").mkdir()
    (i / "noimages" / "readme.txt").write_text("no images here\n")
    (i / "badimages").mkdir()
    (i / "badimages" / "broken.png").write_bytes(b"not a png")
    (d / "allbad.jsonl").write_text("[1]\n{\"image\": 5}\n" + _deep_json(5000) + "\n")
    (d / "coco_num.json").write_text(json.dumps({"images": [{"id": 1, "file_name": 5}],
                                                 "annotations": [{"image_id": 1, "caption": "x"}]}))
    (d / "coco_list.json").write_text(json.dumps({"images": [{"id": 1, "file_name": ["a", "b"]}],
                                                  "annotations": [{"image_id": 1, "caption": ["x"]}]}))
    (d / "coco_deep.json").write_text(_deep_json())
    (d / "coco_idlist.json").write_text(json.dumps({"images": [{"id": [1], "file_name": "images/c0.png"}],
                                                    "annotations": []}))
    # a webdataset shard cut in the middle of a member
    with tarfile.open(d / "full.tar", "w") as tf:
        for k in range(3):
            tf.add(d / "images" / f"c{k}.png", arcname=f"s{k}.png")
            cap = d / f"s{k}.txt"
            cap.write_text(f"colour {k}\n")
            tf.add(cap, arcname=f"s{k}.txt")
            cap.unlink()
    raw = (d / "full.tar").read_bytes()
    (d / "trunc.tar").write_bytes(raw[: len(raw) // 2 + 100])
    (d / "full.tar").unlink()
    # image folders whose caption sidecar, or image, links out of the root
    (root / "secret.txt").write_text("a secret outside every dataset root\n")
    (root / "secret.png").write_bytes((d / "images" / "c0.png").read_bytes())
    for name in ("folder_txtlink", "folder_imglink"):
        (i / name).mkdir()
    _png(i / "folder_txtlink" / "a.png", (1, 2, 3))
    os.symlink(root / "secret.txt", i / "folder_txtlink" / "a.txt")
    os.symlink(root / "secret.png", i / "folder_imglink" / "a.png")
    (i / "folder_imglink" / "a.txt").write_text("a caption\n")
    p.update({k: str(d / f) for k, f in {
        "pairs_csv": "pairs.csv", "nocols_csv": "nocols.csv", "escape_csv": "escape.csv",
        "bigfield_csv": "bigfield.csv", "nul_csv": "nul.csv", "bin_csv": "bin.csv", "empty_csv": "empty.csv",
        "allbad_jsonl": "allbad.jsonl", "coco_num": "coco_num.json", "coco_list": "coco_list.json",
        "coco_deep": "coco_deep.json", "coco_idlist": "coco_idlist.json", "trunc_tar": "trunc.tar"}.items()})
    p.update(folder_txtlink=str(i / "folder_txtlink"), folder_imglink=str(i / "folder_imglink"),
             data=str(d))


def _runs(i: Path, p: dict[str, str]) -> None:
    from gapkit.atomic import OUTPUT_MARKER
    from gapkit.train import TrainConfig

    cfg = TrainConfig(model="tiny-cnn", dataset="fashion-mnist", steps=2, progress=False)
    for name in ("run_noconfig", "run_nockpt", "run_badstate", "run_deepstate", "run_badweights", "run_garbage_cfg"):
        d = i / name
        d.mkdir()
        (d / OUTPUT_MARKER).write_text("gapkit\n")
        if name != "run_noconfig":
            cfg.save(d / "config.json")
        if name in ("run_badstate", "run_deepstate", "run_badweights"):
            ck = d / "checkpoint"
            ck.mkdir()
            for f in ("model.safetensors", "optimizer.safetensors"):
                (ck / f).write_bytes(os.urandom(64) if name == "run_badweights" else b"")
            (ck / "state.json").write_text({"run_badstate": "{\"step\": \"x\"}", "run_deepstate": _deep_json(),
                                            "run_badweights": "{\"step\": 1, \"param_groups\": [], \"scheduler\": {}}"}[name])
    (i / "run_garbage_cfg" / "config.json").write_text("{\"steps\": [1, 2]}")
    (i / "bad_model.json").write_text("{\"vision_cfg\": 5}")
    (i / "deep_config.json").write_text(_deep_json())
    (i / "list_config.json").write_text("[]")
    p.update({k: str(i / k) for k in ("run_noconfig", "run_nockpt", "run_badstate", "run_deepstate",
                                      "run_badweights", "run_garbage_cfg")})
    p.update(bad_model=str(i / "bad_model.json"), deep_config=str(i / "deep_config.json"),
             list_config=str(i / "list_config.json"))


def _hazards(i: Path, o: Path, p: dict[str, str]) -> None:
    os.mkfifo(o / "fifo")
    try:  # a copy of /dev/null: replacing it must be refused (as root it would replace a device)
        os.mknod(o / "devnull", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        os.mkfifo(o / "devnull")
    os.symlink("/proc/self/fd/1", o / "link_stdout")
    os.symlink(i / "target.txt", o / "link_file")
    os.symlink(i / "data", o / "link_dir")
    (o / "user_dir").mkdir()
    (o / "user_dir" / "precious.txt").write_text("keep me\n")
    p.update(fifo=str(o / "fifo"), devnull=str(o / "devnull"), link_stdout=str(o / "link_stdout"),
             link_file=str(o / "link_file"), link_dir=str(o / "link_dir"), user_dir=str(o / "user_dir"),
             under_file=str(i / "plainfile" / "x.json"))


# --------------------------------------------------------------------------------- cases
def _c(id_: str, *argv: str, expect: str = "") -> Case:
    return Case(id_, tuple(argv), expect)


# Bad embedding inputs, each given to every command that reads embeddings.
BAD_EMBEDDINGS = {
    "missing": ("{in}/nope.npy", "not found"), "dir_empty": ("{out}/user_dir", ""),
    "truncated": ("{truncated}", ""), "garbage": ("{garbage}", ""), "empty": ("{empty}", ""),
    "objects": ("{objects}", "pickle"), "pickle": ("{pkl}", "pickle"), "evil_pt": ("{evil_pt}", "pickle"),
    "garbage_npz": ("{garbage_npz}", ""), "garbage_st": ("{garbage_st}", ""), "huge_header": ("{huge_header}", ""),
    "garbage_parquet": ("{garbage_parquet}", ""), "xyz": ("{xyz}", "format"), "nan": ("{nan}", "nan"),
"ragged3d": ("{ragged3d}", ""), "int": ("{int_npy}", ""),
    "unnamed_npz": ("{unnamed_npz}", ""), "bomb": ("{bomb}", "zip bomb"), "fifo": ("{fifo}", ""),
    "devnull": ("{devnull}", ""), "shard_badmanifest": ("{shard_badmanifest}", ""),
    "clip_mixed": ("{clip_mixed}", "dimension"), "clip_badmeta": ("{clip_badmeta}", "parquet"),
    "plainfile": ("{plainfile}", ""), "side_only": ("{texts_dir}", "text embeddings only"),
}
BAD_MAPS = {"big": "{map_big}", "float": "{map_float}", "neg": "{map_neg}", "short": "{map_short}",
            "deep": "{map_deep}", "dict": "{map_dict}", "words": "{map_words}", "bin": "{map_bin}"}
# Output hazards: (path, word of the message)
BAD_FILE_OUTS = {
    "fifo": ("{fifo}", "regular file"), "devnull": ("{devnull}", "regular file"),
    "link_stdout": ("{link_stdout}", "symbolic link"), "link_file": ("{link_file}", "symbolic link"),
    "dir": ("{out}/user_dir", ""), "under_file": ("{under_file}", "not a directory"),
    "is_input": ("{embdir}", "input"), "in_input_dir": ("{embdir}/embeddings.safetensors", "input"),
    "in_input_dir_new": ("{embdir}/new.npz", "input"),
}
BAD_DIR_OUTS = {
    "user_dir": ("{user_dir}", "not written by gapkit"), "file": ("{target}", "not a directory"),
    "link_dir": ("{link_dir}", ""), "fifo": ("{fifo}", "regular file"),
    "under_file": ("{under_file}", "not a directory"), "input_dir": ("{embdir}", "input"),
    "inside_input": ("{embdir}/sub", "input"), "contains_input": ("{in}", ""),
}


def _measure_cases() -> list[Case]:
    cs = [_c(f"measure-emb-{k}", "measure", "--embeddings", v, "--metrics", "centroid_distance", expect=e)
          for k, (v, e) in BAD_EMBEDDINGS.items()]
    cs += [_c(f"measure-image-{k}", "measure", "--image", v, "--text", "{text}", "--metrics", "centroid_distance")
           for k, (v, e) in BAD_EMBEDDINGS.items() if k not in ("unnamed_npz", "ragged3d", "clip_mixed")]
    cs += [_c(f"measure-map-{k}", "measure", "--image", "{image}", "--text", "{text}", "--text-to-image", v)
           for k, v in BAD_MAPS.items()]
    cs += [_c(f"measure-out-{k}", "measure", "--embeddings", "{embdir}", "--metrics", "centroid_distance", "--out", v,
              expect=e) for k, (v, e) in BAD_FILE_OUTS.items()]
    cs += [
        _c("measure-dims", "measure", "--image", "{image}", "--text", "{text9}", expect="dim"),
        _c("measure-two-inputs", "measure", "--embeddings", "{stack}", "--sample", "clip"),
        _c("measure-no-input", "measure"),
        _c("measure-sample-unknown", "measure", "--sample", "nope"),
        _c("measure-metric-unknown", "measure", "--sample", "clip", "--metrics", "nope"),
        _c("measure-metrics-empty", "measure", "--sample", "clip", "--metrics", ","),
        _c("measure-nboot-neg", "measure", "--sample", "clip", "--ci", "--n-boot", "-5"),
        _c("measure-nboot-str", "measure", "--sample", "clip", "--n-boot", "many"),
        _c("measure-seed-neg", "measure", "--sample", "clip", "--seed", "-1", expect="seed"),
        _c("measure-seed-huge", "measure", "--sample", "clip", "--seed", str(2**70), expect="seed"),
        _c("measure-logit-nan", "measure", "--sample", "clip", "--logit-scale", "nan"),
        _c("measure-logit-neg", "measure", "--sample", "clip", "--logit-scale", "-3"),
        _c("measure-train-frac", "measure", "--sample", "clip", "--train-fraction", "1.5"),
        _c("measure-folds", "measure", "--sample", "clip", "--folds", "0"),
        _c("measure-reservoir", "measure", "--embeddings", "{stack}", "--stream", "--reservoir", "-1"),
        _c("measure-unknown-flag", "measure", "--sample", "clip", "--bogus"),
        _c("measure-abbrev", "measure", "--samp", "clip"),
        _c("measure-map-with-stack", "measure", "--embeddings", "{npz}", "--image", "{image}"),
    ]
    return cs


def _fix_cases() -> list[Case]:
    base = ("fix", "--method", "center", "--fit", "{stack}", "--apply", "{embdir}")
    cs = [_c(f"fix-fit-{k}", "fix", "--method", "center", "--fit", v, "--apply", "{stack}", "--out", "{in}/fixed.npy",
             expect=e) for k, (v, e) in BAD_EMBEDDINGS.items()]
    cs += [_c(f"fix-apply-{k}", "fix", "--method", "center", "--fit", "{stack}", "--apply", v, "--out", "{out}/fixed.npy")
           for k, (v, _) in BAD_EMBEDDINGS.items()]
    cs += [_c(f"fix-out-{k}", *base, "--out", v, expect=e) for k, (v, e) in BAD_FILE_OUTS.items()]
    cs += [_c(f"fix-savefixer-{k}", *base, "--out", "{out}/fixed.npy", "--save-fixer", v, expect=e)
           for k, (v, e) in BAD_DIR_OUTS.items()]
    tampered = ["fixer_vstr", "fixer_vnull", "fixer_params_list", "fixer_attrs_list", "fixer_name", "fixer_format",
                "fixer_dim_str", "fixer_newer", "fixer_deep", "fixer_notjson", "fixer_list", "fixer_shape",
                "fixer_noarrays", "fixer_badarrays"]
    cs += [_c(f"fix-load-{t}", "fix", "--method", "{" + t + "}", "--apply", "{stack}", "--out", "{out}/fixed.npy")
           for t in tampered]
    cs += [
        _c("fix-savefixer-eq-out", *base, "--out", "{out}/same", "--save-fixer", "{out}/same", expect="overlap"),
        _c("fix-method-unknown", *base, "--out", "{out}/f.npy", "--method", "nope"),
        _c("fix-isoclip-noweights", "fix", "--method", "isoclip", "--fit", "{stack}", "--apply", "{stack}",
           "--out", "{out}/f.npy", expect="projection weights"),
        _c("fix-isoclip-missing", "fix", "--method", "isoclip", "--param", "weights={in}/nope.safetensors", "--fit",
           "{stack}", "--apply", "{stack}", "--out", "{out}/f.npy", expect="not found"),
        _c("fix-isoclip-pickle", "fix", "--method", "isoclip", "--param", "weights={pkl}", "--fit",
           "{stack}", "--apply", "{stack}", "--out", "{out}/f.npy"),
        _c("fix-isoclip-evil-pt", "fix", "--method", "isoclip", "--param", "weights={evil_pt}", "--fit",
           "{stack}", "--apply", "{stack}", "--out", "{out}/f.npy"),
        _c("fix-chowers-retrieve", "fix", "--method", "chowers", "--param", "retrieve=audio", "--fit", "{stack}",
           "--apply", "{stack}", "--out", "{out}/f.npy", expect="retrieve"),
        _c("fix-chowers-rank", "fix", "--method", "chowers", "--param", "rank=100000", "--fit", "{stack}",
           "--apply", "{stack}", "--out", "{out}/f.npy", expect="rank"),
        _c("fix-param-bad", *base, "--out", "{out}/f.npy", "--param", "nope=1"),
        _c("fix-param-type", "fix", "--method", "noise", "--param", "std=loud", "--fit", "{stack}", "--apply",
           "{stack}", "--out", "{out}/f.npy"),
        _c("fix-param-syntax", *base, "--out", "{out}/f.npy", "--param", "novalue"),
        _c("fix-param-deep", "fix", "--method", "topk", "--param", "k=" + _deep_json(3000), "--fit", "{stack}",
           "--apply", "{stack}", "--out", "{out}/f.npy"),
        _c("fix-chunk", *base, "--out", "{out}/f.npy", "--chunk-size", "0"),
        _c("fix-out-suffix", *base, "--out", "{out}/f.pkl"),
        _c("fix-dims", "fix", "--method", "center", "--fit", "{stack}", "--apply-image", "{text9}",
           "--out", "{out}/f.npy", expect="dim"),
        _c("fix-no-fit", "fix", "--method", "center", "--apply", "{stack}", "--out", "{out}/f.npy"),
    ]
    return cs


def _evaluate_cases() -> list[Case]:
    cs = [_c(f"evaluate-emb-{k}", "evaluate", "--task", "retrieval", "--embeddings", v, "--out", "{out}/e.json",
             expect=e) for k, (v, e) in BAD_EMBEDDINGS.items()]
    cs += [_c(f"evaluate-out-{k}", "evaluate", "--task", "retrieval", "--embeddings", "{embdir}", "--out", v, expect=e)
           for k, (v, e) in BAD_FILE_OUTS.items()]
    cs += [_c(f"evaluate-savefixer-{k}", "evaluate", "--task", "mixed-retrieval", "--embeddings", "{embdir}",
              "--fixer", "center", "--fit", "{stack}", "--save-fixer", v, "--out", "{out}/e.json", expect=e)
           for k, (v, e) in BAD_DIR_OUTS.items()]
    cs += [
        _c("evaluate-task", "evaluate", "--task", "nope", "--sample", "clip", "--out", "{out}/e.json"),
        _c("evaluate-fixer-tampered", "evaluate", "--task", "retrieval", "--sample", "clip", "--fixer",
           "{fixer_shape}", "--out", "{out}/e.json"),
        _c("evaluate-fixer-dims", "evaluate", "--task", "retrieval", "--sample", "clip", "--fixer", "{fixer}",
           "--out", "{out}/e.json", expect="dim"),
        _c("evaluate-labels-missing", "evaluate", "--task", "zero-shot", "--embeddings", "{stack}", "--out", "{out}/e.json"),
        _c("evaluate-labels-bad", "evaluate", "--task", "linear-probe", "--embeddings", "{stack}", "--labels",
           "{map_deep}", "--out", "{out}/e.json"),
        _c("evaluate-labels-bin", "evaluate", "--task", "linear-probe", "--embeddings", "{stack}", "--labels",
           "{map_bin}", "--out", "{out}/e.json"),
        _c("evaluate-qfrac", "evaluate", "--task", "mixed-retrieval", "--sample", "clip", "--query-fraction", "2",
           "--out", "{out}/e.json"),
        _c("evaluate-testfrac", "evaluate", "--task", "linear-probe", "--sample", "clip", "--test-fraction", "-1",
           "--out", "{out}/e.json"),
        _c("evaluate-seed", "evaluate", "--task", "retrieval", "--sample", "clip", "--seed", "-3", "--out", "{out}/e.json"),
        _c("evaluate-savefixer-eq-input", "evaluate", "--task", "mixed-retrieval", "--embeddings", "{embdir}",
           "--fixer", "center", "--fit", "{stack}", "--save-fixer", "{embdir}", "--out", "{out}/e.json", expect="input"),
    ]
    mixed = ("evaluate", "--task", "mixed-retrieval", "--sample", "clip", "--out", "{out}/e.json")
    cs += [_c(f"evaluate-alpha-{k}", *mixed, "--fused", "--alpha", v, expect="alpha")
           for k, v in {"range": "1.5", "nan": "nan", "text": "abc", "empty": "", "list": "0,2", "comma": "0.5,"}.items()]
    cs += [
        _c("evaluate-alpha-nofused", *mixed, "--alpha", "0.3", expect="--fused"),
        _c("evaluate-alpha-task", "evaluate", "--task", "retrieval", "--sample", "clip", "--alpha", "0.3",
           "--out", "{out}/e.json", expect="mixed-retrieval"),
    ]
    cs += [_c(f"evaluate-gains-{k}", *mixed, "--gains", v, expect="gains")
           for k, v in {"role": "audio=1", "neg": "image=-1", "nan": "text=nan", "syntax": "image", "empty": ""}.items()]
    return cs


def _embed_cases() -> list[Case]:
    enc = ("--encoder", "gapkit:tiny-vit")
    cs = [_c(f"embed-out-{k}", "embed", *enc, "--dataset", "{pairs_csv}", "--out", v, expect=e)
          for k, (v, e) in BAD_DIR_OUTS.items() if k not in ("inside_input", "input_dir")]
    datasets = {"nocols": "{nocols_csv}", "escape": "{escape_csv}", "bigfield": "{bigfield_csv}", "nul": "{nul_csv}",
                "bin": "{bin_csv}", "empty": "{empty_csv}", "allbad": "{allbad_jsonl}", "coco_num": "{coco_num}",
                "coco_list": "{coco_list}", "coco_deep": "{coco_deep}", "coco_idlist": "{coco_idlist}",
                "trunc_tar": "{trunc_tar}", "txtlink": "{folder_txtlink}", "imglink": "{folder_imglink}",
                "missing": "{in}/nope.csv", "pickle": "{pkl}", "unknown_format": "{xyz}", "fifo": "{fifo}"}
    cs += [_c(f"embed-dataset-{k}", "embed", *enc, "--dataset", v, "--out", "{out}/emb") for k, v in datasets.items()]
    shards = ["shard_noindex", "shard_dims", "shard_badindex", "shard_badmanifest", "shard_capslist", "clip", "fixer"]
    cs += [_c(f"embed-merge-{s}", "embed", "--merge", "{embdir}", "{" + s + "}", "--out", "{out}/merged") for s in shards]
    cs += [
        _c("embed-merge-into-input", "embed", "--merge", "{embdir}", "{shard_dims}", "--out", "{embdir}", expect="input"),
        _c("embed-encoder-unknown", "embed", "--encoder", "nope:x", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-encoder-model-unknown", "embed", "--encoder", "gapkit:nope", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-openclip-unknown", "embed", "--encoder", "open_clip:NoSuchArch", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-checkpoint-missing", "embed", "--encoder", "open_clip:RN50", "--checkpoint", "{in}/no.pt",
           "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-checkpoint-pickle", "embed", "--encoder", "open_clip:RN50", "--checkpoint", "{evil_pt}",
           "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-hf-notdir", "embed", "--encoder", "hf:{in}/nope", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-device", "embed", *enc, "--device", "potato", "--dataset", "{pairs_csv}", "--out", "{out}/emb",
           expect="device"),
        _c("embed-device-cuda9", "embed", *enc, "--device", "cuda:9", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-seed", "embed", *enc, "--seed", "-1", "--dataset", "{pairs_csv}", "--out", "{out}/emb", expect="seed"),
        _c("embed-shard", "embed", *enc, "--shard", "3/2", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-shard-syntax", "embed", *enc, "--shard", "x", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-shard-auto", "embed", *enc, "--shard", "auto", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-batch", "embed", *enc, "--batch-size", "0", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-workers", "embed", *enc, "--workers", "-2", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-limit", "embed", *enc, "--limit", "-1", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-split", "embed", *enc, "--split", "nope", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-sep", "embed", *enc, "--sep", "ab", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-column", "embed", *enc, "--image-column", "nope", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-format", "embed", *enc, "--format", "nope", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-pixels", "embed", *enc, "--max-pixels", "-5", "--dataset", "{pairs_csv}", "--out", "{out}/emb"),
        _c("embed-out-npy", "embed", *enc, "--dataset", "{pairs_csv}", "--out", "{out}/emb.npy"),
        _c("embed-no-dataset", "embed", *enc, "--out", "{out}/emb"),
        _c("embed-builtin-split", "embed", *enc, "--dataset", "fashion-mnist", "--split", "val", "--out", "{out}/emb"),
    ]
    return cs


def _train_cases() -> list[Case]:
    t = ("train", "--config", "tiny-cnn", "--dataset", "fashion-mnist")
    cs = [_c(f"train-out-{k}", *t, "--out", v, expect=e) for k, (v, e) in BAD_DIR_OUTS.items()
          if k not in ("input_dir", "inside_input")]
    sets = {"threads": "threads=1000000000", "device": "device=potato", "seed": "seed=-1", "steps": "steps=abc",
            "steps0": "steps=0", "lr": "lr=-1", "tau": "tau=0", "batch": "batch_size=0", "unknown": "nope=1",
            "loss": "loss=nope", "deep": "loss_kwargs=" + _deep_json(5000), "precision": "precision=fp8",
            "temperature": "temperature=hot", "nodot": "loss_kwargs.x.y=1", "syntax": "novalue",
            "init_from": "init_from={in}/nope", "init_from_user": "init_from={user_dir}", "betas": "betas=[2,3]",
            "dataset": "dataset={in}/nope.csv", "sampler": "sampler=nope", "eval_size": "eval_size=0",
            "accum": "accum_steps=3", "model": "model=nope", "cuda": "device=cuda"}
    cs += [_c(f"train-set-{k}", *t, "--set", v, "--out", "{out}/run") for k, v in sets.items()]
    resumes = ["run_noconfig", "run_nockpt", "run_badstate", "run_deepstate", "run_badweights", "run_garbage_cfg",
               "user_dir"]
    cs += [_c(f"train-resume-{r}", "train", "--out", "{" + r + "}", "--resume") for r in resumes]
    cs += [
        _c("train-resume-missing", "train", "--out", "{out}/nope", "--resume"),
        _c("train-resume-with-config", "train", "--config", "tiny-cnn", "--out", "{run_nockpt}", "--resume"),
        _c("train-config-unknown", "train", "--config", "nope", "--out", "{out}/run"),
        _c("train-config-badmodel", "train", "--config", "{bad_model}", "--out", "{out}/run"),
        _c("train-config-deep", "train", "--config", "{deep_config}", "--out", "{out}/run"),
        _c("train-config-list", "train", "--config", "{list_config}", "--out", "{out}/run"),
        _c("train-config-bin", "train", "--config", "{map_bin}", "--out", "{out}/run"),
        _c("train-loss-unknown", "train", "--config", "tiny-cnn", "--loss", "nope", "--out", "{out}/run"),
        _c("train-dataset-bad", "train", "--config", "tiny-cnn", "--dataset", "{escape_csv}", "--out", "{out}/run"),
    ]
    return cs


def _other_cases() -> list[Case]:
    cs: list[Case] = []
    # build
    cs += [_c(f"build-out-{k}", "build", "{rec_ev}", "--out", v, expect=e) for k, (v, e) in BAD_FILE_OUTS.items()
           if k not in ("in_input_dir", "in_input_dir_new", "is_input")]
    cs += [_c(f"build-rec-{k}", "build", v, "--out", "{out}/t.csv") for k, v in
           {"deep": "{rec_deep}", "list": "{rec_list}", "bad": "{rec_bad}", "bin": "{rec_bin}", "missing": "{in}/no.json",
            "measure": "{rec_m}", "stack": "{stack}", "fifo": "{fifo}", "empty_dir": "{user_dir}"}.items()]
    cs += [_c("build-out-in-records", "build", "{records}", "--out", "{records}/table.csv", expect="input")]
    # report
    cs += [_c(f"report-html-{k}", "report", "{rec_m}", "--html", v, expect=e) for k, (v, e) in BAD_FILE_OUTS.items()
           if k not in ("in_input_dir", "in_input_dir_new", "is_input")]
    cs += [_c(f"report-rec-{k}", "report", v, "--html", "{out}/r.html") for k, v in
           {"deep": "{rec_deep}", "list": "{rec_list}", "bad": "{rec_bad}", "bin": "{rec_bin}", "missing": "{in}/no.json",
            "fig_abs": "{fig_abs}", "fig_up": "{fig_up}", "fig_notimg": "{fig_notimg}", "fig_missing": "{fig_missing}",
            "fig_dict_bad": "{fig_dict_bad}", "stack": "{stack}", "fifo": "{fifo}"}.items()]
    cs += [_c("report-html-eq-record", "report", "{rec_m}", "--html", "{rec_m}", expect="input"),
           _c("report-html-onto-record-in-dir", "report", "{records}", "--html", "{rec_ev}", expect=".html"),
           _c("report-html-suffix", "report", "{rec_m}", "--html", "{out}/r.json", expect=".html")]
    # simulate
    sim = ("simulate", "sphere", "--epochs", "10", "--no-progress")
    cs += [_c(f"simulate-out-{k}", *sim, "--out", v, expect=e) for k, (v, e) in BAD_FILE_OUTS.items()
           if k not in ("in_input_dir", "in_input_dir_new", "is_input")]
    cs += [_c(f"simulate-figures-{k}", *sim, "--out", "{out}/s.json", "--figures", v, expect=e)
           for k, (v, e) in BAD_DIR_OUTS.items() if k not in ("input_dir", "inside_input")]
    vals = {"n-huge": ("--n", "1000000000000"), "n-one": ("--n", "1"), "tau-neg": ("--tau", "-1"),
            "tau-nan": ("--tau", "nan"), "tau-tiny": ("--tau", "1e-9"), "lr-zero": ("--lr", "0"),
            "batch-big": ("--batch", "5000"), "angle": ("--angle", "400"), "seed": ("--seed", "-1"),
            "d-one": ("--d", "1"), "loss": ("--loss", "nope"), "init": ("--init", "nope"),
            "snapshots": ("--snapshots", "5,999999"), "snap-syntax": ("--snapshots", "a,b"),
            "traces": ("--traces", "0"), "epochs-neg": ("--epochs", "-5"), "spread": ("--spread", "-1"),
            "trace-every": ("--trace-every", "0")}
    cs += [_c(f"simulate-{k}", *sim, *v, "--out", "{out}/s.json") for k, v in vals.items()]
    cs += [_c("simulate-system", "simulate", "cube", "--out", "{out}/s.json"),
           _c("simulate-out-eq-figures", *sim, "--out", "{out}/s", "--figures", "{out}/s", expect="overlap")]
    # reproduce
    cs += [_c(f"reproduce-out-{k}", "reproduce", "shi-init", "--quick", "--out", v, expect=e)
           for k, (v, e) in BAD_DIR_OUTS.items() if k not in ("input_dir", "inside_input")]
    sets = {"unknown": "nope=1", "type": "tau=hot", "syntax": "novalue", "deep": "tau=" + _deep_json(5000),
            "n-huge": "n=1000000000000", "seed": "seed=-1", "key": "1abc=2"}
    cs += [_c(f"reproduce-set-{k}", "reproduce", "shi-init", "--quick", "--set", v, "--out", "{out}/rep")
           for k, v in sets.items()]
    cs += [_c("reproduce-unknown", "reproduce", "nope", "--out", "{out}/rep"),
           _c("reproduce-no-name", "reproduce", "--out", "{out}/rep"),
           _c("reproduce-no-out", "reproduce", "shi-init"),
           _c("reproduce-seed", "reproduce", "shi-init", "--seed", "-1", "--out", "{out}/rep", expect="seed")]
    # demo
    cs += [_c(f"demo-out-{k}", "demo", "--quick", "--out", v, expect=e) for k, (v, e) in BAD_DIR_OUTS.items()
           if k not in ("input_dir", "inside_input")]
    cs += [_c("demo-seed", "demo", "--quick", "--seed", "-1", expect="seed"),
           _c("demo-seed-str", "demo", "--seed", "x"),
           _c("demo-flag", "demo", "--fast")]
    # encoders
    cs += [_c("encoders-unknown", "encoders", "nope:x"), _c("encoders-seed", "encoders", "--seed", "-4"),
           _c("encoders-model-unknown", "encoders", "gapkit:nope"),
           _c("encoders-openclip-unknown", "encoders", "open_clip:Nope")]
    # the CLI itself
    cs += [_c("cli-unknown-command", "measurex"), _c("cli-version-typo", "measure", "--versio")]
    return cs


def _one_side_cases() -> list[Case]:
    """gapkit embed --texts/--images and --key, and one-side embed directories where both sides are needed."""
    enc = ("embed", "--encoder", "gapkit:tiny-vit")
    t = (*enc, "--texts", "{in}/data/queries.txt")
    im = (*enc, "--images", "{in}/data/images")
    cs = [_c(f"embed-texts-out-{k}", *t, "--out", v, expect=e)
          for k, (v, e) in BAD_DIR_OUTS.items() if k not in ("inside_input", "input_dir")]
    cs += [
        _c("embed-texts-missing", *enc, "--texts", "{in}/nope.txt", "--out", "{out}/q", expect="no such file"),
        _c("embed-texts-suffix", *enc, "--texts", "{xyz}", "--out", "{out}/q", expect="unknown text file type"),
        _c("embed-texts-pickle", *enc, "--texts", "{pkl}", "--out", "{out}/q", expect="unknown text file type"),
        _c("embed-texts-blank", *enc, "--texts", "{in}/data/blank.txt", "--out", "{out}/q", expect="no non-empty"),
        _c("embed-texts-binary", *enc, "--texts", "{bin_csv}", "--out", "{out}/q", expect="utf-8"),
        _c("embed-texts-nocolumn", *enc, "--texts", "{in}/data/texts.tsv", "--out", "{out}/q", expect="no text column"),
        _c("embed-texts-column-unknown", *enc, "--texts", "{pairs_csv}", "--caption-column", "nope", "--out", "{out}/q",
           expect="nope"),
        _c("embed-texts-column-txt", *t, "--caption-column", "x", "--out", "{out}/q", expect="--caption-column"),
        _c("embed-texts-jsonl-bad", *enc, "--texts", "{allbad_jsonl}", "--out", "{out}/q", expect="expected a json object"),
        _c("embed-texts-fifo", *enc, "--texts", "{fifo}", "--out", "{out}/q"),
        _c("embed-texts-and-images", *t, "--images", "{in}/data/images", "--out", "{out}/q", expect="not both"),
        _c("embed-texts-with-dataset", *t, "--dataset", "{pairs_csv}", "--out", "{out}/q", expect="--dataset"),
        _c("embed-texts-with-root", *t, "--root", "{in}", "--out", "{out}/q", expect="--root"),
        _c("embed-texts-shard", *t, "--shard", "0/2", "--out", "{out}/q", expect="--shard"),
        _c("embed-texts-split", *t, "--split", "train", "--out", "{out}/q", expect="--split"),
        _c("embed-texts-merge", *t, "--merge", "{embdir}", "--out", "{out}/q", expect="--merge"),
        _c("embed-texts-engine", *t, "--engine", "local", "--out", "{out}/q", expect="--engine"),
        _c("embed-texts-no-encoder", "embed", "--texts", "{in}/data/queries.txt", "--out", "{out}/q", expect="--encoder"),
        _c("embed-texts-batch", *t, "--batch-size", "0", "--out", "{out}/q", expect="batch size"),
        _c("embed-texts-sep", *enc, "--texts", "{pairs_csv}", "--sep", "ab", "--out", "{out}/q", expect="one character"),
        _c("embed-images-file", *enc, "--images", "{pairs_csv}", "--out", "{out}/i", expect="not a directory"),
        _c("embed-images-missing", *enc, "--images", "{in}/nope", "--out", "{out}/i", expect="not a directory"),
        _c("embed-images-none", *enc, "--images", "{in}/noimages", "--out", "{out}/i", expect="no readable images"),
        _c("embed-images-escape", *enc, "--images", "{folder_imglink}", "--out", "{out}/i", expect="outside"),
        _c("embed-images-strict", *enc, "--images", "{in}/badimages", "--strict", "--out", "{out}/i", expect="corrupt"),
        _c("embed-images-column", *im, "--caption-column", "x", "--out", "{out}/i", expect="--caption-column"),
        _c("embed-images-limit", *im, "--limit", "2", "--out", "{out}/i", expect="--limit"),
        _c("embed-images-root", *im, "--root", "{in}/nope", "--out", "{out}/i", expect="not a directory"),
        _c("embed-images-out-npy", *im, "--out", "{out}/i.npy", expect="directory"),
        _c("embed-images-into-input", *im, "--out", "{in}/data/images", expect="input"),
        # one-side directories where both sides are needed, or the wrong side
        _c("measure-side-wrong", "measure", "--image", "{texts_dir}", "--text", "{texts_dir}", expect="not image"),
        _c("measure-side-two-images", "measure", "--image", "{images_dir}", "--text", "{images_dir}", expect="not text"),
        _c("fix-apply-image-texts", "fix", "--method", "center", "--fit", "{stack}", "--apply-image", "{texts_dir}",
           "--out", "{out}/f", expect="not image"),
        _c("fix-fit-side-only", "fix", "--method", "center", "--fit", "{images_dir}", "--apply-image", "{images_dir}",
           "--out", "{out}/f", expect="image embeddings only"),
        _c("evaluate-side-only", "evaluate", "--task", "retrieval", "--image", "{images_dir}", "--text", "{images_dir}",
           "--out", "{out}/e.json", expect="not text"),
        _c("index-side-only", "index", "build", "--embeddings", "{texts_dir}", "--out", "{out}/idx", expect="only"),
        # --key
        _c("measure-key-missing", "measure", "--embeddings", "{unnamed_npz}", "--key", "a,zz", expect="no array named 'zz'"),
        _c("measure-key-ambiguous", "measure", "--image", "{unnamed_npz}", "--text", "{unnamed_npz}",
           expect="--key"),
        _c("measure-key-syntax", "measure", "--embeddings", "{unnamed_npz}", "--key", "a,b,c", expect="--key"),
        _c("measure-key-empty", "measure", "--embeddings", "{unnamed_npz}", "--key", ",", expect="--key"),
        _c("measure-key-sample", "measure", "--sample", "clip", "--key", "a", expect="--key"),
        _c("measure-key-embdir", "measure", "--embeddings", "{embdir}", "--key", "image", expect="--key"),
        _c("measure-key-stream", "measure", "--embeddings", "{stack}", "--stream", "--key", "a", expect="--key"),
        _c("measure-key-stack-2d", "measure", "--embeddings", "{unnamed_npz}", "--key", "a", expect="stack"),
        _c("measure-key-side-dir", "measure", "--image", "{images_dir}", "--text", "{texts_dir}", "--key", "nope",
           expect="no array named 'nope'"),
        _c("fix-key-missing", "fix", "--method", "center", "--fit", "{stack}", "--apply-text", "{unnamed_npz}",
           "--key", "zz", "--out", "{out}/f.npy", expect="zz"),
        _c("fix-key-ambiguous", "fix", "--method", "center", "--fit", "{stack}", "--apply-text", "{unnamed_npz}",
           "--out", "{out}/f.npy", expect="--key"),
        _c("study-key-sample", "study", "--sample", "clip", "--key", "a", "--quiet", "--out", "{out}/s", expect="--key"),
        _c("study-key-missing", "study", "--embeddings", "{unnamed_npz}", "--key", "a,zz", "--quiet", "--out", "{out}/s",
           expect="zz"),
        _c("index-key-sample", "index", "build", "--sample", "clip", "--key", "a", "--out", "{out}/idx", expect="--key"),
        # FAISS IVF-SQ8 + exact re-rank parameters
        *[_c(f"index-faiss-{k}-{v}", "index", "build", "--sample", "clip", "--backend", "faiss", "--backend-param",
             f"{k}={v}", "--out", "{out}/idx", expect=f"{k} must be an integer >=")
          for k, v in (("refine", "-1"), ("nprobe", "0"), ("kmeans_iter", "0"), ("refine", "2.5"), ("nprobe", "true"),
                       ("nlist", "many"))],
        _c("index-faiss-kind-ivfpq", "index", "build", "--sample", "clip", "--backend", "faiss", "--backend-param",
           "kind=ivfsq8", "--out", "{out}/idx", expect="kind must be one of"),
    ]
    return cs


def _study_cases() -> list[Case]:
    cs = [_c(f"study-emb-{k}", "study", "--embeddings", v, "--quiet", "--out", "{out}/s", expect=e)
          for k, (v, e) in BAD_EMBEDDINGS.items()]
    cs += [_c(f"study-out-{k}", "study", "--embeddings", "{embdir}", "--quiet", "--out", v, expect=e)
           for k, (v, e) in BAD_DIR_OUTS.items()]
    base = ("study", "--sample", "clip", "--quiet", "--out", "{out}/s")
    cs += [
        _c("study-no-input", "study", "--out", "{out}/s", expect="give"),
        _c("study-two-inputs", *base, "--embeddings", "{embdir}", expect="give"),
        _c("study-sample-unknown", "study", "--sample", "nope", "--out", "{out}/s"),
        _c("study-fixers", *base, "--fixers", "center,nope", expect="unknown fixer"),
        _c("study-fixers-empty", *base, "--fixers", ",", expect="empty"),
        _c("study-folds", *base, "--folds", "1", expect="folds"),
        _c("study-folds-and-fraction", *base, "--folds", "3", "--calib-fraction", "0.5"),
        _c("study-calib-fraction", *base, "--calib-fraction", "2", expect="fraction"),
        _c("study-n-boot", *base, "--n-boot", "2", expect="--n-boot"),
        _c("study-labels-without-data", *base, "--labels", "category", expect="--labels"),
        _c("study-encoder-without-dataset", "study", "--encoder", "towers", "--out", "{out}/s", expect="--dataset"),
    ]
    return cs


CASES: list[Case] = [*_measure_cases(), *_fix_cases(), *_evaluate_cases(), *_embed_cases(), *_train_cases(),
                     *_other_cases(), *_study_cases(), *_one_side_cases()]
