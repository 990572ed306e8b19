"""The Encoder protocol every model adapter implements.

    preprocess(PIL.Image) -> Tensor (3, H, W)      the model's own image transform
    encode_image(Tensor (B, 3, H, W)) -> (B, D)     float32 CPU, NOT normalised
    encode_text(list[str] of length B) -> (B, D)    float32 CPU, NOT normalised
    embed_dim, name
The normalised views x / ||x|| are `encode_image_normalized` / `encode_text_normalized`.
Adapters run under torch.inference_mode and move outputs to CPU float32 themselves, so callers
never see half precision or device tensors.
"""
from __future__ import annotations

import contextlib
import hashlib
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import GapkitError


def l2n(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm (eps-guarded): (B, D) -> (B, D)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def state_hash(*modules: torch.nn.Module | None, extra: Any = None) -> str:
    """blake2b over every tensor of the modules' state dicts (names, shapes, dtypes, bytes).

    The weights hash keys the embedding cache: equal weights -> equal key, any change -> new key.
    """
    h = hashlib.blake2b(digest_size=12)
    for m in modules:
        if m is None:
            continue
        for k, v in m.state_dict().items():
            t = v.detach().cpu().contiguous()
            h.update(f"{k}|{tuple(t.shape)}|{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(repr(extra).encode())
    return h.hexdigest()


class Encoder(ABC):
    """Base class of the adapters; subclasses set name, embed_dim, preprocess and the two encoders."""

    name: str = "encoder"
    embed_dim: int = 0
    preprocess: Callable[[Any], torch.Tensor]
    #: a short description of preprocessing / tokenisation, written into manifests
    preprocessing: dict[str, Any] = {}

    @abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, D) float32 CPU features (unnormalised)."""

    @abstractmethod
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """B strings -> (B, D) float32 CPU features (unnormalised)."""

    def encode_image_normalized(self, images: torch.Tensor) -> torch.Tensor:
        return l2n(self.encode_image(images))

    def encode_text_normalized(self, texts: Sequence[str]) -> torch.Tensor:
        return l2n(self.encode_text(texts))

    def weights_hash(self) -> str:
        """Hash of everything that determines the outputs (weights + preprocessing).

        Hashing ViT-B/32 reads 600 MB, so the value is memoised on a cheap stamp of every tensor's
        storage pointer and version counter: any in-place update (an optimizer step, a
        load_state_dict) bumps a version and forces a fresh hash.
        """
        stamp = tuple((t.data_ptr(), t._version) for m in self.modules() for t in m.state_dict().values())
        memo = getattr(self, "_hash_memo", None)
        if memo is None or memo[0] != stamp:
            memo = (stamp, state_hash(*self.modules(), extra=(self.name, self.preprocessing)))
            self._hash_memo = memo
        return memo[1]

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules holding the weights (for hashing, eval mode and devices)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, embed_dim={self.embed_dim})"


@contextlib.contextmanager
def quiet_weight_loading() -> Iterator[None]:
    """Hide transformers' per-tensor "Loading weights" progress bar while a local model loads: it
    is noise for these small models, and it ignored `--quiet` (gapkit's own bars remain)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # sentence-transformers / transformers absent: nothing to silence
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def as_float_cpu(x: Any) -> torch.Tensor:
    """Model output (a tensor, or an output object with pooler_output) -> float32 CPU tensor."""
    if not isinstance(x, torch.Tensor):
        x = getattr(x, "pooler_output", None)
        if x is None:
            raise GapkitError("the model returned no tensor (and no pooler_output)")
    return x.detach().to("cpu", torch.float32)


def text_only(name: str) -> GapkitError:
    return GapkitError(f"encoder {name} encodes text only; pair it with an image encoder")
