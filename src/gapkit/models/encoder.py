"""gapkit's own models as gapkit.encoders Encoders ("gapkit:NAME" in the encoder registry).

    get_encoder("gapkit:tiny-vit")                          # a fresh random init of a preset
    get_encoder("gapkit", checkpoint="runs/clip")           # a trained run directory
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import GapkitError


def load_encoder(name: str | None, checkpoint: str | os.PathLike | None = None, device: str = "cpu",
                 seed: int = 0, **_: Any) -> Any:
    """An Encoder over a trained run (`checkpoint` = run directory) or a preset's random init."""
    from ..encoders.gapkit_models import ModuleEncoder
    from ..train.loop import load_run_model
    from . import create_model
    from .preprocess import ImageTransform

    if checkpoint is not None:
        model = load_run_model(checkpoint)
        label = f"gapkit:{name or os.path.basename(os.path.normpath(checkpoint))}"
    elif name:
        model = create_model(name, seed=seed)
        label = f"gapkit:{name}"
    else:
        raise GapkitError("gapkit encoder: give a model preset name or checkpoint=RUN_DIR")
    v = model.config["vision_cfg"]
    transform = ImageTransform(int(v["image_size"]), int(v.get("in_channels", 3)))
    return ModuleEncoder(model.to(device), model.tokenizer, transform, label, model.config["embed_dim"],
                         {"image": repr(transform), "tokenizer": model.config["text_cfg"].get("tokenizer", "clip")},
                         device=device)
