"""Alignment and uniformity (Wang & Isola 2020) and CLIP + those terms: CUA / CUAXU (Fahim et al.
2024, "It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap").

With X, Y (B, D) L2-normalised:

    alignment       A(X, Y)  = mean_i ||x_i - y_i||^alpha                            alpha = 2
    uniformity      U(X)     = log mean_{i != j} exp(-t ||x_i - x_j||^2)              t = 2
    cross-uniform.  XU(X, Y) = log mean_{i != j} exp(-t ||x_i - y_j||^2)              t = 2

Losses (each a dict of weighted terms, summed by the trainer):
    uniformity: {"uniformity_loss": w_u (U(X) + U(Y)) / 2}       (Wang & Isola average the two)
    alignment:  {"alignment_loss":  w_a A(X, Y)}
    cua:        CLIP + uniformity + alignment
    cuaxu:      CLIP + uniformity + alignment + {"cross_uniformity_loss": w_xu XU(X, Y)}
Fahim et al. "simply add these terms to the CLIP loss": we read unit weights (their code was not
available to check the exact weighting), so every weight is a parameter (defaults 1).
The metric versions (gapkit.metrics) use the same definitions, numerically in float64.
"""
from __future__ import annotations

import math

import torch

from ._base import GatheredLoss, as_scale, check_features, gram, symmetric_infonce


def _log_mean_exp_offdiag(sq_dist: torch.Tensor, t: float) -> torch.Tensor:
    """log mean_{i != j} exp(-t d_ij) for a square (B, B) matrix of squared distances."""
    n = sq_dist.shape[0]
    mask = torch.eye(n, dtype=torch.bool, device=sq_dist.device)
    vals = (-t * sq_dist).masked_fill(mask, float("-inf"))
    return torch.logsumexp(vals.reshape(-1), dim=0) - math.log(n * (n - 1))


def _sq_dists(cos: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 = 2 - 2 <a_i, b_j> for unit rows (clamped at 0 against rounding)."""
    return (2 - 2 * cos).clamp_min(0)


def uniformity(u: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """U(u) = log mean_{i != j} exp(-t ||u_i - u_j||^2) for L2-normalised rows (B >= 2)."""
    return _log_mean_exp_offdiag(_sq_dists(gram(u)), t)


def cross_uniformity(x: torch.Tensor, y: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """XU(x, y) = log mean_{i != j} exp(-t ||x_i - y_j||^2): non-pairs across modalities."""
    return _log_mean_exp_offdiag(_sq_dists(x @ y.T), t)


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """A(x, y) = mean_i ||x_i - y_i||^alpha."""
    return (x - y).norm(dim=1).pow(alpha).mean()


class UniformityLoss(GatheredLoss):
    """{"uniformity_loss": weight * (U(X) + U(Y)) / 2}; parameters t (2.0), weight (1.0), gather."""

    def __init__(self, t: float = 2.0, weight: float = 1.0, gather: bool = True) -> None:
        super().__init__(gather)
        self.t, self.weight = float(t), float(weight)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float | None = None, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "uniformity")
        x, y = self._global(image_features, text_features)
        return {"uniformity_loss": self.weight * (uniformity(x, self.t) + uniformity(y, self.t)) / 2}


class AlignmentLoss(GatheredLoss):
    """{"alignment_loss": weight * mean ||x_i - y_i||^alpha}; parameters alpha (2.0), weight (1.0)."""

    def __init__(self, alpha: float = 2.0, weight: float = 1.0, gather: bool = True) -> None:
        super().__init__(gather)
        self.alpha, self.weight = float(alpha), float(weight)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float | None = None, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "alignment")
        # a mean over local pairs needs no gather, but gathering keeps the value of the global batch
        x, y = self._global(image_features, text_features)
        return {"alignment_loss": self.weight * alignment(x, y, self.alpha)}


class CuaLoss(GatheredLoss):
    """CLIP + uniformity + alignment (Fahim et al.'s CUA); cross_uniformity_weight > 0 adds the
    cross-modal uniformity term (CUAXU). Parameters: uniformity_weight, alignment_weight,
    cross_uniformity_weight (1, 1, 0), t (2.0), alpha (2.0), gather (True)."""

    def __init__(self, uniformity_weight: float = 1.0, alignment_weight: float = 1.0,
                 cross_uniformity_weight: float = 0.0, t: float = 2.0, alpha: float = 2.0,
                 gather: bool = True) -> None:
        super().__init__(gather)
        self.uniformity_weight, self.alignment_weight = float(uniformity_weight), float(alignment_weight)
        self.cross_uniformity_weight = float(cross_uniformity_weight)
        self.t, self.alpha = float(t), float(alpha)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, type(self).__name__)
        x, y = self._global(image_features, text_features)
        out = {
            "contrastive_loss": symmetric_infonce(as_scale(logit_scale, x) * x @ y.T),
            "uniformity_loss": self.uniformity_weight * (uniformity(x, self.t) + uniformity(y, self.t)) / 2,
            "alignment_loss": self.alignment_weight * alignment(x, y, self.alpha),
        }
        if self.cross_uniformity_weight:
            out["cross_uniformity_loss"] = self.cross_uniformity_weight * cross_uniformity(x, y, self.t)
        return out


class CuaxuLoss(CuaLoss):
    """CUA + cross-modal uniformity (Fahim et al.'s CUAXU), all weights 1 by default."""

    def __init__(self, uniformity_weight: float = 1.0, alignment_weight: float = 1.0,
                 cross_uniformity_weight: float = 1.0, t: float = 2.0, alpha: float = 2.0,
                 gather: bool = True) -> None:
        super().__init__(uniformity_weight, alignment_weight, cross_uniformity_weight, t, alpha, gather)
