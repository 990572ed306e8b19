"""Pieces every loss shares: the global-batch gather, the logit scale, InfoNCE helpers.

Distributed convention: each loss gathers by itself (`gather=True`, the default). Under
torch.distributed the (B_local, D) features, and IMSep's semantic embeddings, are all-gathered into
the global batch (with gradients for features, see gapkit.distributed), so every rank computes the
loss of the whole global batch; a trainer must therefore NOT gather before calling a loss. In a
single process gathering is the identity. `gather=False` computes the loss of the local batch only.

Precision: losses run outside autocast and upcast float16/bfloat16 features to float32, so a
mixed-precision model never computes a B x B log-sum-exp in half precision (the released AlignCLIP
code crashes under fp16/bf16); float64 inputs stay float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import all_gather_no_grad, all_gather_with_grad
from ..errors import GapkitError


class GatheredLoss(nn.Module):
    """Base class: stores `gather` and offers `_global` to gather tensors with/without grad."""

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = bool(gather)

    def __call__(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        first = args[0] if args else kwargs.get("image_features")
        device_type = first.device.type if isinstance(first, torch.Tensor) else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return super().__call__(*args, **kwargs)

    def _global(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Upcast half precision to float32, then all-gather with gradient (identity when not
        distributed)."""
        tensors = tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)
        if not self.gather:
            return tensors
        return tuple(all_gather_with_grad(t) for t in tensors)

    def _global_const(self, t: torch.Tensor) -> torch.Tensor:
        """All-gather a tensor that needs no gradient (identity when not distributed)."""
        return all_gather_no_grad(t) if self.gather else t


def check_features(image_features: torch.Tensor, text_features: torch.Tensor, name: str) -> None:
    """Both (B, D) with the same shape; one clear line otherwise."""
    if image_features.ndim != 2 or text_features.ndim != 2:
        raise GapkitError(
            f"{name}: expected 2-D (batch, dim) features, got image {tuple(image_features.shape)} "
            f"and text {tuple(text_features.shape)}"
        )
    if image_features.shape != text_features.shape:
        raise GapkitError(
            f"{name}: image features {tuple(image_features.shape)} and text features "
            f"{tuple(text_features.shape)} must have the same (batch, dim) shape"
        )


def as_scale(logit_scale: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """The exponentiated logit scale s = 1/tau as a 0-d tensor on `like`'s device and dtype (a
    learnable tensor keeps its graph)."""
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise GapkitError(f"logit_scale must be a scalar, got shape {tuple(logit_scale.shape)}")
        return logit_scale.reshape(()).to(like.dtype)
    return torch.tensor(float(logit_scale), dtype=like.dtype, device=like.device)


def symmetric_infonce(logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CLIP's InfoNCE on a (B, B) logit matrix with the positives on the diagonal.

    mean: (CE(rows) + CE(cols)) / 2     (CLIP, open_clip)
    sum:   CE(rows) + CE(cols)          (the released AlignCLIP code)
    """
    if reduction not in ("mean", "sum"):
        raise GapkitError(f"clip_reduction must be 'mean' or 'sum', got {reduction!r}")
    labels = torch.arange(logits.shape[0], device=logits.device)
    total = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    return total / 2 if reduction == "mean" else total


def diagonal_ce(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log softmax(logits)_ii: cross-entropy with target i for row i."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels)


def paired_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a_i, b_i> for every row, shape (B,)."""
    return (a * b).sum(dim=1)


class _Gram(torch.autograd.Function):
    """G = X X^T with the symmetric backward dX = (dG + dG^T) X: one matmul instead of autograd's
    two (X @ X.T treats the two operands as independent)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return (grad + grad.T) @ x


def gram(x: torch.Tensor) -> torch.Tensor:
    """Intra-modal cosines X X^T (B, B) for L2-normalised rows, with a one-matmul backward."""
    return _Gram.apply(x)
