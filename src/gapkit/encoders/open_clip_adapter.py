"""open_clip adapter: any open_clip architecture, randomly initialised or from a local checkpoint.

`create_open_clip("ViT-B-32")` builds the architecture with pretrained=None (random init, seeded:
Liang's cone effect needs many reproducible inits); `checkpoint=PATH` loads local weights
(.safetensors or a torch file read with weights_only=True, never unpickling arbitrary objects).
`arch` may also be a path to a JSON model config ({"embed_dim", "vision_cfg", "text_cfg"}), which
is registered with open_clip under the file's stem. The tokenizer is open_clip's bundled BPE one
(or whatever the config names; HF-hub tokenizers are not available offline).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import GapkitError
from .base import Encoder, as_float_cpu


def _register_config(arch: str) -> str:
    import open_clip

    p = Path(arch)
    if p.suffix == ".json":
        if not p.is_file():
            raise GapkitError(f"open_clip model config not found: {p}")
        open_clip.add_model_config(p)
        return p.stem
    if arch not in open_clip.list_models():
        raise GapkitError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models(), or give a JSON config)")
    return arch


class OpenCLIPEncoder(Encoder):
    def __init__(self, arch: str, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                 device: str = "cpu") -> None:
        import open_clip

        name = _register_config(arch)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise GapkitError(f"checkpoint not found: {checkpoint}")
        torch.manual_seed(seed)  # random init is reproducible per seed
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(checkpoint) if checkpoint else None, device=device,
                pretrained_text=False, weights_only=True)
        except RuntimeError as exc:  # state-dict mismatch and friends
            raise GapkitError(f"open_clip {name}: cannot load {checkpoint}: {str(exc).splitlines()[0]}") from None
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self.preprocess = preprocess
        self.device = device
        self.name = f"open_clip:{name}"
        self.embed_dim = int(self._probe_dim())
        self.preprocessing = {"image": repr(preprocess), "tokenizer": type(self.tokenizer).__name__,
                              "context_length": getattr(self.tokenizer, "context_length", None)}
        # Where the weights came from: recorded in manifests, not hashed (the weights are).
        self.origin = {"checkpoint": str(checkpoint) if checkpoint else None, "seed": None if checkpoint else seed}

    def _probe_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return proj.shape[1]
        return self.encode_text(["a"]).shape[1]

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    @torch.inference_mode()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return as_float_cpu(self.model.encode_image(images.to(self.device)))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return as_float_cpu(self.model.encode_text(tokens))


def create_open_clip(arch: str | None, checkpoint: str | os.PathLike | None = None, **kw: Any) -> OpenCLIPEncoder:
    if not arch:
        raise GapkitError("open_clip needs an architecture, e.g. open_clip:ViT-B-32")
    return OpenCLIPEncoder(arch, checkpoint=checkpoint, **kw)
