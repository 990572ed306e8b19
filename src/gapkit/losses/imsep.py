"""AlignCLIP's Intra-Modality Separation (IMSep) loss (Eslami & de Melo, "Mitigate the Gap", 2024).

With X, Y (B, D) L2-normalised image / text features, s the logit scale and E (B, K) the SBERT
embeddings of the B captions (L2-normalised here):

    S = E E^T                      semantic cosine between captions i and j
    D = 1 - S                      semantic distance (in [0, 2]; D_ii = 0)
    V = X X^T                      image-image cosines
    logits_img = s * (V * D + diag(<x_i, y_i>))          (B, B), elementwise product
    IMSep_img  = mean_i CE(logits_img[i], target i)
               = mean_i -log [ exp(s <x_i,y_i>) / (exp(s <x_i,y_i>) + sum_{j != i} exp(s V_ij D_ij)) ]

The positive of image i is its own caption; every other image j is a negative whose cosine is
scaled by the semantic distance of the two captions: a pair with identical captions (D = 0) is not
pushed apart and contributes exactly exp(0) = 1 to the denominator. The diagonal is set to
s <x_i, y_i> directly (V_ii D_ii = 0 exactly in real arithmetic; in floats 1 - S_ii is ~1e-7, so we
mask it rather than rely on rounding). The optional text term uses T = Y Y^T in place of V.

    total = alpha * CLIP + beta * IMSep_img [+ beta * IMSep_txt]        alpha = 1, beta = 0.5

Returned terms (the trainer sums them): "contrastive_loss" = alpha * CLIP, "imsep_image_loss" =
beta * IMSep_img, and with text_term=True "imsep_text_loss" = beta * IMSep_txt.

Paper vs released code (github.com/sarahESL/AlignCLIP, align_clip/loss.py), and our choices:
- CLIP term: the code SUMS the two cross-entropies (CE_rows + CE_cols), i.e. twice CLIP's mean;
  `clip_reduction="mean"` (default) averages them like CLIP, `"sum"` reproduces the code.
- Text term: the paper's IMSep separates images only; the code's class defaults to text-only
  (separate_text=True, separate_image=False) and its training script enables both. Here:
  `image_term=True, text_term=False` by default (the paper), both switchable.
- With both terms the code adds beta * (CE_img + CE_txt) (no averaging); we do the same (two terms,
  each weighted beta).
- Semantic embeddings: the code re-encodes captions with SBERT every batch; gapkit computes them once
  per caption and caches them (gapkit.losses.semantic). Under DDP the code gathers features but not
  the semantic embeddings (shape mismatch, crash); here both are gathered.
- `semantic_supervision=False` sets D = 1 (plain intra+inter InfoNCE with the paired text as the
  positive). The code's corresponding branch instead keeps V's diagonal (self-similarity 1) as the
  "positive", a constant target; we do not reproduce that.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import GapkitError
from ._base import GatheredLoss, as_scale, check_features, diagonal_ce, gram, paired_cosine, symmetric_infonce


def separation_logits(same: torch.Tensor, paired: torch.Tensor, distance: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
    """s * (same * D + diag(<x_i, y_i>)), (B, B).

    same: (B, B) intra-modal cosines (V or T); paired: (B,) <x_i, y_i>; distance: (B, B) D with a
    ZERO diagonal (as `ImSepLoss.semantic_distance` returns it), so the diagonal is exactly s <x_i, y_i>.
    """
    return scale * (same * distance + torch.diag_embed(paired))


class ImSepLoss(GatheredLoss):
    """CLIP + intra-modality separation; call with `semantic=(B, K)` caption embeddings.

    Parameters: alpha (1.0), beta (0.5), image_term (True), text_term (False), clip_reduction
    ("mean" | "sum"), semantic_supervision (True; False: D = 1, no semantic input needed),
    gather (True).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, image_term: bool = True,
                 text_term: bool = False, clip_reduction: str = "mean",
                 semantic_supervision: bool = True, gather: bool = True) -> None:
        super().__init__(gather)
        if clip_reduction not in ("mean", "sum"):
            raise GapkitError(f"imsep: clip_reduction must be 'mean' or 'sum', got {clip_reduction!r}")
        if not (image_term or text_term):
            raise GapkitError("imsep: enable image_term, text_term or both")
        self.alpha, self.beta = float(alpha), float(beta)
        self.image_term, self.text_term = bool(image_term), bool(text_term)
        self.clip_reduction = clip_reduction
        self.semantic_supervision = bool(semantic_supervision)

    def semantic_distance(self, semantic: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
        """D = 1 - cos(E_i, E_j) for the (global) batch (all ones without semantic supervision),
        with its diagonal set to exactly 0 (it is 0 up to rounding; no gradient flows into D)."""
        if not self.semantic_supervision:
            return 1 - torch.eye(n, dtype=like.dtype, device=like.device)
        if semantic is None:
            raise GapkitError(
                "imsep: needs semantic=(B, K) caption embeddings (gapkit.losses.semantic."
                "caption_embeddings) or semantic_supervision=False"
            )
        if semantic.ndim != 2 or semantic.shape[0] != n:
            raise GapkitError(f"imsep: semantic must be ({n}, K) like the batch, got {tuple(semantic.shape)}")
        e = F.normalize(semantic.detach().to(device=like.device, dtype=like.dtype), dim=1)
        distance = 1 - e @ e.T
        distance.fill_diagonal_(0.0)
        return distance

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, semantic: torch.Tensor | None = None,
                **_: object) -> dict[str, torch.Tensor]:
        check_features(image_features, text_features, "imsep")
        if semantic is not None and semantic.shape[0] != image_features.shape[0]:
            raise GapkitError(
                f"imsep: semantic has {semantic.shape[0]} rows but the batch has {image_features.shape[0]}"
            )
        x, y = self._global(image_features, text_features)
        if semantic is not None and self.semantic_supervision:
            semantic = self._global_const(semantic)
        scale = as_scale(logit_scale, x)
        distance = self.semantic_distance(semantic, x.shape[0], x)
        paired = paired_cosine(x, y)
        out = {"contrastive_loss": self.alpha * symmetric_infonce(scale * x @ y.T, self.clip_reduction)}
        terms = (("imsep_image_loss", x, self.image_term), ("imsep_text_loss", y, self.text_term))
        for key, feats, enabled in terms:
            if enabled:  # V = X X^T for the image term, T = Y Y^T for the text term
                out[key] = self.beta * diagonal_ce(separation_logits(gram(feats), paired, distance, scale))
        return out
