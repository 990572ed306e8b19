"""CLIP's symmetric InfoNCE loss.

    logits = s * X Y^T                      (B, B), X, Y L2-normalised (B, D), s = logit_scale
    L = (CE(logits, arange B) + CE(logits^T, arange B)) / 2
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over a batch of B matched pairs; returns {"contrastive_loss": scalar}."""

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, **_: object) -> dict[str, torch.Tensor]:
        logits = logit_scale * image_features @ text_features.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        return {"contrastive_loss": loss}
