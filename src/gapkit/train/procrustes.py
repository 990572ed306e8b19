"""Procrustes-amended initialisation (Liang et al. 2022, Sec. 4.4).

With X, Y (n, E) the L2-normalised image and text features of n training pairs at
initialisation, the orthogonal W minimising ||X - Y W^T||_F is obtained from

    X^T Y = U S V^T        ->        W = U V^T

and the amended model uses the text features y W^T (i.e. W y) for the whole run. W is fitted
once, at initialisation, on the training features, and then held fixed.
"""
from __future__ import annotations

import torch


def procrustes_rotation(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """W (E, E) orthogonal with Y W^T as close as possible to X; inputs (n, E), rows paired."""
    x = image_features.double()
    y = text_features.double()
    u, _, vh = torch.linalg.svd(x.T @ y)
    return (u @ vh).to(image_features.dtype)
