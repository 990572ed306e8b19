"""One modality alone: texts from a file or images from a folder -> one-side embeddings, cached.

This is what clip-retrieval's inference does for a query set or an image folder: embed what
you have, without inventing pairs.
    read_texts(FILE)     .txt: one text per line (blank lines skipped); .csv/.tsv: one column (by name,
                         or the first of title, caption, text, ...; a one-column file takes any header name);
                         .jsonl: one key per object (a string, or a list of strings)
    list_images(DIR)     every image file under DIR (sorted relative paths); a path that resolves
                         outside DIR (a symlink) is refused unless its folder is an allowed root;
                         unreadable or too-large images are skipped with one counted warning
    embed_side(...)      encode them with an encoder; the cache key is the encoder spec (no model
                         needed), the side and the content (texts, or image paths + sizes + mtimes),
                         so a repeat call reads the cache without importing torch.
The result is written by `embed_dir.save_side_dir` (`gapkit embed --texts/--images`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GapkitError

TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")


@dataclass
class SideInput:
    """What one side holds before encoding: texts or image paths, their ids, and where they came from."""

    side: str                      # "text" or "image"
    items: list[str]               # texts, or absolute image paths
    ids: list[str]                 # "line 3" / "row 3" / relative image paths
    source: str                    # the file or folder given
    info: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Content hash: the texts, or the image paths with their sizes and mtimes."""
        from .cache import _update_with_stats

        h = hashlib.blake2b(digest_size=12)
        h.update(json.dumps([self.side, self.items, self.ids]).encode())
        if self.side == "image":
            _update_with_stats(h, self.items)
        return h.hexdigest()


# ------------------------------------------------------------------------------ reading
def read_texts(path: str | os.PathLike, column: str | None = None, sep: str | None = None) -> SideInput:
    """Texts of a .txt / .csv / .tsv / .jsonl file (see the module docstring); GapkitError when none."""
    from ..data.readers import _read_text

    p = Path(path)
    if not p.is_file():
        raise GapkitError(f"--texts {p}: no such file")
    suffix = p.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise GapkitError(f"--texts {p}: unknown text file type '{suffix or '(no suffix)'}'; "
                          f"expected {', '.join(TEXT_SUFFIXES)}")
    if column is not None and suffix == ".txt":
        raise GapkitError("--caption-column applies to a .csv/.tsv/.jsonl --texts file, not to .txt (one text per line)")
    text = _read_text(p)
    if suffix == ".txt":
        pairs = [(f"line {i}", ln) for i, ln in enumerate(text.splitlines(), start=1)]
        info: dict[str, Any] = {}
    elif suffix == ".jsonl":
        pairs, info = _jsonl_texts(p, text, column)
    else:
        pairs, info = _csv_texts(p, text, column, sep)
    kept = [(i, " ".join(t.split())) for i, t in pairs]
    kept = [(i, t) for i, t in kept if t]
    if not kept:
        raise GapkitError(f"--texts {p}: no non-empty texts")
    return SideInput("text", [t for _, t in kept], [i for i, _ in kept], str(p.resolve()), info)


def _csv_texts(p: Path, text: str, column: str | None, sep: str | None) -> tuple[list[tuple[str, str]], dict]:
    from ..data.readers import CSV_CAPTION_COLUMNS, _pick_column, guess_separator

    sep = sep or guess_separator(text.split("\n", 1)[0], p.suffix)
    if len(sep) != 1:
        raise GapkitError(f"the CSV separator must be one character, got {sep!r}")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    except csv.Error as exc:
        raise GapkitError(f"{p}: {exc}") from None
    if not rows:
        raise GapkitError(f"{p}: empty file (a header row naming the text column was expected)")
    cols = [c.strip() for c in rows[0]]
    ci = 0 if len(cols) == 1 and column is None else _pick_column(
        cols, column, CSV_CAPTION_COLUMNS, "text", "--caption-column", p)
    from ..data.problems import Skips

    skips, out = Skips(), []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) == len(cols):
            out.append((f"row {n}", r[ci]))
        elif any(r):  # a row cut or split wrongly is counted in one warning, not dropped silently
            skips.add("unreadable row", f"line {n}: {len(r)} fields, header has {len(cols)}")
    skips.report(p.name)
    return out, {"columns": {"text": cols[ci], "sep": sep}, "skipped": skips.as_dict()}


def _jsonl_texts(p: Path, text: str, key: str | None) -> tuple[list[tuple[str, str]], dict]:
    from ..data.readers import _JSONL_CAPTION_KEYS

    out: list[tuple[str, str]] = []
    used = key
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise GapkitError(f"{p}: line {n}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise GapkitError(f"{p}: line {n}: expected a JSON object, got {type(obj).__name__}")
        used = used or next((k for k in _JSONL_CAPTION_KEYS if k in obj), None)
        if used is None or used not in obj:
            raise GapkitError(f"{p}: line {n}: no text key (looked for {key or ', '.join(_JSONL_CAPTION_KEYS)}; "
                              "set --caption-column)")
        val = obj[used]
        for t in val if isinstance(val, list) else [val]:
            out.append((f"line {n}", t if isinstance(t, str) else ""))
    return out, {"columns": {"text": used}}


def list_images(folder: str | os.PathLike, allow_roots: Sequence[str | os.PathLike] = (), strict: bool = False,
                max_pixels: int | None = None, verify: bool = True) -> SideInput:
    """Every image file under `folder` (see the module docstring), as a SideInput of absolute paths."""
    from ..data.dataset import DEFAULT_MAX_PIXELS, oversize, resolve_under
    from ..data.problems import Skips
    from ..data.readers import IMAGE_SUFFIXES, _verify_image

    root = Path(folder)
    if not root.is_dir():
        raise GapkitError(f"--images {root}: not a directory")
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else (max_pixels or None)
    skips = Skips(strict)
    paths, ids = [], []
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() not in IMAGE_SUFFIXES or f.is_dir():
            continue
        rel = f.relative_to(root).as_posix()
        full = resolve_under(root, rel, allow_roots)  # a symlink out of the folder is refused here
        if why := oversize(str(full), max_pixels):
            skips.add("image too large", f"{rel} ({why})")
        elif verify and (why := _verify_image(str(full))):
            skips.add("corrupt image", f"{rel} ({why})")
        else:
            paths.append(str(full))
            ids.append(rel)
    skips.report(root.name)
    if not paths:
        raise GapkitError(f"--images {root}: no readable images ({', '.join(IMAGE_SUFFIXES)}) under the folder")
    return SideInput("image", paths, ids, str(root.resolve()), {"skipped": skips.as_dict(), "max_pixels": max_pixels})


# ------------------------------------------------------------------------------ encoding
def embed_side(make_encoder: Callable[[], Any], spec: dict[str, Any], data: SideInput, *, cache_dir: Any = None,
               use_cache: bool = True, batch_size: int = 64, num_workers: int = 0,
               progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """(rows (n, D) float32, manifest) for one side; a repeat request is read from the cache
    (keyed by spec, side and content) without building the model or importing torch."""
    from ..atomic import read_json_object
    from .cache import check_batching, read_entry, side_entry_dir, write_entry

    check_batching(batch_size, num_workers)
    fp = data.fingerprint()
    entry = side_entry_dir(spec, data.side, fp, cache_dir)
    if use_cache and (hit := read_entry(entry)) is not None and data.side in hit:
        try:
            manifest = read_json_object(entry / "manifest.json", "embedding cache manifest")
        except GapkitError:
            manifest = None
        if manifest is not None and len(hit[data.side]) == len(data.items):
            return hit[data.side], dict(manifest, from_cache=True)
    t0 = time.perf_counter()
    enc = make_encoder()
    from .extraction import encode_image_files, encode_texts  # torch from here on

    if data.side == "text":
        rows = encode_texts(enc, data.items, batch_size, progress)
    else:
        rows = encode_image_files(enc, data.items, batch_size, num_workers, progress,
                                  max_pixels=data.info.get("max_pixels"))
    manifest = _manifest(enc, data, fp, time.perf_counter() - t0)
    if use_cache:
        write_entry(entry, {data.side: rows}, manifest)
    return rows, manifest


def _manifest(enc: Any, data: SideInput, fingerprint: str, seconds: float) -> dict[str, Any]:
    from ..records import versions

    return {"kind": "embeddings", "model": enc.name, "embed_dim": int(enc.embed_dim),
            "weights_hash": enc.weights_hash(), "preprocessing": getattr(enc, "preprocessing", {}),
            "origin": getattr(enc, "origin", None), "dataset": Path(data.source).name, "source": data.source,
            "split": "all", "content_fingerprint": fingerprint, "input_info": data.info,
            "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3)}
