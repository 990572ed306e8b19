"""The prepared-dataset cache: build once (parse, render, decode), then load in milliseconds.

Location: $GAPKIT_CACHE, else ~/.cache/gapkit (override per call with `cache_dir=`; tests pass a
temporary directory). A prepared dataset is a directory
    index.json      captions, text_to_image, image_ids, labels, class_names, info, image source
    images.npy      for array-backed sources (uint8, memory-mapped on load)
written atomically, under a key that includes the builder's version and the size/mtime of its
source files, so an upgraded Debian package or a new gapkit builder invalidates the entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_dir, dumps_json
from ..errors import GapkitError
from .dataset import DEFAULT_MAX_PIXELS, ArrayImages, FileImages, ImageTextDataset, TarImages


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: `cache_dir`, else $GAPKIT_CACHE, else ~/.cache/gapkit."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("GAPKIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gapkit"


def fingerprint(paths: list[str | os.PathLike], *extra: Any) -> str:
    """A short hash of file/dir sizes and mtimes (not contents: fast on thousands of files) + extras."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def save_prepared(ds: ImageTextDataset, out: Path) -> None:
    """Write `ds` as a prepared-dataset directory (atomically)."""
    with atomic_dir(out) as tmp:
        src = ds.images
        if isinstance(src, ArrayImages):
            np.save(tmp / "images.npy", np.ascontiguousarray(src.array))
            source: dict[str, Any] = {"kind": "array"}
        elif isinstance(src, FileImages):
            source = {"kind": "files", "paths": src.paths, "max_pixels": src.max_pixels}
        elif isinstance(src, TarImages):
            source = {"kind": "tar", "members": [list(m) for m in src.members], "max_pixels": src.max_pixels}
        else:
            raise GapkitError(f"cannot cache an image source of type {type(src).__name__}")
        index = {
            "name": ds.name, "source": source, "captions": ds.captions,
            "text_to_image": ds.text_to_image.tolist(), "image_ids": ds.image_ids,
            "labels": None if ds.labels is None else ds.labels.tolist(),
            "class_names": ds.class_names, "info": ds.info,
        }
        (tmp / "index.json").write_text(dumps_json(index, indent=None), encoding="utf-8")


def load_prepared(path: Path) -> ImageTextDataset:
    """Read a prepared-dataset directory written by `save_prepared`."""
    try:
        index = json.loads((path / "index.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GapkitError(f"{path}: unreadable prepared dataset ({exc}); delete it to rebuild") from None
    source = index["source"]
    if source["kind"] == "array":
        images: Any = ArrayImages(np.load(path / "images.npy", mmap_mode="r", allow_pickle=False))
    elif source["kind"] == "files":
        images = FileImages(list(source["paths"]), source.get("max_pixels", DEFAULT_MAX_PIXELS))
    else:
        images = TarImages([(s, int(o), int(n)) for s, o, n in source["members"]],
                           source.get("max_pixels", DEFAULT_MAX_PIXELS))
    labels = index.get("labels")
    return ImageTextDataset(
        images=images, captions=index["captions"],
        text_to_image=np.asarray(index["text_to_image"], dtype=np.int64), image_ids=index["image_ids"],
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        class_names=index.get("class_names"), name=index["name"], info=index.get("info") or {},
    )


def cached_build(key: str, build: Callable[[], ImageTextDataset],
                 cache_dir: str | os.PathLike | None = None, refresh: bool = False) -> ImageTextDataset:
    """Load the prepared dataset `key` from the cache, building and storing it on a miss."""
    path = cache_root(cache_dir) / "datasets" / key
    if not refresh and (path / "index.json").is_file():
        return load_prepared(path)
    ds = build()
    try:
        save_prepared(ds, path)
    except OSError as exc:  # a read-only cache must not stop the run: warn and go on uncached
        import warnings

        warnings.warn(f"could not write the dataset cache {path}: {exc}", stacklevel=2)
        return ds
    return load_prepared(path)
