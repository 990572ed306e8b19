"""Embedding extraction: dataset -> encoder -> PairedEmbeddings, batched and cached on disk.

Pipeline: a torch DataLoader decodes and preprocesses images in `num_workers` processes while
the main process runs `encoder.encode_image` under torch.inference_mode; captions are encoded in
batches of `batch_size`. Results are cached under
    $GAPKIT_CACHE/embeddings/<key>/arrays.safetensors (+ manifest.json)
with key = hash(encoder name, encoder.weights_hash(), dataset fingerprint, shard), so an
identical second call reads the cache instead of running the model.

Sharding: shard (i, k) embeds the i-th of k contiguous blocks of images and those images'
captions; its output carries the global row indices (image_index, text_index) so
`merge_embed_dirs` can reassemble the full PairedEmbeddings in the original order.

Embed directories (`gapkit embed --out DIR`):
    DIR/embeddings.safetensors   image (N, D), text (M, D), text_to_image (M,) [+ image_index, text_index]
    DIR/manifest.json            model, weights hash, dataset, split, preprocessing, versions, shard, counts
    DIR/captions.json            captions and image ids, row-aligned
`gapkit measure --embeddings DIR/embeddings.safetensors` reads it directly.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import atomic_dir, dumps_json, read_json_object
from ..errors import reading
from ..validation import check_allocation
from ..typecheck import check_positive, check_value
from ..data.cache import cache_root
from ..data.dataset import ArrayImages, FileImages, ImageTextDataset, TarImages
from ..embeddings import PairedEmbeddings
from ..errors import GapkitError

CACHE_FORMAT = 1


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
        for p in src.paths:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    elif isinstance(src, TarImages):
        for shard, off, size in src.members:
            h.update(f"{shard}|{off}|{size}".encode())
        for shard in sorted({m[0] for m in src.members}):
            st = os.stat(shard)
            h.update(f"{shard}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:  # unknown sources: hash the decoded pixels (slow but exact)
        for i in range(len(src)):
            h.update(np.asarray(src.load(i)).tobytes())
    return h.hexdigest()


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


# ------------------------------------------------------------------------------ encoding
class _Images(torch.utils.data.Dataset):
    def __init__(self, ds: ImageTextDataset, rows: np.ndarray, preprocess: Any) -> None:
        self.ds, self.rows, self.preprocess = ds, rows, preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.preprocess(self.ds.image(int(self.rows[k])))


def encode_arrays(encoder: Any, ds: ImageTextDataset, image_rows: np.ndarray | None = None,
                  text_rows: np.ndarray | None = None, batch_size: int = 64, num_workers: int = 0,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run the encoder over images and captions: (len(image_rows), D_i), (len(text_rows), D_t) float32."""
    from tqdm.auto import tqdm

    image_rows = np.arange(ds.n_images) if image_rows is None else image_rows
    text_rows = np.arange(len(ds.captions)) if text_rows is None else text_rows
    if batch_size < 1:
        raise GapkitError(f"batch_size must be positive, got {batch_size}")
    loader = torch.utils.data.DataLoader(_Images(ds, image_rows, encoder.preprocess), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False,
                                         persistent_workers=False, prefetch_factor=4 if num_workers else None)
    image_out = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"{encoder.name} images", unit="batch", disable=not progress):
            image_out.append(encoder.encode_image(batch).numpy())
        text_out = []
        for s in tqdm(range(0, len(text_rows), batch_size), desc=f"{encoder.name} texts", unit="batch",
                      disable=not progress):
            text_out.append(encoder.encode_text([ds.captions[j] for j in text_rows[s:s + batch_size]]).numpy())
    img = np.concatenate(image_out) if image_out else np.zeros((0, 0), np.float32)
    txt = np.concatenate(text_out) if text_out else np.zeros((0, 0), np.float32)
    return img.astype(np.float32, copy=False), txt.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------ the cache
def cache_key(encoder: Any, ds: ImageTextDataset, shard: tuple[int, int] | None, fingerprint: str | None = None) -> str:
    """hash(encoder name, weights hash, dataset content fingerprint, shard)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([CACHE_FORMAT, encoder.name, encoder.weights_hash(), fingerprint or dataset_fingerprint(ds),
                         list(shard) if shard else None]).encode())
    return h.hexdigest()


def _cache_dir(key: str, cache_dir: Any) -> Path:
    return cache_root(cache_dir) / "embeddings" / key


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not (path / "arrays.safetensors").is_file():
        return None
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path / "arrays.safetensors")))
    except Exception:  # a damaged entry is rebuilt, not fatal
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    try:
        with atomic_dir(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "arrays.safetensors"))
            (tmp / "manifest.json").write_text(dumps_json(manifest), encoding="utf-8")
    except OSError as exc:
        import warnings

        warnings.warn(f"could not write the embedding cache {path}: {exc}", stacklevel=3)


def encode_arrays_cached(encoder: Any, ds: ImageTextDataset, batch_size: int = 64, num_workers: int = 0,
                         cache_dir: Any = None, progress: bool = True, use_cache: bool = True,
                         shard: tuple[int, int] | None = None, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`encode_arrays` over a shard (or everything), through the on-disk cache (`key`: precomputed)."""
    image_rows, text_rows = shard_rows(ds, shard)
    key = (key or cache_key(encoder, ds, shard)) if use_cache else ""
    path = _cache_dir(key, cache_dir)
    hit = _read_cache(path) if use_cache else None
    if hit is not None:
        return hit["image"], hit["text"]
    t0 = time.perf_counter()
    if hasattr(encoder, "encode_dataset"):  # encoders that can reuse cached intermediate features
        img, txt = encoder.encode_dataset(ds, image_rows, text_rows, batch_size=batch_size, num_workers=num_workers,
                                          cache_dir=cache_dir, progress=progress, use_cache=use_cache)
    else:
        img, txt = encode_arrays(encoder, ds, image_rows, text_rows, batch_size, num_workers, progress)
    if use_cache:
        _write_cache(path, {"image": img, "text": txt},
                     {"encoder": encoder.name, "weights_hash": encoder.weights_hash(), "dataset": ds.name,
                      "split": ds.info.get("split"), "shard": shard, "seconds": time.perf_counter() - t0})
    return img, txt


def check_batching(batch_size: Any, num_workers: Any) -> None:
    """batch_size an integer >= 1, num_workers an integer >= 0 (GapkitError otherwise)."""
    check_positive("batch size", check_value(batch_size, int, "batch size"))
    check_positive("workers", check_value(num_workers, int, "workers"), allow_zero=True)


def extract(encoder: Any, ds: ImageTextDataset, batch_size: int = 64, num_workers: int = 0,
            cache_dir: Any = None, progress: bool = True, use_cache: bool = True,
            shard: str | tuple[int, int] | None = None) -> PairedEmbeddings:
    """Embed a dataset (or one shard of it) with `encoder` -> PairedEmbeddings (unnormalised).

    metadata holds the manifest (model, weights hash, dataset, split, preprocessing, versions,
    cache key, shard) plus image_index / text_index (global rows) for shards.
    """
    check_batching(batch_size, num_workers)
    sh = parse_shard(shard)
    if hasattr(encoder, "prepare"):
        encoder.prepare(ds, batch_size=batch_size, num_workers=num_workers, cache_dir=cache_dir, progress=progress)
    if not getattr(encoder, "embed_dim", 0):
        raise GapkitError(f"encoder {encoder.name} has no common embedding space (use tower_features for raw towers)")
    t0 = time.perf_counter()
    fp = dataset_fingerprint(ds)
    key = cache_key(encoder, ds, sh, fp)
    img, txt = encode_arrays_cached(encoder, ds, batch_size, num_workers, cache_dir, progress, use_cache, sh, key)
    image_rows, text_rows = shard_rows(ds, sh)
    local = np.full(ds.n_images, -1, dtype=np.int64)
    local[image_rows] = np.arange(len(image_rows))
    manifest = build_manifest(encoder, ds, sh, key if use_cache else None, fp)
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    manifest["image_index"] = image_rows.tolist()
    manifest["text_index"] = text_rows.tolist()
    return PairedEmbeddings(img, txt, local[ds.text_to_image[text_rows]],
                            image_ids=[ds.image_ids[i] for i in image_rows],
                            captions=[ds.captions[j] for j in text_rows], metadata=manifest)


def build_manifest(encoder: Any, ds: ImageTextDataset, shard: tuple[int, int] | None, key: str | None,
                   fingerprint: str) -> dict[str, Any]:
    from ..records import versions

    return {
        "kind": "embeddings", "model": encoder.name, "embed_dim": int(encoder.embed_dim),
        "weights_hash": encoder.weights_hash(), "preprocessing": encoder.preprocessing,
        "origin": getattr(encoder, "origin", None),
        "dataset": ds.name, "split": ds.info.get("split"), "seed": ds.info.get("seed"), "limit": ds.info.get("limit"),
        "dataset_fingerprint": fingerprint, "n_images_total": ds.n_images,
        "n_texts_total": len(ds.captions), "shard": list(shard) if shard else None, "cache_key": key,
        "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ------------------------------------------------------------------------------ embed dirs
def save_embed_dir(pe: PairedEmbeddings, out: str | os.PathLike) -> Path:
    """Write an embed directory (see module docstring) atomically."""
    from safetensors.numpy import save_file

    meta = dict(pe.metadata)
    image_index = np.asarray(meta.pop("image_index", range(pe.n_image)), dtype=np.int64)
    text_index = np.asarray(meta.pop("text_index", range(pe.n_text)), dtype=np.int64)
    arrays = {"image": np.ascontiguousarray(pe.image, dtype=np.float32),
              "text": np.ascontiguousarray(pe.text, dtype=np.float32),
              "text_to_image": pe.mapping.astype(np.int64), "image_index": image_index, "text_index": text_index}
    meta.update(n_image=pe.n_image, n_text=pe.n_text, dim=pe.dim)
    with atomic_dir(out) as tmp:
        save_file(arrays, str(tmp / "embeddings.safetensors"))
        (tmp / "manifest.json").write_text(dumps_json(meta) + "\n", encoding="utf-8")
        (tmp / "captions.json").write_text(dumps_json({"captions": pe.captions, "image_ids": pe.image_ids}, indent=None),
                                           encoding="utf-8")
    return Path(out)


def load_embed_dir(path: str | os.PathLike) -> PairedEmbeddings:
    """Read an embed directory back (arrays, captions, ids, manifest incl. shard indices)."""
    from safetensors.numpy import load_file

    p = Path(path)
    with reading(p, "gapkit embed directory"):
        arrays = load_file(str(p / "embeddings.safetensors"))
        meta = read_json_object(p / "manifest.json", "embed manifest")
        caps = read_json_object(p / "captions.json", "embed captions file")
        meta["image_index"] = arrays["image_index"].tolist()
        meta["text_index"] = arrays["text_index"].tolist()
        return PairedEmbeddings(arrays["image"], arrays["text"], arrays["text_to_image"], image_ids=caps["image_ids"],
                                captions=caps["captions"], metadata=meta)


def merge_shards(parts: Sequence[PairedEmbeddings]) -> PairedEmbeddings:
    """Reassemble shards 0..k-1 of one extraction into the full PairedEmbeddings."""
    if not parts:
        raise GapkitError("nothing to merge")
    first = parts[0].metadata
    same = ("model", "weights_hash", "dataset_fingerprint")
    for pe in parts[1:]:
        for k in same:
            if pe.metadata.get(k) != first.get(k):
                raise GapkitError(f"shards disagree on {k}: {first.get(k)} vs {pe.metadata.get(k)}")
    ks = {tuple(pe.metadata["shard"])[1] if pe.metadata.get("shard") else None for pe in parts}
    idx = sorted(pe.metadata["shard"][0] for pe in parts if pe.metadata.get("shard"))
    if len(ks) != 1 or None in ks or idx != list(range(next(iter(ks)))):
        raise GapkitError(f"need exactly shards 0..k-1 of one k; got {[pe.metadata.get('shard') for pe in parts]}")
    with reading(None, "shards to merge (their indices, sizes or dimensions do not fit together)"):
        return _merge_checked(parts, first)


def _merge_checked(parts: Sequence[PairedEmbeddings], first: dict) -> PairedEmbeddings:
    n, m, d = int(first["n_images_total"]), int(first["n_texts_total"]), parts[0].dim
    check_allocation(4.0 * (n + m) * d, f"merging {n} images and {m} texts of dimension {d}")
    image, text = np.zeros((n, d), np.float32), np.zeros((m, d), np.float32)
    mapping, captions, ids = np.zeros(m, np.int64), [""] * m, [""] * n
    for pe in parts:
        ii, ti = np.asarray(pe.metadata["image_index"]), np.asarray(pe.metadata["text_index"])
        image[ii], text[ti], mapping[ti] = pe.image, pe.text, ii[pe.mapping]
        for r, c in zip(ti, pe.captions or []):
            captions[r] = c
        for r, c in zip(ii, pe.image_ids or []):
            ids[r] = c
    meta = {k: v for k, v in first.items() if k not in ("image_index", "text_index", "seconds")}
    meta.update(shard=None, merged_from=len(parts), cache_key=None)
    return PairedEmbeddings(image, text, mapping, image_ids=ids, captions=captions, metadata=meta)


def merge_embed_dirs(dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> PairedEmbeddings:
    pe = merge_shards([load_embed_dir(d) for d in dirs])
    save_embed_dir(pe, out)
    return pe


# ------------------------------------------------------------------------------ spec-level cache
def _alias_path(spec: dict[str, Any], ds: ImageTextDataset, shard: tuple[int, int] | None, cache_dir: Any) -> Path:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([CACHE_FORMAT, spec, dataset_fingerprint(ds), list(shard) if shard else None],
                        sort_keys=True, default=str).encode())
    return cache_root(cache_dir) / "embeddings" / "aliases" / f"{h.hexdigest()}.json"


def extract_by_spec(make_encoder: Any, spec: dict[str, Any], ds: ImageTextDataset, *, cache_dir: Any = None,
                    use_cache: bool = True, shard: str | tuple[int, int] | None = None, **kw: Any) -> PairedEmbeddings:
    """Like `extract`, but a repeat of the same request is answered without building the model.

    `spec` names the encoder completely without loading it (registry name, kwargs, checkpoint
    path + size + mtime, library versions). The first call builds the encoder with
    `make_encoder()`, extracts (weights-keyed cache) and records spec -> cache entry; an identical
    later call reads the arrays and the manifest straight from that entry.
    """
    check_batching(kw.get("batch_size", 64), kw.get("num_workers", 0))  # a cache hit must not skip it
    sh = parse_shard(shard)
    alias = _alias_path(spec, ds, sh, cache_dir)
    if use_cache and alias.is_file():
        try:
            entry = json.loads(alias.read_text(encoding="utf-8"))
            hit = _read_cache(_cache_dir(entry["cache_key"], cache_dir))
        except (OSError, ValueError, KeyError):
            hit = None
        if hit is not None:
            image_rows, text_rows = shard_rows(ds, sh)
            local = np.full(ds.n_images, -1, dtype=np.int64)
            local[image_rows] = np.arange(len(image_rows))
            meta = dict(entry["manifest"], image_index=image_rows.tolist(), text_index=text_rows.tolist(), from_cache=True)
            return PairedEmbeddings(hit["image"], hit["text"], local[ds.text_to_image[text_rows]],
                                    image_ids=[ds.image_ids[i] for i in image_rows],
                                    captions=[ds.captions[j] for j in text_rows], metadata=meta)
    pe = extract(make_encoder(), ds, cache_dir=cache_dir, use_cache=use_cache, shard=sh, **kw)
    if use_cache and pe.metadata.get("cache_key"):
        from ..atomic import write_json_atomic

        manifest = {k: v for k, v in pe.metadata.items() if k not in ("image_index", "text_index")}
        try:
            write_json_atomic(alias, {"cache_key": pe.metadata["cache_key"], "manifest": manifest})
        except OSError:
            pass
    return pe
