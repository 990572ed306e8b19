"""gapkit.train: TrainConfig, the training loop, checkpoints, telemetry, LiT heads.

    >>> from gapkit.train import TrainConfig, train
    >>> record = train(TrainConfig(model="tiny-vit", dataset="fashion-mnist", steps=300), "runs/a")
    >>> train(TrainConfig.load("runs/a/config.json"), "runs/a", resume=True)   # after a crash

See docs/training.md.
"""
from __future__ import annotations

from typing import Any

from .config import TrainConfig

__all__ = ["TrainConfig", "train", "fit_heads", "fit_heads_many", "load_run_model", "TrainingDiverged"]


def __getattr__(name: str) -> Any:  # the loop imports torch; keep the config import light
    if name in ("train", "load_run_model", "TrainingDiverged"):
        from . import loop

        return getattr(loop, name)
    if name in ("fit_heads", "fit_heads_many"):
        from . import lit

        return getattr(lit, name)
    raise AttributeError(name)
