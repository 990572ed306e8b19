"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training").

    z_ij = s <x_i, y_j> + b,   label_ij = +1 if i == j else -1
    L = -(1/B) sum_i sum_j log sigmoid(label_ij * z_ij)

Normalised by the batch size B (not B^2), as in the paper's pseudo-code. The paper initialises the
scale at s = 10 (t' = log 10) and the bias at b = -10, so that the many negatives start with a
small loss.

The bias b: by default a learnable parameter of this loss module (`logit_bias`, init -10), so the
trainer must hand `loss.parameters()` to the optimiser (no weight decay). A model that owns its own
bias passes it per call instead: `loss(x, y, s, logit_bias=model.logit_bias)`, which overrides the
module's parameter. The scale s comes from the caller as for every loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._base import GatheredLoss, as_scale, check_features


class SigLipLoss(GatheredLoss):
    """Returns {"contrastive_loss": scalar}. Parameters: init_bias (-10), learn_bias (True: the
    bias is an nn.Parameter of the loss; False: a fixed buffer), gather (default True)."""

    def __init__(self, init_bias: float = -10.0, learn_bias: bool = True, gather: bool = True) -> None:
        super().__init__(gather)
        bias = torch.tensor(float(init_bias))
        if learn_bias:
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer("logit_bias", bias)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float | None = None,
                **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "siglip")
        x, y = self._global(image_features, text_features)
        scale = as_scale(logit_scale, x)
        bias = as_scale(self.logit_bias if logit_bias is None else logit_bias, x)
        logits = scale * x @ y.T + bias
        # -log sigmoid(-z) = softplus(z) for every pair; a positive needs -log sigmoid(z) =
        # softplus(z) - z instead, so subtract the diagonal logits (no B x B label matrix).
        positives = scale * (x * y).sum(dim=1) + bias
        loss = (F.softplus(logits).sum() - positives.sum()) / logits.shape[0]
        return {"contrastive_loss": loss}
