"""Each training batch's caption embeddings for IMSep inside open_clip_train, looked up by token ids.

IMSep (AlignCLIP, gapkit.losses.imsep) needs a semantic embedding of every caption in the batch, but
open_clip_train's batches carry token ids only: its CsvDataset returns (image, tokenizer([caption])[0])
and the loss is called with the model's features. So, once before training:

    captions (the --train-data CSV column, read as open_clip's CsvDataset reads it)
      -> token ids, with the tokenizer open_clip_train itself builds (open_clip.get_tokenizer(args.model,
         cache_dir, context_length)), (N, L) int64
      -> h(tokens) = sum_k tokens[:, k] * R[k]  (mod 2^64; R fixed odd random int64s)   (N,)
      -> a table sorted by h, each hash with the row of its caption's embedding (N, K)

and at every step the batch's token ids (B, L), which a forward pre-hook on the model keeps
(`TokenTap`), are hashed the same way and found by binary search: (B, K) rows, on the batch's device.

The embeddings come from `--gap-loss-cache FILE` (a .npy (N, K) float array, row i for CSV row i,
e.g. the output of any text encoder) or, without it, from gapkit's SBERT cache
(gapkit.losses.semantic.caption_embeddings, the bundled all-MiniLM-L6-v2 offline).
Captions whose token ids are equal (duplicates, or texts that differ only after the context length)
are one key and get the first one's embedding: the model sees the same input for them. A 64-bit hash
collision between different token rows has probability about N^2 / 2^65 (1e-7 at 2M captions).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import GapkitError

_HASH_SEED = 20_240_521


def _multipliers(length: int) -> np.ndarray:
    """(L,) fixed odd int64 multipliers of the token hash."""
    r = np.random.default_rng(_HASH_SEED).integers(1, 2**62, size=length, dtype=np.int64)
    return r | 1


def token_hash(tokens: Any) -> Any:
    """(N, L) integer token ids -> (N,) int64 hash, sum_k t_k * R_k wrapping mod 2^64 (torch or NumPy)."""
    if not isinstance(tokens, np.ndarray) and hasattr(tokens, "device"):  # torch: stay on the device
        import torch

        mult = torch.from_numpy(_multipliers(tokens.shape[1])).to(tokens.device)
        return (tokens.long() * mult).sum(1)
    with np.errstate(over="ignore"):
        return (np.asarray(tokens, dtype=np.int64) * _multipliers(tokens.shape[1])).sum(1)


class CaptionTable:
    """Sorted token hashes -> caption embeddings; `lookup(tokens)` gives a batch's (B, K) rows."""

    def __init__(self, tokens: np.ndarray, embeddings: np.ndarray) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] != tokens.shape[0]:
            raise GapkitError(f"caption embeddings: expected ({tokens.shape[0]}, K) rows, one per training "
                              f"caption, got shape {tuple(embeddings.shape)}")
        if not np.isfinite(embeddings).all():
            raise GapkitError("caption embeddings contain NaN or infinite values")
        h = token_hash(tokens)
        self.hashes, first = np.unique(h, return_index=True)  # sorted; the first caption of equal token rows
        self.embeddings = np.ascontiguousarray(embeddings[first], dtype=np.float32)
        self.n_captions = tokens.shape[0]
        self._device_cache: dict[str, Any] = {}

    def lookup(self, tokens: Any) -> Any:
        """(B, L) token ids (torch, any device) -> (B, K) float32 embeddings on that device."""
        import torch

        hashes, emb = self._on(tokens.device)
        h = token_hash(tokens)
        pos = torch.searchsorted(hashes, h).clamp_max(hashes.shape[0] - 1)
        if not bool((hashes[pos] == h).all()):
            raise GapkitError("a training caption is not in the caption table (token ids not found): the "
                              "embeddings must be built from the same --train-data CSV and tokenizer")
        return emb[pos]

    def _on(self, device: Any) -> tuple[Any, Any]:
        import torch

        key = str(device)
        if key not in self._device_cache:
            self._device_cache[key] = (torch.from_numpy(self.hashes).to(device),
                                       torch.from_numpy(self.embeddings).to(device))
        return self._device_cache[key]


def csv_captions(args: Any) -> list[str]:
    """The caption column of open_clip_train's --train-data CSV, read as its CsvDataset reads it."""
    if args.dataset_type not in ("csv", "auto") or not args.train_data or \
            Path(args.train_data.split("::")[0]).suffix.lower() not in (".csv", ".tsv"):
        raise GapkitError("--gap-loss imsep reads the captions from a CSV/TSV --train-data (--dataset-type csv); "
                          "for webdataset shards, train AlignCLIP with gapkit train")
    import pandas as pd

    try:
        df = pd.read_csv(args.train_data, sep=args.csv_separator)
        return [str(c) for c in df[args.csv_caption_key].tolist()]
    except KeyError:
        raise GapkitError(f"--train-data {args.train_data} has no caption column {args.csv_caption_key!r}") from None
    except (OSError, ValueError) as exc:
        raise GapkitError(f"cannot read --train-data {args.train_data}: {exc}") from None


def load_cache_file(path: str, n: int) -> np.ndarray:
    """A .npy (n, K) float array of caption embeddings, row i for CSV row i (no pickles)."""
    try:
        emb = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise GapkitError(f"--gap-loss-cache {path}: cannot read a .npy array ({exc})") from None
    if emb.ndim != 2 or emb.shape[0] != n or not np.issubdtype(emb.dtype, np.floating):
        raise GapkitError(f"--gap-loss-cache {path}: expected a float ({n}, K) array, one row per --train-data "
                          f"row, got {emb.dtype} {tuple(emb.shape)}")
    return np.asarray(emb, dtype=np.float32)


def build_table(args: Any, cache: str | None, sbert_model: str | None = None) -> CaptionTable:
    """The caption table of open_clip_train's parsed `args` (module doc)."""
    import open_clip

    captions = csv_captions(args)
    tokenizer = open_clip.get_tokenizer(args.model, cache_dir=args.cache_dir,
                                        context_length=args.force_context_length)
    tokens = np.asarray(tokenizer(captions), dtype=np.int64)
    if cache:
        emb = load_cache_file(cache, len(captions))
    else:
        from ..losses.semantic import DEFAULT_MODEL, caption_embeddings

        emb = caption_embeddings(captions, model=sbert_model or DEFAULT_MODEL, progress=False).numpy()
    return CaptionTable(tokens, emb)


class TokenTap:
    """Keeps the token ids of the model's latest forward (a forward pre-hook: model(image, text))."""

    def __init__(self) -> None:
        self.tokens: Any = None

    def attach(self, model: Any) -> Any:
        def hook(module: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
            text = args[1] if len(args) > 1 else kwargs.get("text")
            if text is not None:
                self.tokens = text

        model.register_forward_pre_hook(hook, with_kwargs=True)
        return model


class SemanticFromTokens:
    """`extra(image_features)` -> {"semantic": (B, K)} for the batch the model has just seen."""

    def __init__(self, table: CaptionTable, tap: TokenTap) -> None:
        self.table, self.tap = table, tap

    def __call__(self, image_features: Any) -> dict[str, Any]:
        tokens = self.tap.tokens
        if tokens is None:
            raise GapkitError("imsep: the model's forward was not seen before the loss (no token ids)")
        if tokens.shape[0] != image_features.shape[0]:
            raise GapkitError(f"imsep: the loss got {image_features.shape[0]} rows but the last forward had "
                              f"{tokens.shape[0]} captions (--accum-freq > 1 is not supported with imsep)")
        return {"semantic": self.table.lookup(tokens)}
