"""CLIP's symmetric InfoNCE loss (Radford et al. 2021; open_clip's ClipLoss).

    logits = s * X Y^T                      (B, B), X, Y L2-normalised (B, D), s = logit_scale
    L = (CE(logits, arange B) + CE(logits^T, arange B)) / 2

`chunk_size=c` computes the same value and gradients in (c, B) blocks (see losses/chunked.py), for
batches whose B x B matrix does not fit in memory. The learnable logit_scale belongs to the model,
which clamps it (s <= 100); the loss takes whatever scale it is given.
"""
from __future__ import annotations

import torch

from ._base import GatheredLoss, as_scale, check_features, symmetric_infonce
from .chunked import chunked_symmetric_infonce


class ClipLoss(GatheredLoss):
    """Symmetric InfoNCE over a batch of B matched pairs; returns {"contrastive_loss": scalar}.

    Parameters: gather (all-gather the global batch under torch.distributed; default True),
    chunk_size (None: plain B x B; an int: row blocks of that size, O(chunk_size * B) memory).
    """

    def __init__(self, gather: bool = True, chunk_size: int | None = None) -> None:
        super().__init__(gather)
        self.chunk_size = chunk_size

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "clip")
        x, y = self._global(image_features, text_features)
        scale = as_scale(logit_scale, x)
        if self.chunk_size is not None:
            return {"contrastive_loss": chunked_symmetric_infonce(x, y, scale, self.chunk_size)}
        return {"contrastive_loss": symmetric_infonce(scale * x @ y.T)}


class ChunkedClipLoss(ClipLoss):
    """`ClipLoss` with row blocks of 1,024 by default (registry name "clip_chunked")."""

    def __init__(self, gather: bool = True, chunk_size: int = 1024) -> None:
        super().__init__(gather=gather, chunk_size=chunk_size)


class ShiEq7ClipLoss(GatheredLoss):
    """Shi et al.'s eq. 7 *as printed* (registry name "clip_shi_eq7"): CLIP with the positive left
    out of the image->text denominator,

        L = 1/(2B) sum_i [logsumexp_{j != i}(l_ij) - l_ii] + 1/(2B) sum_j [logsumexp_i(l_ij) - l_jj],
        l = s X Y^T.

    The first term is not a cross-entropy (it is unbounded below: pushing the negatives away
    lowers it without limit); we offer it because with it the sphere reproduces the paper's
    temperature direction (docs/reproductions-toy.md). Returns {"contrastive_loss": scalar}.
    """

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "clip_shi_eq7")
        x, y = self._global(image_features, text_features)
        logits = as_scale(logit_scale, x) * x @ y.T
        pos = logits.diagonal()
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        i2t = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1) - pos
        t2i = torch.logsumexp(logits, dim=0) - pos
        return {"contrastive_loss": (i2t.mean() + t2i.mean()) / 2}
