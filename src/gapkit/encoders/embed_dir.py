"""Embed directories (`gapkit embed --out DIR`), written and read without torch.

Paired (a dataset's images and captions):
    DIR/embeddings.safetensors   image (N, D), text (M, D), text_to_image (M,), image_index, text_index
    DIR/manifest.json            model, weights hash, dataset, split, preprocessing, versions, shard,
                                 counts, sides = ["image", "text"]
    DIR/captions.json            captions and image ids, row-aligned
One side (`gapkit embed --texts FILE` / `--images DIR`):
    DIR/embeddings.safetensors   text (M, D) or image (N, D) only
    DIR/manifest.json            sides = ["text"] or ["image"], model, source, counts
    DIR/captions.json            the texts (captions) or the image paths (image_ids)
`gapkit.embeddings.load_embeddings` reads a paired directory; `load_array` reads one side of
either kind (see docs/embeddings-io in docs/encoders.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_dir, dumps_json, read_json_object
from ..embeddings import PairedEmbeddings
from ..errors import GapkitError, reading
from ..validation import check_allocation

SIDES = ("image", "text")


def save_embed_dir(pe: PairedEmbeddings, out: str | os.PathLike) -> Path:
    """Write an embed directory (see module docstring) atomically."""
    meta = dict(pe.metadata)
    image_index = np.asarray(meta.pop("image_index", range(pe.n_image)), dtype=np.int64)
    text_index = np.asarray(meta.pop("text_index", range(pe.n_text)), dtype=np.int64)
    arrays = {"image": np.ascontiguousarray(pe.image, dtype=np.float32),
              "text": np.ascontiguousarray(pe.text, dtype=np.float32),
              "text_to_image": pe.mapping.astype(np.int64), "image_index": image_index, "text_index": text_index}
    meta.update(n_image=pe.n_image, n_text=pe.n_text, dim=pe.dim, sides=list(SIDES))
    return _write_dir(out, arrays, meta, {"captions": pe.captions, "image_ids": pe.image_ids})


def _write_dir(out: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any],
               names: dict[str, Any]) -> Path:
    """The three files of an embed directory, written atomically (one temp dir, renamed)."""
    from safetensors.numpy import save_file

    with atomic_dir(out) as tmp:
        save_file(arrays, str(tmp / "embeddings.safetensors"))
        (tmp / "manifest.json").write_text(dumps_json(meta) + "\n", encoding="utf-8")
        (tmp / "captions.json").write_text(dumps_json(names, indent=None), encoding="utf-8")
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


def save_side_dir(matrix: np.ndarray, side: str, out: str | os.PathLike, manifest: dict[str, Any],
                  captions: Sequence[str] | None = None, image_ids: Sequence[str] | None = None) -> Path:
    """Write a one-side embed directory atomically: `side` ("image" or "text") rows (n, D) only."""
    if side not in SIDES:
        raise GapkitError(f"side must be image or text, got {side!r}")
    a = np.ascontiguousarray(matrix, dtype=np.float32)
    meta = dict(manifest, sides=[side], **{f"n_{side}": int(a.shape[0])}, dim=int(a.shape[1]))
    return _write_dir(out, {side: a}, meta, {"captions": None if captions is None else list(captions),
                                             "image_ids": None if image_ids is None else list(image_ids)})
