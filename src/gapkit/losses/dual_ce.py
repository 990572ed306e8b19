"""Intra+inter-modal InfoNCE ("dual_ce"), the variant Liang et al. (2022) discuss but did not publish.

CLIP's denominator is extended with in-modal negatives, so each embedding is also pushed away from
the other members of its own modality (which works against the cone effect). With X, Y (B, D)
L2-normalised and s the logit scale:

    l_img(i) = -log exp(s<x_i,y_i>) / ( sum_j exp(s<x_i,y_j>) + sum_{k != i} exp(s<x_i,x_k>) )
    l_txt(j) = -log exp(s<y_j,x_j>) / ( sum_i exp(s<y_j,x_i>) + sum_{k != j} exp(s<y_j,y_k>) )
    L = ( mean_i l_img(i) + mean_j l_txt(j) ) / 2

`intra_weight` w multiplies the in-modal terms inside the denominator (w = 1: the formula above;
w = 0: CLIP), implemented as an additive log w on those logits.
"""
from __future__ import annotations

import math

import torch

from ..errors import GapkitError
from ._base import GatheredLoss, as_scale, check_features, diagonal_ce, gram


def _row_loss(cross: torch.Tensor, same: torch.Tensor, log_w: float) -> torch.Tensor:
    """Mean CE with target i over [cross | same + log w (diagonal removed)], (B, 2B)."""
    n = cross.shape[0]
    same = same.masked_fill(torch.eye(n, dtype=torch.bool, device=same.device), float("-inf")) + log_w
    return diagonal_ce(torch.cat([cross, same], dim=1))


class DualCeLoss(GatheredLoss):
    """Returns {"contrastive_loss": L}; parameters intra_weight (1.0), gather (True)."""

    def __init__(self, intra_weight: float = 1.0, gather: bool = True) -> None:
        super().__init__(gather)
        if intra_weight < 0:
            raise GapkitError(f"dual_ce: intra_weight must be >= 0, got {intra_weight}")
        self.intra_weight = float(intra_weight)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "dual_ce")
        x, y = self._global(image_features, text_features)
        s = as_scale(logit_scale, x)
        cross = s * x @ y.T
        log_w = math.log(self.intra_weight) if self.intra_weight > 0 else float("-inf")
        loss = (_row_loss(cross, s * gram(x), log_w) + _row_loss(cross.T, s * gram(y), log_w)) / 2
        return {"contrastive_loss": loss}
