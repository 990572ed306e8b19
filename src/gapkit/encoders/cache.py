"""The embedding cache, readable without torch: keys, entries and the spec-level fast path.

Two levels (both under $GAPKIT_CACHE/embeddings/):
    <key>/arrays.safetensors (+ manifest.json)
        key = hash(CACHE_FORMAT, encoder name, encoder.weights_hash(), dataset fingerprint, shard):
        exact, but computing it needs the built model (its weights).
    aliases/<hash(spec, dataset fingerprint, shard)>.json -> {"cache_key", "manifest"}
        spec = everything that fixes the weights without building the model: the registry name,
        the stat (size, mtime) of every local file the name or --checkpoint points at, the seed, and
        the versions of gapkit and the model libraries (read from package metadata, not imported).
A repeat `gapkit embed` resolves its alias, reads the arrays and never imports torch: the whole
process then costs the interpreter, NumPy, safetensors and the dataset index (bench_embed.py).

Single-side requests (`gapkit embed --texts FILE` / `--images DIR`) use one spec-level entry
    sides/<hash(spec, side, content fingerprint)>/arrays.safetensors
since they have no dataset fingerprint of the paired kind.
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_dir, dumps_json, write_json_atomic
from ..data.cache import cache_root
from ..data.dataset import ArrayImages, FileImages, ImageTextDataset, TarImages
from ..errors import GapkitError

CACHE_FORMAT = 1
# Libraries whose version changes what an encoder computes; read from metadata (no import).
MODEL_LIBRARIES = ("torch", "open_clip_torch", "transformers", "sentence-transformers", "timm")


# ------------------------------------------------------------------------------ fingerprints
def dataset_fingerprint(ds: ImageTextDataset) -> str:
    """Hash of a dataset's content: captions, map, ids, and the images (bytes, or file stats)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(json.dumps([ds.name, ds.captions, ds.image_ids]).encode())
    h.update(np.ascontiguousarray(ds.text_to_image).tobytes())
    src = ds.images
    if isinstance(src, ArrayImages):
        h.update(np.ascontiguousarray(src.array).tobytes())
    elif isinstance(src, FileImages):
        _update_with_stats(h, src.paths)
    elif isinstance(src, TarImages):
        for shard, off, size in src.members:
            h.update(f"{shard}|{off}|{size}".encode())
        _update_with_stats(h, sorted({m[0] for m in src.members}))
    else:  # unknown sources: hash the decoded pixels (slow but exact)
        for i in range(len(src)):
            h.update(np.asarray(src.load(i)).tobytes())
    return h.hexdigest()


def _update_with_stats(h: Any, paths: Any) -> None:
    """Feed 'path|size|mtime_ns' of each file into the hash (stats, not contents: fast on 100k files)."""
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())


def path_stamp(path: str | os.PathLike) -> list[Any]:
    """[resolved path, size, mtime_ns] of a file, or of every file directly inside a directory
    (an HF model folder, a heads folder): what the spec key hashes for local weights."""
    p = Path(path).resolve()
    if p.is_dir():
        return [str(p), sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in p.iterdir() if f.is_file())]
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def library_versions() -> dict[str, str | None]:
    """Installed versions of the model libraries, from package metadata (nothing is imported)."""
    out: dict[str, str | None] = {}
    for name in MODEL_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def encoder_spec(encoder: str, checkpoint: str | None, seed: int) -> dict[str, Any]:
    """Everything that fixes an encoder's weights without building it (the spec-level cache key).

    A registry argument that names a local file or folder (towers:HEADS, hf:DIR, open_clip:CONFIG.json)
    is stamped by size and mtime like --checkpoint, so editing the weights in place misses the cache.
    """
    from .. import __version__

    arg = encoder.split(":", 1)[1] if ":" in encoder else ""
    return {"encoder": encoder, "checkpoint": path_stamp(checkpoint) if checkpoint else None,
            "argument_files": path_stamp(arg) if arg and os.path.exists(arg) else None,
            "seed": seed, "gapkit": __version__, "libraries": library_versions()}


# ------------------------------------------------------------------------------ shards
def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """"i/k" -> (i, k) with 0 <= i < k."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i, k = (int(s) for s in shard.split("/"))
        except ValueError:
            raise GapkitError(f"--shard must look like i/k (e.g. 0/4), got {shard!r}") from None
    else:
        i, k = shard
    if not 0 <= i < k:
        raise GapkitError(f"shard {i}/{k}: need 0 <= i < k")
    return i, k


def shard_rows(ds: ImageTextDataset, shard: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Global image rows and text rows of a shard (all rows when shard is None)."""
    if shard is None:
        return np.arange(ds.n_images), np.arange(len(ds.captions))
    i, k = shard
    rows = np.array_split(np.arange(ds.n_images), k)[i]
    in_shard = np.zeros(ds.n_images, dtype=bool)
    in_shard[rows] = True
    return rows, np.flatnonzero(in_shard[ds.text_to_image])


def check_batching(batch_size: Any, num_workers: Any) -> None:
    """batch_size an integer >= 1, num_workers an integer >= 0 (GapkitError otherwise)."""
    from ..typecheck import check_positive, check_value

    check_positive("batch size", check_value(batch_size, int, "batch size"))
    check_positive("workers", check_value(num_workers, int, "workers"), allow_zero=True)


# ------------------------------------------------------------------------------ entries
def entry_dir(key: str, cache_dir: Any) -> Path:
    return cache_root(cache_dir) / "embeddings" / key


def read_entry(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry, None when absent or damaged (a damaged entry is rebuilt, not fatal)."""
    if not (path / "arrays.safetensors").is_file():
        return None
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path / "arrays.safetensors")))
    except Exception:
        return None


def write_entry(path: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
    """Write a cache entry atomically; a cache that cannot be written is a warning, not an error."""
    from safetensors.numpy import save_file

    try:
        with atomic_dir(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "arrays.safetensors"))
            (tmp / "manifest.json").write_text(dumps_json(manifest), encoding="utf-8")
    except OSError as exc:
        import warnings

        warnings.warn(f"could not write the embedding cache {path}: {exc}", stacklevel=3)


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str).encode())
    return h.hexdigest()


def alias_path(spec: dict[str, Any], fingerprint: str, shard: tuple[int, int] | None, cache_dir: Any) -> Path:
    return cache_root(cache_dir) / "embeddings" / "aliases" / f"{_digest(spec, fingerprint, list(shard) if shard else None)}.json"


def side_entry_dir(spec: dict[str, Any], side: str, fingerprint: str, cache_dir: Any) -> Path:
    return cache_root(cache_dir) / "embeddings" / "sides" / _digest(spec, side, fingerprint)


# ------------------------------------------------------------------------------ the fast path
def read_alias(spec: dict[str, Any], fingerprint: str, shard: tuple[int, int] | None,
               cache_dir: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """(arrays, alias entry) that `spec` on this content was answered with before; None on a miss."""
    alias = alias_path(spec, fingerprint, shard, cache_dir)
    if not alias.is_file():
        return None
    try:
        entry = json.loads(alias.read_text(encoding="utf-8"))
        hit = read_entry(entry_dir(entry["cache_key"], cache_dir))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if hit is None else (hit, entry)


def write_alias(spec: dict[str, Any], fingerprint: str, shard: tuple[int, int] | None, cache_dir: Any,
                cache_key: str, manifest: dict[str, Any] | None = None) -> None:
    """Record spec -> weights-keyed entry, so the next identical request needs no model (best effort)."""
    try:
        write_json_atomic(alias_path(spec, fingerprint, shard, cache_dir),
                          {"cache_key": cache_key, "manifest": manifest or {}})
    except OSError:
        pass


def lookup_by_spec(spec: dict[str, Any], ds: ImageTextDataset, shard: tuple[int, int] | None,
                   cache_dir: Any, fingerprint: str) -> Any:
    """PairedEmbeddings for a repeat request, read through its alias without the model; None on a miss."""
    from ..embeddings import PairedEmbeddings

    found = read_alias(spec, fingerprint, shard, cache_dir)
    if found is None:
        return None
    hit, entry = found
    try:
        manifest = dict(entry["manifest"])
    except (KeyError, TypeError, ValueError):
        return None
    image_rows, text_rows = shard_rows(ds, shard)
    local = np.full(ds.n_images, -1, dtype=np.int64)
    local[image_rows] = np.arange(len(image_rows))
    meta = dict(manifest, image_index=image_rows.tolist(), text_index=text_rows.tolist(), from_cache=True)
    return PairedEmbeddings(hit["image"], hit["text"], local[ds.text_to_image[text_rows]],
                            image_ids=[ds.image_ids[i] for i in image_rows],
                            captions=[ds.captions[j] for j in text_rows], metadata=meta)


def extract_by_spec(make_encoder: Callable[[], Any], spec: dict[str, Any], ds: ImageTextDataset, *,
                    cache_dir: Any = None, use_cache: bool = True, shard: str | tuple[int, int] | None = None,
                    **kw: Any) -> Any:
    """Like `extraction.extract`, but a repeat of the same request is answered without the model.

    `spec` names the encoder completely without loading it (`encoder_spec`). The first call builds
    the encoder with `make_encoder()`, extracts (weights-keyed cache) and records spec -> entry;
    an identical later call reads the arrays and the manifest straight from that entry, importing
    neither torch nor the model library.
    """
    check_batching(kw.get("batch_size", 64), kw.get("num_workers", 0))  # a cache hit must not skip it
    sh = parse_shard(shard)
    fp = dataset_fingerprint(ds)
    if use_cache:
        hit = lookup_by_spec(spec, ds, sh, cache_dir, fp)
        if hit is not None:
            return hit
    from .extraction import extract  # torch from here on

    pe = extract(make_encoder(), ds, cache_dir=cache_dir, use_cache=use_cache, shard=sh, **kw)
    if use_cache and pe.metadata.get("cache_key"):
        manifest = {k: v for k, v in pe.metadata.items() if k not in ("image_index", "text_index")}
        write_alias(spec, fp, sh, cache_dir, pe.metadata["cache_key"], manifest)
    return pe
