"""Parameters of one sphere simulation, validated at construction.

Defaults follow Shi et al. (App. C): 1,000 pairs on S^2, SGD with lr 0.01 and batch 10. What the
paper leaves open is a parameter with a stated default: temperature tau = 0.1, cap spread 0.3,
"epoch" = one pass over a fresh permutation = n // batch steps (100 steps for the defaults).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import GapkitError
from ..validation import check_allocation, check_seed

# Mirrors kernels.MAX_LOGIT_SCALE (kept here so validating a config does not import numba).
MAX_LOGIT_SCALE = 300.0

LOSSES: dict[str, str] = {
    "clip": "symmetric InfoNCE across modalities (CLIP)",
    "simclr": "unimodal NT-Xent: each pair's two points are two views; all other 2b-2 points are negatives",
    "slip": "CLIP + NT-Xent on two jittered views of each image (SLIP)",
    "siglip": "pairwise sigmoid loss with a fixed bias (SigLIP)",
    "align_uniform": "alignment + uniformity of each modality (Wang & Isola 2020); ignores tau",
}
INITS: dict[str, str] = {
    "polar": "each modality in a cap around opposite poles (+e, -e)",
    "nearby": "two caps whose centres are `angle` degrees apart",
    "overlapped": "both modalities in the same cap (pairs drawn independently)",
    "uniform": "both modalities uniform on the sphere (spread ignored)",
}
TRACE_SPACINGS = ("linear", "log")


@dataclass(frozen=True)
class SphereConfig:
    """One run: free unit points x_i, y_i in R^d (i < n) optimised by SGD on a contrastive loss.

    spread: standard deviation of the Gaussian jitter around a cap centre before re-normalising
        (x = normalise(mu + spread * z), z ~ N(0, I_d)); 0.3 on S^2 gives caps of about 25 degrees.
    angle: angle in degrees between the two cap centres of the "nearby" init.
    steps_per_epoch: batches per epoch; default n // batch (the last partial batch is dropped).
    traces / trace_spacing / trace_every: when the geometry is recorded: every `trace_every` epochs
        if given, else `traces` points spaced linearly or logarithmically over [0, epochs].
    snapshots: epochs at which the positions of `snapshot_pairs` sampled pairs are stored
        (default: 6 log-spaced epochs from 0 to epochs).
    siglip_bias: the fixed bias b of SigLIP's logits s x.y + b (SigLIP's initial value, -10).
    slip_sigma: std of the Gaussian jitter that makes SLIP's two image views.
    ssl_weight: weight of SLIP's image NT-Xent term (SLIP and Shi: 1).
    unif_weight: weight of the uniformity terms in align_uniform.
    reproject: True (Shi's setup as the issue states it): rows are put back on the sphere after
        every step. False: the rows are free Euclidean parameters, the loss sees them normalised,
        and their norms grow, which slows the dynamics on the sphere (an ablation).
    """

    loss: str = "clip"
    init: str = "polar"
    tau: float = 0.1
    n: int = 1000
    d: int = 3
    lr: float = 0.01
    batch: int = 10
    epochs: int = 20000
    seed: int = 0
    spread: float = 0.3
    angle: float = 60.0
    steps_per_epoch: int | None = None
    traces: int = 200
    trace_spacing: str = "linear"
    trace_every: int | None = None
    snapshots: tuple[int, ...] | None = None
    snapshot_pairs: int = 30
    siglip_bias: float = -10.0
    slip_sigma: float = 0.1
    ssl_weight: float = 1.0
    unif_weight: float = 1.0
    reproject: bool = True

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("init", self.init, INITS)
        _check_choice("trace_spacing", self.trace_spacing, TRACE_SPACINGS)
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau) and self.tau > 0):
            raise GapkitError(f"tau must be a positive number, got {self.tau}")
        if self.tau < 1.0 / MAX_LOGIT_SCALE:
            raise GapkitError(f"tau must be >= 1/{MAX_LOGIT_SCALE:g} (exp(-2/tau) underflows), got {self.tau}")
        for name in ("n", "d", "batch", "epochs", "traces", "snapshot_pairs", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise GapkitError(f"{name} must be an integer, got {v!r}")
        _positive_int("n", self.n, minimum=2)
        _positive_int("d", self.d, minimum=2)
        _positive_int("batch", self.batch, minimum=2)
        if self.batch > self.n:
            raise GapkitError(f"batch ({self.batch}) is larger than the number of pairs n ({self.n})")
        if self.epochs < 0:
            raise GapkitError(f"epochs must be >= 0, got {self.epochs}")
        check_seed(self.seed)
        # positions, velocities-free SGD state and traces: about 3 float64 copies of (2n, d)
        check_allocation(3 * 2 * self.n * self.d * 8 + self.traces * 8 * 16, f"a sphere run with n={self.n}, d={self.d}")
        for name in ("lr", "spread", "slip_sigma", "ssl_weight", "unif_weight", "siglip_bias", "angle"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise GapkitError(f"{name} must be a finite number, got {v!r}")
        if not isinstance(self.reproject, bool):
            raise GapkitError(f"reproject must be true or false, got {self.reproject!r}")
        if self.lr <= 0:
            raise GapkitError(f"lr must be positive, got {self.lr}")
        if self.spread < 0 or self.slip_sigma < 0:
            raise GapkitError("spread and slip_sigma must be >= 0")
        if not 0 <= self.angle <= 180:
            raise GapkitError(f"angle must be in [0, 180] degrees, got {self.angle}")
        spe = self.steps_per_epoch
        if spe is not None and (not isinstance(spe, int) or spe < 1 or spe * self.batch > self.n):
            raise GapkitError(f"steps_per_epoch must be in [1, n // batch = {self.n // self.batch}], got {spe}")
        if self.trace_every is not None:
            _positive_int("trace_every", self.trace_every, minimum=1)
        _positive_int("traces", self.traces, minimum=1)
        if not 1 <= self.snapshot_pairs:
            raise GapkitError("snapshot_pairs must be >= 1")
        if self.snapshots is not None:
            snaps = tuple(int(e) for e in self.snapshots)
            if any(e < 0 or e > self.epochs for e in snaps):
                raise GapkitError(f"snapshot epochs must lie in [0, epochs = {self.epochs}], got {list(snaps)}")
            object.__setattr__(self, "snapshots", tuple(sorted(set(snaps))))

    @property
    def logit_scale(self) -> float:
        return 1.0 / self.tau

    @property
    def epoch_steps(self) -> int:
        return self.steps_per_epoch or self.n // self.batch

    def replace(self, **changes: Any) -> "SphereConfig":
        """A copy with some fields changed (validated again); unknown names raise GapkitError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise GapkitError(f"unknown sphere parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["snapshots"] = list(self.snapshots) if self.snapshots is not None else None
        out["steps_per_epoch"] = self.epoch_steps
        return out


def _check_choice(name: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise GapkitError(f"unknown {name} '{value}'; known: {', '.join(choices)}")


def _positive_int(name: str, v: int, minimum: int) -> None:
    if v < minimum:
        raise GapkitError(f"{name} must be >= {minimum}, got {v}")
