"""Tokenizers: CLIP's BPE (open_clip's bundled vocabulary) and a stateless word tokenizer.

Both return int64 ids of shape (M, context_length): [SOT, tokens..., EOT, 0 padding], truncated so
that EOT is always present, and EOT is the LARGEST id of the vocabulary, so text towers pool at
tokens.argmax(-1) exactly as CLIP does.
"""
from __future__ import annotations

import re
import zlib
from typing import Any, Sequence

import torch

from ..errors import GapkitError

CLIP_VOCAB_SIZE = 49408  # 256 bytes x 2 + 48,894 merges + <start_of_text> + <end_of_text>


def _pack(ids: list[list[int]], sot: int, eot: int, context_length: int) -> torch.Tensor:
    """[SOT] + ids + [EOT], truncated to context_length keeping EOT last, zero-padded."""
    out = torch.zeros(len(ids), context_length, dtype=torch.long)
    for i, seq in enumerate(ids):
        row = [sot] + seq[: context_length - 2] + [eot]
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class ClipTokenizer:
    """CLIP's byte-level BPE with the vocabulary that ships inside open_clip (49,408 ids)."""

    def __init__(self, context_length: int = 77) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self._bpe = SimpleTokenizer(context_length=context_length)
        self.context_length = context_length
        self.vocab_size = self._bpe.vocab_size
        self.sot_id, self.eot_id = self._bpe.sot_token_id, self._bpe.eot_token_id
        if self.vocab_size != CLIP_VOCAB_SIZE or self.eot_id != self.vocab_size - 1:
            raise GapkitError(f"open_clip's BPE vocabulary has {self.vocab_size} ids (expected {CLIP_VOCAB_SIZE})")

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return _pack([self._bpe.encode(t) for t in texts], self.sot_id, self.eot_id, self.context_length)


class WordTokenizer:
    """Lower-cased words hashed into a fixed vocabulary; needs no fitting and no saved state.

    ids: 0 = padding, 1 .. V-3 = words (crc32(word) mod (V-3) + 1), V-2 = SOT, V-1 = EOT.
    Collisions are possible but rare for the small caption vocabularies of tiny runs; crc32 (not
    Python's salted hash) keeps ids identical across processes and machines.
    """

    _WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")

    def __init__(self, vocab_size: int = 1024, context_length: int = 16) -> None:
        if vocab_size < 8:
            raise GapkitError(f"word tokenizer: vocab_size must be >= 8, got {vocab_size}")
        self.vocab_size, self.context_length = vocab_size, context_length
        self.sot_id, self.eot_id = vocab_size - 2, vocab_size - 1

    def word_id(self, word: str) -> int:
        return zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 3) + 1

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        ids = [[self.word_id(w) for w in self._WORD.findall(t.lower())] for t in texts]
        return _pack(ids, self.sot_id, self.eot_id, self.context_length)


def get_tokenizer(text_cfg: dict[str, Any]) -> ClipTokenizer | WordTokenizer:
    """The tokenizer a text config names ("tokenizer": "clip" | "word"; default clip)."""
    kind = text_cfg.get("tokenizer", "clip")
    ctx = int(text_cfg.get("context_length", 77))
    if kind == "clip":
        vocab = int(text_cfg.get("vocab_size", CLIP_VOCAB_SIZE))
        if vocab != CLIP_VOCAB_SIZE:
            raise GapkitError(f"text_cfg: the clip tokenizer needs vocab_size {CLIP_VOCAB_SIZE}, got {vocab}")
        return ClipTokenizer(ctx)
    if kind == "word":
        return WordTokenizer(int(text_cfg.get("vocab_size", 1024)), ctx)
    raise GapkitError(f"text_cfg: unknown tokenizer '{kind}'; known: clip, word")
