"""torch.distributed helpers that degrade to the identity in a single process.

Losses see the GLOBAL batch: every rank all-gathers the (B_local, D) features of all ranks, with
gradients, and computes the same loss value as one process holding the whole batch.

Gradient convention (read this before writing a DDP loop)
---------------------------------------------------------
`all_gather_with_grad` is the adjoint of concatenation over ranks when the objective is the SUM of
the per-rank losses: its backward all-reduces (sums) the gradient of the gathered tensor and keeps
the calling rank's rows. Every rank computes the same global loss L, so the gradient that reaches a
rank's local features is `world_size * dL/dx_local`. DistributedDataParallel then AVERAGES parameter
gradients over ranks (divides by world_size), so parameters receive exactly dL/dtheta, the gradient
of one process holding the whole batch. Nothing else is needed in the training loop: do not rescale
the loss. (Without DDP averaging, e.g. a hand-written all_reduce(SUM), divide by world_size.)
This is the convention of `torch.distributed.nn.all_gather` and of open_clip's gather_with_grad.

Ranks may hold different local batch sizes (a last, short batch): sizes are exchanged first and
tensors padded to the largest, then trimmed.
"""
from __future__ import annotations

import torch

from .errors import GapkitError


def is_distributed() -> bool:
    """True when torch.distributed is available and a process group has been initialised."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group; 1 without a process group."""
    import torch.distributed as dist

    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group; 0 without a process group."""
    import torch.distributed as dist

    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    import torch.distributed as dist

    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _gather_rows(t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate every rank's rows (no autograd); returns (gathered, per-rank row counts)."""
    import torch.distributed as dist

    t = t.contiguous()
    sizes = _gather_sizes(t.shape[0], t.device)
    largest = max(sizes)
    if t.shape[0] < largest:  # all_gather needs equal shapes: pad, then trim below
        pad = t.new_zeros((largest - t.shape[0], *t.shape[1:]))
        t = torch.cat([t, pad])
    parts = [torch.empty_like(t) for _ in sizes]
    dist.all_gather(parts, t)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]), sizes


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate the rows of all ranks. Backward: sum the incoming gradients over ranks
    and return this rank's rows (see the module docstring for the resulting scaling)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        gathered, sizes = _gather_rows(t)
        r = rank()
        ctx.start, ctx.stop = sum(sizes[:r]), sum(sizes[: r + 1])
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """(B_local, ...) -> (B_global, ...) in rank order; each rank's slice keeps its gradient.

    The identity (same tensor object) without a process group or with one process.
    """
    if world_size() == 1:
        return t
    if t.ndim == 0:
        raise GapkitError("all_gather_with_grad: expected a tensor with a batch dimension, got a scalar")
    return _AllGatherWithGrad.apply(t)


def all_gather_no_grad(t: torch.Tensor) -> torch.Tensor:
    """(B_local, ...) -> (B_global, ...) for tensors that need no gradient (e.g. the SBERT caption
    embeddings IMSep uses); the identity in a single process."""
    if world_size() == 1:
        return t
    with torch.no_grad():
        return _gather_rows(t.detach())[0]
