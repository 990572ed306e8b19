"""CyCLIP: CLIP + cyclic-consistency regularisers (Goel et al. 2022, "CyCLIP: Cyclic Contrastive
Language-Image Pretraining").

With X, Y (B, D) L2-normalised:

    in-modal     C_in    = (1/B) sum_{j,k} (<x_j, x_k> - <y_j, y_k>)^2
    cross-modal  C_cross = (1/B) sum_{j,k} (<x_j, y_k> - <x_k, y_j>)^2
    L = CLIP + lambda_in * C_in + lambda_cross * C_cross            lambda_in = lambda_cross = 0.25

The sums are over all B^2 ordered pairs divided by B (the released code computes the same thing as
mean(.)^2 * B on unscaled cosines). The regularisers use cosines, not scaled logits.
"""
from __future__ import annotations

import torch

from ._base import GatheredLoss, as_scale, check_features, gram, symmetric_infonce


class CyClipLoss(GatheredLoss):
    """Returns {"contrastive_loss", "cyclic_inmodal_loss", "cyclic_crossmodal_loss"} (weighted)."""

    def __init__(self, lambda_inmodal: float = 0.25, lambda_crossmodal: float = 0.25,
                 gather: bool = True) -> None:
        super().__init__(gather)
        self.lambda_inmodal, self.lambda_crossmodal = float(lambda_inmodal), float(lambda_crossmodal)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "cyclip")
        x, y = self._global(image_features, text_features)
        n = x.shape[0]
        cross = x @ y.T
        inmodal = (gram(x) - gram(y)).square().sum() / n
        crossmodal = (cross - cross.T).square().sum() / n
        return {
            "contrastive_loss": symmetric_infonce(as_scale(logit_scale, x) * cross),
            "cyclic_inmodal_loss": self.lambda_inmodal * inmodal,
            "cyclic_crossmodal_loss": self.lambda_crossmodal * crossmodal,
        }
