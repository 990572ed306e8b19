"""The generic (slow) sphere engine: any loss of gapkit.losses, gradients by torch autograd.

Same dynamics as the compiled engine (same init, traces, snapshots; SGD on the raw points with the
loss applied to F.normalize(points), rows re-projected to the sphere after each step), but the
batch order comes from NumPy's Generator([seed, 2]), so trajectories differ from the compiled
engine's for the same seed. Use it to put a new loss on the sphere before writing its kernel.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import SphereConfig
from .engine import SimResult, drive


def _total(terms: Any) -> Any:
    """Sum of the "*_loss" terms of a gapkit loss's output dict (a bare tensor is used as is)."""
    if isinstance(terms, dict):
        return sum(v for k, v in terms.items() if k.endswith("_loss"))
    return terms


def simulate_torch(config: SphereConfig, loss: str | None = None, progress: bool = False,
                   **loss_kwargs: Any) -> SimResult:
    """Run `config` with `create_loss(loss or config.loss, **loss_kwargs)` at the fixed logit scale
    1/tau. The loss is called as loss(normalize(x_batch), normalize(y_batch), logit_scale=s)."""
    import torch
    import torch.nn.functional as F

    from ..losses import create_loss

    fn = create_loss(loss or config.loss, **loss_kwargs)
    rng = np.random.default_rng([config.seed, 2])
    scale = torch.tensor(config.logit_scale, dtype=torch.float64)
    b, steps = config.batch, config.epoch_steps

    def advance(X: np.ndarray, Y: np.ndarray, n_epochs: int) -> float:
        # Tensors share memory with X, Y: the driver sees every update without copies.
        px, py = torch.from_numpy(X), torch.from_numpy(Y)
        last = math.nan
        for _ in range(n_epochs):
            perm = torch.from_numpy(rng.permutation(config.n))
            total = 0.0
            for st in range(steps):
                idx = perm[st * b:(st + 1) * b]
                xb = px[idx].clone().requires_grad_(True)
                yb = py[idx].clone().requires_grad_(True)
                value = _total(fn(F.normalize(xb, dim=1), F.normalize(yb, dim=1), logit_scale=scale))
                value.backward()
                with torch.no_grad():
                    nx, ny = xb - config.lr * xb.grad, yb - config.lr * yb.grad
                    px[idx] = F.normalize(nx, dim=1) if config.reproject else nx
                    py[idx] = F.normalize(ny, dim=1) if config.reproject else ny
                total += float(value.detach())
            last = total / steps
        return last

    return drive(config, advance, progress)
