"""LiT-style heads: linear projections trained on cached features of frozen pretrained towers.

    x_e = normalise(x W_i),  y_e = normalise(y W_t)      x (N, D_img), y (M, D_txt) -> (., E)

Only W_i (D_img, E), W_t (D_txt, E) and the logit scale are trained, so a real pretrained
two-tower model (EfficientNet-Lite0 + MiniLM, see gapkit.encoders.tower_features) is tuned
contrastively in minutes on a CPU. Saved as safetensors + JSON (never pickle).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_path, write_json_atomic
from ..errors import GapkitError
from .clip import LOGIT_SCALE_MAX


class LiTHeads(nn.Module):
    """Two bias-free linear projections and a learnable logit scale (init 1/0.07, clamp ln 100)."""

    def __init__(self, image_dim: int, text_dim: int, embed_dim: int = 256, init_logit_scale: float = 1 / 0.07) -> None:
        super().__init__()
        self.config = {"image_dim": image_dim, "text_dim": text_dim, "embed_dim": embed_dim}
        self.image_proj = nn.Linear(image_dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_dim, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_features": F.normalize(self.image_proj(image_feats), dim=-1),
                "text_features": F.normalize(self.text_proj(text_feats), dim=-1),
                "logit_scale": self.scale()}

    @torch.no_grad()
    def _project(self, layer: nn.Linear, x: Any, name: str) -> np.ndarray:
        from ..validation import as_matrix

        a = torch.from_numpy(np.ascontiguousarray(as_matrix(x, name, dtype=np.float32)))
        if a.shape[1] != layer.in_features:
            raise GapkitError(f"{name}: expected dim {layer.in_features}, got {a.shape[1]}")
        return F.normalize(layer(a.to(layer.weight.device)), dim=-1).cpu().numpy()

    def project_image(self, x: Any) -> np.ndarray:
        """Image tower features (N, D_img) -> L2-normalised embeddings (N, E), float32 NumPy."""
        return self._project(self.image_proj, x, "image features")

    def project_text(self, y: Any) -> np.ndarray:
        """Text tower features (M, D_txt) -> L2-normalised embeddings (M, E), float32 NumPy."""
        return self._project(self.text_proj, y, "text features")

    def save(self, directory: str | Path) -> Path:
        """Write heads.safetensors + heads.json into `directory` (atomically)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "heads.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(tmp))
        write_json_atomic(d / "heads.json", self.config)
        return d


def load_heads(directory: str | Path) -> LiTHeads:
    """Load heads saved by LiTHeads.save."""
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / "heads.json").is_file() or not (d / "heads.safetensors").is_file():
        raise GapkitError(f"{d}: not a saved LiT heads directory (heads.json + heads.safetensors)")
    heads = LiTHeads(**json.loads((d / "heads.json").read_text()))
    heads.load_state_dict(load_file(str(d / "heads.safetensors")))
    return heads
