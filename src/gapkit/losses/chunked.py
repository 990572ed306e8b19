"""Symmetric InfoNCE without materialising the B x B logit matrix.

    L = 1/(2B) sum_i [ lse_j(s <x_i, y_j>) - s <x_i, y_i> ]
      + 1/(2B) sum_j [ lse_i(s <x_i, y_j>) - s <x_j, y_j> ]

Forward walks over blocks of `chunk_size` rows: each (c, B) logit block adds its row log-sum-exps
(complete, since a block holds whole rows) and merges its column log-sum-exps into a running (B,)
vector with logaddexp. Backward recomputes each block from the saved features and the two (B,)
log-sum-exp vectors; with P_row = softmax over a row and P_col = softmax over a column,

    dL/dlogit_ij = (P_row_ij + P_col_ij) / (2B) - [i == j] / B
    dL/dx_i = s sum_j G_ij y_j,  dL/dy_j = s sum_i G_ij x_i,  dL/ds = sum_ij G_ij <x_i, y_j>

so peak memory is O(c B + B D) instead of O(B^2). The value equals `symmetric_infonce` up to
float rounding (tested, also for chunk sizes that do not divide B).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..errors import GapkitError


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


class _ChunkedInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor,  # type: ignore[override]
                chunk_size: int) -> torch.Tensor:
        n = x.shape[0]
        row_lse = x.new_empty(n)
        col_lse = x.new_full((n,), float("-inf"))
        for a, b in _blocks(n, chunk_size):
            block = (x[a:b] @ y.T).mul_(scale)                  # (c, B) logits, freed every iteration
            row_lse[a:b] = torch.logsumexp(block, dim=1)
            col_lse = torch.logaddexp(col_lse, torch.logsumexp(block, dim=0))
        positive = scale * (x * y).sum(dim=1)                   # (B,) diagonal logits
        loss = (row_lse.sum() + col_lse.sum() - 2 * positive.sum()) / (2 * n)
        ctx.save_for_backward(x, y, scale, row_lse, col_lse)
        ctx.chunk_size = chunk_size
        return loss

    @staticmethod
    @once_differentiable  # the backward recomputes blocks in place: no double backward
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, y, scale, row_lse, col_lse = ctx.saved_tensors
        n = x.shape[0]
        s = float(scale)
        gx = torch.empty_like(x)
        gy = torch.zeros_like(y)
        gscale = x.new_zeros(())
        for a, b in _blocks(n, ctx.chunk_size):
            # two (c, B) buffers at most, updated in place: P_row, then P_col, summed into G
            logits = (x[a:b] @ y.T).mul_(scale)
            g = (logits - row_lse[a:b, None]).exp_()
            g.add_(logits.sub_(col_lse[None, :]).exp_()).div_(2 * n)
            del logits
            idx = torch.arange(a, b, device=x.device)
            g[idx - a, idx] -= 1.0 / n                          # the positives' -1/B
            g_y = g @ y                                         # (c, D) = sum_j G_ij y_j
            gx[a:b] = s * g_y
            gy.addmm_(g.T, x[a:b], alpha=s)
            gscale += (g_y * x[a:b]).sum()                      # sum_ij G_ij <x_i, y_j>
        grad_scale = gscale * grad_out if ctx.needs_input_grad[2] else None
        return gx * grad_out, gy * grad_out, grad_scale, None


def chunked_symmetric_infonce(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor,
                              chunk_size: int) -> torch.Tensor:
    """Mean symmetric InfoNCE of (B, D) features x, y at 0-d scale s, in row blocks of chunk_size."""
    if int(chunk_size) < 1:
        raise GapkitError(f"chunk_size must be a positive integer, got {chunk_size}")
    return _ChunkedInfoNCE.apply(x, y, scale, int(chunk_size))
