"""Toy geometry engines that explain the modality gap.

- `SphereConfig`, `simulate`, `simulate_many`, `run_many`: free points on S^(d-1) optimised by SGD on a contrastive
  loss (Shi et al.), with a numba-compiled inner loop (gapkit.sim.kernels).
- `simulate_torch`: the same dynamics for any loss of gapkit.losses, through autograd (slow).

Importing this package is light; numba compiles (or loads its cache) on the first simulation.
"""
from .config import INITS, LOSSES, SphereConfig
from .engine import (SimResult, first_epoch_below, run_many, settled_epoch, simulate, simulate_many,
                     uniform_uniformity)
from .torch_engine import simulate_torch

__all__ = ["INITS", "LOSSES", "SimResult", "SphereConfig", "first_epoch_below", "run_many", "settled_epoch",
           "simulate", "simulate_many", "simulate_torch", "uniform_uniformity"]
