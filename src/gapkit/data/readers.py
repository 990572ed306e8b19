"""Readers for user image-text data. Each returns an ImageTextDataset with the multi-caption map kept.

Formats (`open_user_dataset` picks one from the path; `format=` forces it):
  csv / tsv   one row per (image, caption); columns `filepath` and `title`, tab-separated (the
              open_clip convention); `img_key`, `caption_key`, `sep` configurable (open_clip's
              csv_img_key / csv_caption_key / csv_separator). When not given, the image column is
              the first of filepath, image, image_path, img_path, path, img, file_name, filename
              in the header and the caption column the first of title, caption, text, captions,
              description; the separator is a tab when the header has one, else a comma when it
              has one. The chosen columns are kept in `dataset.info["columns"]`.
  jsonl       one JSON object per line: {"image": path, "caption": str | [str, ...]}
              (keys configurable; "captions"/"text"/"file_name"/"filepath" are also recognised)
  coco        COCO captions JSON: {"images": [{id, file_name}], "annotations": [{image_id, caption}]}
  flickr      Flickr8k/30k token files: "NAME.jpg#k<TAB>caption" (or Flickr30k's
              "image_name| comment_number| comment" CSV)
  folder      a directory of images with sidecar NAME.txt files (one caption per line), or with a
              captions file of "NAME<TAB>caption" lines / a JSON {name: caption | [captions]}
  webdataset  uncompressed .tar shards (a file, a directory of them, or a list) with members
              KEY.jpg|jpeg|png|webp and KEY.txt (or KEY.json with "caption")

Safety and robustness: image paths are resolved under the dataset root and anything escaping it
(`..`, absolute paths, tar members) raises GapkitError. Missing or corrupt images, empty
captions and unreadable rows are skipped and counted in one warning (strict=True: error instead).
Images are verified (opened by PIL) at load so extraction never fails half-way; images above
`max_pixels` (default 16 MP, read from the header without decoding) are skipped as "image too
large" for the same reason.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import GapkitError
from .dataset import DEFAULT_MAX_PIXELS, FileImages, ImageTextDataset, TarImages, oversize, resolve_under
from .problems import Skips, call_with_options

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_JSONL_IMAGE_KEYS = ("image", "filepath", "file_name", "path", "img")
_JSONL_CAPTION_KEYS = ("caption", "captions", "text", "title")
# Header names recognised when the CSV columns are not given (open_clip's defaults first).
CSV_IMAGE_COLUMNS = ("filepath", "image", "image_path", "img_path", "path", "img", "file_name", "filename")
CSV_CAPTION_COLUMNS = ("title", "caption", "text", "captions", "description")


# ------------------------------------------------------------------------------ shared steps
def _verify_image(data: bytes | str) -> str | None:
    """None when PIL can decode the image header and structure, else the reason."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im.verify()
        return None
    except Image.UnidentifiedImageError:
        return "not a recognised image format"
    except Exception as exc:  # PIL raises many types for damaged files
        return f"{type(exc).__name__}: {exc}"


def _assemble(root: Path, rows: Iterable[tuple[str, str]], name: str, skips: Skips,
              verify: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """Group (relative image path, caption) rows by image into an ImageTextDataset.

    Rows of one image may be scattered; images keep the order of their first row, captions the
    order of their rows. Escaping paths raise; missing/corrupt/too-large images and empty
    captions are skipped.
    """
    groups: "OrderedDict[str, list[str]]" = OrderedDict()
    for rel, caption in rows:
        full = resolve_under(root, rel)  # raises on '..' and absolute paths
        cap = " ".join(str(caption or "").split())
        if not cap:
            skips.add("empty caption", rel)
            continue
        groups.setdefault(str(full), []).append(cap)
    paths, captions, mapping, ids = [], [], [], []
    root_r = root.resolve()
    for full, caps in groups.items():
        rel = os.path.relpath(full, root_r)
        if not os.path.isfile(full):
            skips.add("missing image", rel)
            continue
        if why := oversize(full, max_pixels):  # before verify(): a huge PNG is slow to even verify
            skips.add("image too large", f"{rel} ({why})")
            continue
        if verify and (why := _verify_image(full)):
            skips.add("corrupt image", f"{rel} ({why})")
            continue
        mapping += [len(paths)] * len(caps)
        captions += caps
        paths.append(full)
        ids.append(rel)
    return _finish(FileImages(paths, max_pixels), captions, mapping, ids, name, skips, root)


def _finish(images: Any, captions: list[str], mapping: list[int], ids: list[str], name: str,
            skips: Skips, root: Path) -> ImageTextDataset:
    skips.report(name)
    if not captions:
        raise GapkitError(f"{name}: no usable (image, caption) pairs in {root}")
    return ImageTextDataset(images=images, captions=captions, text_to_image=np.asarray(mapping, dtype=np.int64),
                            image_ids=ids, name=name, info={"root": str(root), "skipped": skips.as_dict()})


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GapkitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


# ------------------------------------------------------------------------------ formats
def _pick_column(cols: list[str], given: str | None, candidates: tuple[str, ...], what: str,
                 option: str, path: Path) -> int:
    """Index of the `given` column, else of the first recognised candidate name (case-insensitive)."""
    if given is not None:
        if given not in cols:
            raise GapkitError(f"{path}: no {what} column '{given}' in the header ({', '.join(cols)}); "
                              f"set {option} (or sep if the header was split wrongly)")
        return cols.index(given)
    lower = [c.lower() for c in cols]
    for name in candidates:
        if name in lower:
            return lower.index(name)
    raise GapkitError(f"{path}: no {what} column in the header ({', '.join(cols)}); recognised names are "
                      f"{', '.join(candidates)}; set {option} (or sep if the header was split wrongly)")


def guess_separator(header: str, suffix: str) -> str:
    """Tab when the header has one, else a comma when it has one, else by suffix (.csv: comma)."""
    if "\t" in header:
        return "\t"
    if "," in header or suffix.lower() == ".csv":
        return ","
    return "\t"


def read_csv(path: str | os.PathLike, img_key: str | None = None, caption_key: str | None = None,
             sep: str | None = None, root: str | os.PathLike | None = None, strict: bool = False,
             verify: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """CSV/TSV with a header row; image paths relative to `root` (default: the file's directory).

    img_key / caption_key / sep None: detected from the header (see the module docstring); the
    chosen ones are recorded in info["columns"]. Images above max_pixels are skipped.
    """
    path = Path(path)
    text = _read_text(path)
    header = text.split("\n", 1)[0]
    if sep is None:
        sep = guess_separator(header, path.suffix)
    if len(sep) != 1:
        raise GapkitError(f"the CSV separator must be one character, got {sep!r}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        cols = next(reader, None)
    except csv.Error as exc:
        raise GapkitError(f"{path}: header line: {exc}") from None
    if not cols:
        raise GapkitError(f"{path}: empty file (a header row naming the image and caption columns was expected)")
    cols = [c.strip() for c in cols]
    ii = _pick_column(cols, img_key, CSV_IMAGE_COLUMNS, "image", "img_key (gapkit embed --image-column)", path)
    ci = _pick_column(cols, caption_key, CSV_CAPTION_COLUMNS, "caption",
                      "caption_key (gapkit embed --caption-column)", path)
    if ii == ci:
        raise GapkitError(f"{path}: the image and caption columns are the same column '{cols[ii]}'")
    skips = Skips(strict)

    def rows() -> Iterable[tuple[str, str]]:
        lineno = 1
        try:
            for lineno, row in enumerate(reader, start=2):
                if not row or not any(row):
                    continue
                if len(row) != len(cols):
                    skips.add("unreadable row", f"line {lineno}: {len(row)} fields, header has {len(cols)}")
                    continue
                yield row[ii].strip(), row[ci]
        except csv.Error as exc:  # e.g. a field over the csv module's size limit, a NUL byte
            raise GapkitError(f"{path}: line {lineno + 1}: {exc}") from None

    ds = _assemble(Path(root) if root else path.parent, rows(), path.name, skips, verify, max_pixels)
    ds.info["columns"] = {"image": cols[ii], "caption": cols[ci], "sep": sep}
    return ds


def read_jsonl(path: str | os.PathLike, img_key: str | None = None, caption_key: str | None = None,
               root: str | os.PathLike | None = None, strict: bool = False, verify: bool = True,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """JSON lines: one object per line with an image path and a caption (string or list)."""
    path = Path(path)
    skips = Skips(strict)

    def rows() -> Iterable[tuple[str, str]]:
        for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except (ValueError, RecursionError) as exc:
                skips.add("unreadable row", f"line {lineno}: {type(exc).__name__}")
                continue
            ik = img_key or next((k for k in _JSONL_IMAGE_KEYS if k in obj), None)
            ck = caption_key or next((k for k in _JSONL_CAPTION_KEYS if k in obj), None)
            if ik not in obj or ck not in obj or not isinstance(obj[ik], str):
                skips.add("unreadable row", f"line {lineno}: no image/caption keys")
                continue
            caps = obj[ck] if isinstance(obj[ck], list) else [obj[ck]]
            for cap in caps:
                yield obj[ik], cap if isinstance(cap, str) else ""

    return _assemble(Path(root) if root else path.parent, rows(), path.name, skips, verify, max_pixels)


def read_coco(path: str | os.PathLike, root: str | os.PathLike | None = None, strict: bool = False,
              verify: bool = True,
              max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """COCO captions JSON (several captions per image); `root` = the image directory
    (default: the JSON's directory)."""
    path = Path(path)
    try:
        obj = json.loads(_read_text(path))
        files = {im["id"]: im["file_name"] for im in obj["images"]}
        anns = obj["annotations"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise GapkitError(f"{path}: not a COCO captions file ({type(exc).__name__}: {exc})") from None
    skips = Skips(strict)

    def rows() -> Iterable[tuple[str, str]]:
        # COCO lists annotations in arbitrary order: keep the images' order, captions in ann order.
        by_image: dict[Any, list[str]] = {}
        for a in anns:
            if not isinstance(a, dict) or a.get("image_id") not in files:
                skips.add("unreadable row", f"annotation {a.get('id') if isinstance(a, dict) else a!r}: unknown image_id")
                continue
            by_image.setdefault(a["image_id"], []).append(a.get("caption") or "")
        for image_id, name in files.items():
            if not isinstance(name, str):  # a number or a list where a file name belongs
                skips.add("unreadable row", f"image {image_id!r}: file_name is not a string ({name!r:.40})")
                continue
            for cap in by_image.get(image_id, []):
                yield name, cap if isinstance(cap, str) else ""

    return _assemble(Path(root) if root else path.parent, rows(), path.name, skips, verify, max_pixels)


def read_flickr(path: str | os.PathLike, root: str | os.PathLike | None = None, strict: bool = False,
                verify: bool = True,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """Flickr8k/30k caption file: 'NAME.jpg#k<TAB>caption' lines or Flickr30k 'name| k| caption'.

    `root` defaults to a sibling folder Flicker8k_Dataset / Flickr8k_Dataset / flickr30k-images /
    Images when one exists, else the file's directory.
    """
    path = Path(path)
    skips = Skips(strict)
    if root is None:
        cands = [path.parent / d for d in ("Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "Images", "images")]
        root = next((c for c in cands if c.is_dir()), path.parent)

    def rows() -> Iterable[tuple[str, str]]:
        for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
            if not line.strip() or (lineno == 1 and line.lower().startswith("image_name|")):
                continue
            if "\t" in line:
                key, cap = line.split("\t", 1)
                name = key.rsplit("#", 1)[0]
            elif line.count("|") >= 2:
                name, _, cap = (s.strip() for s in line.split("|", 2))
            else:
                skips.add("unreadable row", f"line {lineno}: neither 'name#k<TAB>caption' nor 'name| k| caption'")
                continue
            yield name.strip(), cap

    return _assemble(Path(root), rows(), path.name, skips, verify, max_pixels)


def read_folder(root: str | os.PathLike, captions: str | os.PathLike | None = None, strict: bool = False,
                verify: bool = True,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """Images in a directory tree with sidecar NAME.txt captions (one per line), or a captions file:
    JSON {relative name: caption | [captions]} or lines 'relative name<TAB>caption'."""
    root = Path(root)
    skips = Skips(strict)

    def rows() -> Iterable[tuple[str, str]]:
        if captions is None:
            for img in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                rel = img.relative_to(root).as_posix()
                # the caption file goes through the same root check as the image: a NAME.txt that
                # links out of the root would otherwise turn any readable file into captions
                side = resolve_under(root, Path(rel).with_suffix(".txt").as_posix())
                if not side.is_file():
                    skips.add("no caption", rel)
                    continue
                for cap in _read_text(side).splitlines() or [""]:
                    yield rel, cap
            return
        cpath = Path(captions)
        if cpath.suffix.lower() == ".json":
            try:
                mapping = json.loads(_read_text(cpath))
            except (ValueError, RecursionError) as exc:
                raise GapkitError(f"{cpath}: invalid JSON ({exc})") from None
            if not isinstance(mapping, dict):
                raise GapkitError(f"{cpath}: expected a JSON object {{image name: caption(s)}}")
            for rel, caps in mapping.items():
                for cap in caps if isinstance(caps, list) else [caps]:
                    yield rel, cap if isinstance(cap, str) else ""
            return
        for lineno, line in enumerate(_read_text(cpath).splitlines(), start=1):
            if not line.strip():
                continue
            if "\t" not in line:
                skips.add("unreadable row", f"{cpath.name} line {lineno}: no tab between name and caption")
                continue
            rel, cap = line.split("\t", 1)
            yield rel.strip(), cap

    return _assemble(root, rows(), root.name, skips, verify, max_pixels)


def _tar_member_ok(name: str) -> None:
    p = Path(name)
    if name.startswith(("/", "\\")) or p.is_absolute() or ".." in Path(name.replace("\\", "/")).parts:
        raise GapkitError(f"tar member {name!r} escapes the shard ('..' and absolute names are refused)")


def read_webdataset(shards: str | os.PathLike | Sequence[str | os.PathLike], strict: bool = False,
                    verify: bool = True, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageTextDataset:
    """Webdataset shards: members KEY.<image ext> + KEY.txt (or KEY.json with a "caption")."""
    if isinstance(shards, (str, os.PathLike)):
        p = Path(shards)
        files = sorted(p.glob("*.tar")) if p.is_dir() else [p]
    else:
        files = [Path(s) for s in shards]
    if not files:
        raise GapkitError(f"no .tar shards found in {shards}")
    skips = Skips(strict)
    members: list[tuple[str, int, int]] = []
    captions: list[str] = []
    mapping: list[int] = []
    ids: list[str] = []
    for shard in files:
        for key, img, caps in _read_shard(shard, skips):
            data_off, size = img
            with open(shard, "rb") as f:
                f.seek(data_off)
                data = f.read(size)
            if why := oversize(data, max_pixels):
                skips.add("image too large", f"{shard.name}:{key} ({why})")
                continue
            if verify and (why := _verify_image(data)):
                skips.add("corrupt image", f"{shard.name}:{key} ({why})")
                continue
            caps = [" ".join(c.split()) for c in caps]
            if not any(caps):
                skips.add("empty caption", f"{shard.name}:{key}")
                continue
            caps = [c for c in caps if c]
            mapping += [len(members)] * len(caps)
            captions += caps
            members.append((str(shard.resolve()), data_off, size))
            ids.append(f"{shard.name}/{key}")
    return _finish(TarImages(members, max_pixels), captions, mapping, ids, files[0].parent.name or "webdataset",
                   skips, files[0].parent)


def _read_shard(shard: Path, skips: Skips) -> Iterable[tuple[str, tuple[int, int], list[str]]]:
    """(key, (data offset, size) of the image, captions) per sample of one uncompressed shard."""
    try:
        tf = tarfile.open(shard, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        raise GapkitError(f"{shard}: not an uncompressed tar shard ({exc}); compressed shards are not supported") from None
    try:
        samples = _shard_samples(tf)
    except (tarfile.TarError, OSError, EOFError) as exc:  # truncated or damaged after the header
        raise GapkitError(f"{shard}: damaged tar shard ({exc})") from None
    for key, s in samples.items():
        if "image" not in s:
            skips.add("missing image", f"{shard.name}:{key}")
            continue
        caps = _shard_captions(s)
        if caps is None:
            skips.add("no caption", f"{shard.name}:{key}")
            continue
        yield key, s["image"], caps


def _shard_samples(tf: tarfile.TarFile) -> "OrderedDict[str, dict[str, Any]]":
    """{key: {"image": (offset, size), "txt"/"json": text}} of one open shard, in member order."""
    samples: "OrderedDict[str, dict[str, Any]]" = OrderedDict()
    with tf:
        for m in tf.getmembers():
            _tar_member_ok(m.name)
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            if "." not in base:
                continue
            # webdataset convention: the key is the path up to the first dot of the basename
            key = m.name[: len(m.name) - len(base)] + base.split(".", 1)[0]
            ext = base.split(".", 1)[1].lower()
            s = samples.setdefault(key, {})
            if "." + ext in IMAGE_SUFFIXES:
                s["image"] = (m.offset_data, m.size)
            elif ext in ("txt", "json"):
                raw = tf.extractfile(m).read()  # type: ignore[union-attr]
                s[ext] = raw.decode("utf-8", errors="replace")
    return samples


def _shard_captions(s: dict[str, Any]) -> list[str] | None:
    if "txt" in s:
        return s["txt"].splitlines() or [""]
    if "json" in s:
        try:
            obj = json.loads(s["json"])
        except (ValueError, RecursionError):
            return None
        cap = obj.get("caption", obj.get("captions")) if isinstance(obj, dict) else None
        if cap is None:
            return None
        return [c for c in cap if isinstance(c, str)] if isinstance(cap, list) else [str(cap)]
    return None


FORMATS = {"csv": read_csv, "tsv": read_csv, "jsonl": read_jsonl, "coco": read_coco, "flickr": read_flickr,
           "folder": read_folder, "webdataset": read_webdataset}


def detect_format(path: Path) -> str:
    """Guess the reader from the path (see module docstring)."""
    if path.is_dir():
        return "webdataset" if any(path.glob("*.tar")) else "folder"
    suffix = path.suffix.lower()
    name = path.name.lower()
    if suffix in (".csv", ".tsv"):
        return "flickr" if name.startswith("results") and "|" in _read_text(path).split("\n", 1)[0] else "csv"
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "coco"
    if suffix == ".tar":
        return "webdataset"
    if "token" in name or (suffix == ".txt" and "caption" in name):
        return "flickr"
    raise GapkitError(f"{path}: cannot tell the dataset format from the name; pass format= one of {', '.join(FORMATS)}")


def open_user_dataset(path: str | os.PathLike, format: str | None = None, **kw: Any) -> ImageTextDataset:
    """Read user data with the reader for `format` (guessed from the path when None)."""
    p = Path(path)
    if not p.exists():
        raise GapkitError(f"dataset path not found: {p}")
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise GapkitError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return call_with_options(FORMATS[fmt], f"the {fmt} reader", p, **kw)
