"""TrainConfig: every knob of a training run, saved as config.json in the run directory.

A run is fully determined by its TrainConfig (and the code version): the seed fixes the model
initialisation, the data order (a permutation per epoch) and the eval subset.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import read_json_object, write_json_atomic
from ..errors import GapkitError
from ..validation import check_device, check_seed, check_threads
from ..params import parse_key_values
from ..typecheck import check_positive, check_value

TEMPERATURE_MODES = ("learnable", "fixed", "schedule")


@dataclass
class TrainConfig:
    """Parameters of one training run (JSON in and out).

    Temperature: "learnable" trains log(1/tau) (init 1/tau if `tau` is set, else the model's
    init), clamped to ln 100; "fixed" holds tau; "schedule" decays tau exponentially from `tau`
    to `tau_end` over the run: tau(t) = tau * (tau_end / tau) ** (t / steps).
    Learning rate: linear warmup over `warmup_steps`, then cosine to `lr * min_lr_ratio`.
    """

    # what to train on
    model: Any = "tiny-vit"                  # preset name, JSON path, or config dict
    dataset: str = "fashion-mnist"           # gapkit.data.load_dataset name or path
    split: str = "train"
    eval_split: str = "test"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    max_train_texts: int = 0                 # 0 = all captions of the split
    sampler: str = "random"                  # "random" | "duplicates" (false-negative-heavy batches)
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    # objective
    loss: str = "clip"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    semantic_encoder: str | None = None      # SBERT model for imsep's caption embeddings (None = losses' default)
    # optimisation
    steps: int = 300                         # optimizer steps (epochs > 0 overrides)
    epochs: float = 0.0
    batch_size: int = 128                    # global batch (all processes, all accumulation chunks)
    accum_steps: int = 1                     # micro-batches per step; negatives stay within a micro-batch
    lr: float = 5e-4
    weight_decay: float = 0.1                # not applied to gains, biases, embeddings of 1-D params, logit_scale
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 30
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0                   # max global grad norm; 0 = off
    # temperature and initialisation
    temperature: str = "learnable"
    tau: float | None = None
    tau_end: float = 0.01
    procrustes_init: bool = False            # Liang Sec. 4.4 amended init
    procrustes_samples: int = 2048
    init_from: str | None = None             # a run directory whose final weights start this run
    # telemetry and checkpoints
    seed: int = 0
    eval_every: int = 100
    eval_size: int = 1000
    ckpt_every: int = 100
    progress: bool = True
    # hardware
    device: str = "auto"                     # "auto" | "cpu" | "cuda"
    precision: str = "fp32"                  # "fp32" | "bf16" (autocast on CUDA)
    threads: int = 0                         # torch.set_num_threads when > 0

    def __post_init__(self) -> None:
        self._check_types()
        self.validate()

    def _check_types(self) -> None:
        """Every field checked against its annotation (values come from JSON and --set), so
        `steps="abc"` fails here with one line naming the field; betas become a tuple."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_value(getattr(self, f.name), hints[f.name], f.name))

    def validate(self) -> None:
        """Raise GapkitError naming the first invalid field."""
        if self.temperature not in TEMPERATURE_MODES:
            raise GapkitError(f"temperature must be one of {TEMPERATURE_MODES}, got '{self.temperature}'")
        if self.temperature in ("fixed", "schedule") and self.tau is None:
            raise GapkitError(f"temperature '{self.temperature}' needs tau")
        for name in ("steps", "batch_size", "accum_steps", "eval_every", "ckpt_every", "eval_size"):
            if int(getattr(self, name)) < 1 and not (name == "steps" and self.epochs > 0):
                raise GapkitError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.accum_steps:
            raise GapkitError(f"batch_size {self.batch_size} is not divisible by accum_steps {self.accum_steps}")
        if self.tau is not None and not self.tau > 0:
            raise GapkitError(f"tau must be > 0, got {self.tau}")
        if not self.tau_end > 0:
            raise GapkitError(f"tau_end must be > 0, got {self.tau_end}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise GapkitError("lr must be > 0; weight_decay and grad_clip must be >= 0")
        if self.precision not in ("fp32", "bf16"):
            raise GapkitError(f"precision must be 'fp32' or 'bf16', got '{self.precision}'")
        for name in ("epochs", "max_train_texts", "warmup_steps", "min_lr_ratio", "procrustes_samples"):
            check_positive(name, getattr(self, name), allow_zero=True)
        from .data import SAMPLERS

        if self.sampler not in SAMPLERS:  # now, not after the dataset is loaded
            raise GapkitError(f"unknown sampler '{self.sampler}'; known: {', '.join(SAMPLERS)}")
        check_threads(self.threads)
        check_seed(self.seed)
        check_device(self.device)
        if not all(0 <= b < 1 for b in self.betas) or self.eps <= 0:
            raise GapkitError(f"betas must be in [0, 1) and eps > 0, got betas {self.betas}, eps {self.eps}")
        self._check_loss()

    def _check_loss(self) -> None:
        """Build the loss once so an unknown name or a bad loss_kwargs value fails with the
        config, before a run directory exists (imports torch, which training needs anyway)."""
        from ..losses import create_loss

        create_loss(self.loss, **self.loss_kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise GapkitError(f"a TrainConfig must be a JSON object, got a {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GapkitError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(read_json_object(path, "TrainConfig"))

    def with_overrides(self, pairs: list[str]) -> "TrainConfig":
        """A copy with `key=value` overrides applied; values are parsed as JSON when they can be."""
        d = self.to_dict()
        for key, value in parse_key_values(pairs, "--set").items():
            target, _, sub = key.partition(".")
            if sub:  # dotted keys reach into dict fields: loss_kwargs.beta=0.5
                if not isinstance(d.get(target), dict):
                    raise GapkitError(f"--set {key}: '{target}' is not a dict field")
                d[target][sub] = value
            else:
                d[key] = value
        return TrainConfig.from_dict(d)
