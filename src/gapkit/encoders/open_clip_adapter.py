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
from typing import Any

import torch

from ..errors import GapkitError, reading
from .gapkit_models import ModuleEncoder


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


class OpenCLIPEncoder(ModuleEncoder):
    def __init__(self, arch: str, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                 device: str = "cpu") -> None:
        import open_clip

        name = _register_config(arch)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise GapkitError(f"checkpoint not found: {checkpoint}")
        torch.manual_seed(seed)  # random init is reproducible per seed
        # a state-dict mismatch, a truncated file or a refused pickle: one line naming the checkpoint
        with reading(checkpoint, f"open_clip {name} checkpoint"):
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(checkpoint) if checkpoint else None, device=device,
                pretrained_text=False, weights_only=True)
        tokenizer = open_clip.get_tokenizer(name)
        super().__init__(model, tokenizer, preprocess, f"open_clip:{name}", embed_dim=0, device=device,
                         preprocessing={"image": repr(preprocess), "tokenizer": type(tokenizer).__name__,
                                        "context_length": getattr(tokenizer, "context_length", None)})
        self.tokenizer = tokenizer
        self.embed_dim = int(self._probe_dim())
        # Where the weights came from: recorded in manifests, not hashed (the weights are).
        self.origin = {"checkpoint": str(checkpoint) if checkpoint else None, "seed": None if checkpoint else seed}

    def _probe_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            return proj.shape[1]
        return self.encode_text(["a"]).shape[1]


def create_open_clip(arch: str | None, checkpoint: str | os.PathLike | None = None, **kw: Any) -> OpenCLIPEncoder:
    if not arch:
        raise GapkitError("open_clip needs an architecture, e.g. open_clip:ViT-B-32")
    return OpenCLIPEncoder(arch, checkpoint=checkpoint, **kw)
