"""SimCLR's NT-Xent within one modality, and SLIP = CLIP + SimCLR on images.

NT-Xent (Chen et al. 2020) on two views a, b (B, D), L2-normalised, u = [a; b] (2B, D), p(k) the
other view of sample k, s = 1/temperature:

    l_k = -log [ exp(s <u_k, u_p(k)>) / sum_{m != k} exp(s <u_k, u_m>) ]      L = mean_k l_k (2B terms)

SLIP (Mu et al. 2022): L = CLIP(image, text) + ssl_scale * NT-Xent(view1, view2), with the views
passed through the image tower (and, in SLIP, its own MLP head: the model's business, not the
loss's); SLIP uses a fixed temperature 0.1 for the SSL term and ssl_scale 1.

Views, passed as the extra `views=`: a (B, D) tensor is the second view of the chosen modality's
features (first view = image_features or text_features); a pair (v1, v2) gives both views. Without
views, `jitter=sigma` makes two views v = normalise(u + sigma * N(0, I)) of the features (the
"augmentation" the sphere simulations use, where Shi et al. leave it unspecified); otherwise it is
an error.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import GapkitError
from ._base import GatheredLoss, as_scale, check_features, gram
from .clip import ClipLoss

Views = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def nt_xent(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean NT-Xent over the 2B samples of views a, b (B, D)."""
    n = a.shape[0]
    u = torch.cat([a, b])
    logits = scale * gram(u)
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(logits, target)


class SimClrLoss(GatheredLoss):
    """NT-Xent on two views of one modality's features; returns {"simclr_loss": scalar}.

    Parameters: modality ("image" | "text"), temperature (0.1, SLIP's; None: use the logit_scale
    passed in), jitter (None, or the std of the Gaussian views made when no views are passed),
    gather (True).
    """

    def __init__(self, modality: str = "image", temperature: float | None = 0.1,
                 jitter: float | None = None, gather: bool = True) -> None:
        super().__init__(gather)
        if modality not in ("image", "text"):
            raise GapkitError(f"simclr: modality must be 'image' or 'text', got {modality!r}")
        if temperature is not None and temperature <= 0:
            raise GapkitError(f"simclr: temperature must be positive, got {temperature}")
        self.modality, self.temperature, self.jitter = modality, temperature, jitter

    def _views(self, feats: torch.Tensor, views: Views) -> tuple[torch.Tensor, torch.Tensor]:
        if views is None:
            if not self.jitter:
                raise GapkitError("simclr: pass views=(B, D) or (view1, view2), "
                                  "or build the loss with jitter=sigma")
            noise = torch.randn((2, *feats.shape), dtype=feats.dtype, device=feats.device)
            return (F.normalize(feats + self.jitter * noise[0], dim=1),
                    F.normalize(feats + self.jitter * noise[1], dim=1))
        a, b = (feats, views) if isinstance(views, torch.Tensor) else views
        if a.shape != b.shape or a.ndim != 2:
            raise GapkitError(f"simclr: the two views must have the same (B, D) shape, got {tuple(a.shape)} "
                              f"and {tuple(b.shape)}")
        return a, b

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float | None = None, views: Views = None,
                **_: object) -> dict[str, torch.Tensor]:
        feats = image_features if self.modality == "image" else text_features
        a, b = self._global(*self._views(feats, views))
        if self.temperature is None and logit_scale is None:
            raise GapkitError("simclr: temperature=None needs a logit_scale")
        scale = as_scale(1.0 / self.temperature if self.temperature is not None else logit_scale, a)
        return {"simclr_loss": nt_xent(a, b, scale)}


class SlipLoss(GatheredLoss):
    """CLIP + ssl_scale * SimCLR; returns {"contrastive_loss", "simclr_loss"} (the latter weighted).

    Parameters: ssl_scale (1.0), temperature (0.1, SSL term only), jitter (None), modality
    ("image", SLIP's), gather (True).
    """

    def __init__(self, ssl_scale: float = 1.0, temperature: float | None = 0.1, jitter: float | None = None,
                 modality: str = "image", gather: bool = True) -> None:
        super().__init__(gather)
        self.ssl_scale = float(ssl_scale)
        self.clip = ClipLoss(gather=gather)
        self.simclr = SimClrLoss(modality=modality, temperature=temperature, jitter=jitter, gather=gather)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, views: Views = None,
                **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "slip")
        out = self.clip(image_features, text_features, logit_scale)
        ssl = self.simclr(image_features, text_features, logit_scale, views=views)["simclr_loss"]
        out["simclr_loss"] = self.ssl_scale * ssl
        return out
