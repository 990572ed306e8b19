"""Embedding extraction: dataset -> encoder -> PairedEmbeddings, batched and cached on disk.

Pipeline: a torch DataLoader decodes and preprocesses images in `num_workers` processes while
the main process runs `encoder.encode_image` under torch.inference_mode; captions are encoded in
batches of `batch_size`. Results are cached under
    $GAPKIT_CACHE/embeddings/<key>/arrays.safetensors (+ manifest.json)
with key = hash(encoder name, encoder.weights_hash(), dataset fingerprint, shard), so an
identical second call reads the cache instead of running the model (gapkit.encoders.cache holds
the cache, torch-free; its extract_by_spec answers a repeat request without building the model).

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
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.dataset import FileImages, ImageTextDataset
from ..embeddings import PairedEmbeddings
from ..errors import GapkitError
# The cache itself lives in a torch-free module so that a cache hit never imports torch; these
# names (and the embed-directory functions) are re-exported for the callers that import them from here.
from .embed_dir import load_embed_dir, merge_embed_dirs, merge_shards, save_embed_dir  # noqa: F401
from .cache import (CACHE_FORMAT, check_batching, dataset_fingerprint, entry_dir as _cache_dir,  # noqa: F401
                    extract_by_spec, parse_shard, read_entry as _read_cache, shard_rows, write_entry as _write_cache)


# ------------------------------------------------------------------------------ encoding
class _Images(torch.utils.data.Dataset):
    """Preprocessed images `load(rows[k])` for a DataLoader (decoded in its worker processes)."""

    def __init__(self, load: Callable[[int], Any], rows: np.ndarray, preprocess: Any) -> None:
        self.load, self.rows, self.preprocess = load, rows, preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.preprocess(self.load(int(self.rows[k])))


def _encode_images(encoder: Any, load: Callable[[int], Any], rows: np.ndarray, batch_size: int,
                   num_workers: int, progress: bool) -> np.ndarray:
    """(len(rows), D) float32: images load(i) for i in rows, decoded in a DataLoader, encoded in batches."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(_Images(load, rows, encoder.preprocess), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False,
                                         persistent_workers=False, prefetch_factor=4 if num_workers else None)
    out = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"{encoder.name} images", unit="batch", disable=not progress):
            out.append(encoder.encode_image(batch).numpy())
    return (np.concatenate(out) if out else np.zeros((0, 0), np.float32)).astype(np.float32, copy=False)


def encode_texts(encoder: Any, texts: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """(len(texts), D) float32: encoder.encode_text over batches of `batch_size` strings."""
    from tqdm.auto import tqdm

    out = []
    with torch.inference_mode():
        for s in tqdm(range(0, len(texts), batch_size), desc=f"{encoder.name} texts", unit="batch",
                      disable=not progress):
            out.append(encoder.encode_text(list(texts[s:s + batch_size])).numpy())
    return (np.concatenate(out) if out else np.zeros((0, 0), np.float32)).astype(np.float32, copy=False)


def encode_image_files(encoder: Any, paths: Sequence[str], batch_size: int = 64, num_workers: int = 0,
                       progress: bool = True, max_pixels: int | None = None) -> np.ndarray:
    """(len(paths), D) float32 for image files (already checked against their root)."""
    src = FileImages(list(paths), max_pixels)
    return _encode_images(encoder, src.load, np.arange(len(src)), batch_size, num_workers, progress)


def encode_arrays(encoder: Any, ds: ImageTextDataset, image_rows: np.ndarray | None = None,
                  text_rows: np.ndarray | None = None, batch_size: int = 64, num_workers: int = 0,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run the encoder over images and captions: (len(image_rows), D_i), (len(text_rows), D_t) float32."""
    image_rows = np.arange(ds.n_images) if image_rows is None else image_rows
    text_rows = np.arange(len(ds.captions)) if text_rows is None else text_rows
    if batch_size < 1:
        raise GapkitError(f"batch_size must be positive, got {batch_size}")
    img = _encode_images(encoder, ds.image, image_rows, batch_size, num_workers, progress)
    txt = encode_texts(encoder, [ds.captions[j] for j in text_rows], batch_size, progress)
    return img, txt


# ------------------------------------------------------------------------------ the cache
def cache_key(encoder: Any, ds: ImageTextDataset, shard: tuple[int, int] | None, fingerprint: str | None = None) -> str:
    """hash(encoder name, weights hash, dataset content fingerprint, shard)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([CACHE_FORMAT, encoder.name, encoder.weights_hash(), fingerprint or dataset_fingerprint(ds),
                         list(shard) if shard else None]).encode())
    return h.hexdigest()


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
