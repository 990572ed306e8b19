"""gapkit.models: two-tower CLIP, SharedCLIP and LiT heads, built from JSON configs.

    >>> from gapkit.models import create_model
    >>> model = create_model("tiny-vit")            # or a JSON path, or a dict
    >>> out = model(images, model.tokenizer(["a photo of a shoe"] * len(images)))
    >>> out["image_features"].shape, out["logit_scale"]

Presets: tiny-* train on 2 CPU cores (32 px images, word tokenizer, width 64); vit-b-32,
vit-b-16 and sharedclip-vit-b-16 are open_clip-sized (CLIP BPE tokenizer, 224 px).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .registry import available_models, get_model_config, register_model_config

__all__ = ["create_model", "available_models", "get_model_config", "register_model_config",
           "get_tokenizer", "LiTHeads", "load_heads", "load_encoder"]


def create_model(name_or_config: str | Path | dict[str, Any], seed: int | None = None) -> Any:
    """Build a model (CLIP or SharedCLIP) from a preset name, JSON path or config dict.

    The returned module carries `.config` (the validated dict) and `.tokenizer` (texts ->
    (M, context_length) ids). `seed` seeds torch's global generator before initialisation.
    """
    import torch

    from .clip import CLIP, SharedCLIP
    from .tokenizers import get_tokenizer

    cfg = get_model_config(name_or_config)
    if seed is not None:
        torch.manual_seed(seed)
    scale = float(cfg.get("init_logit_scale", 1 / 0.07))
    if cfg["model"] == "sharedclip":
        model = SharedCLIP(cfg["embed_dim"], cfg["width"], cfg["layers"], cfg["heads"], cfg["vision_cfg"],
                           cfg["text_cfg"], cfg.get("mlp_ratio", 4.0), scale)
    else:
        model = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], scale)
    model.config = cfg
    model.tokenizer = get_tokenizer(cfg["text_cfg"])
    return model


def __getattr__(name: str) -> Any:  # lazy: keep `import gapkit.models` free of torch
    if name == "get_tokenizer":
        from .tokenizers import get_tokenizer

        return get_tokenizer
    if name == "load_encoder":  # the "gapkit:NAME" entry of gapkit.encoders
        from .encoder import load_encoder

        return load_encoder
    if name in ("LiTHeads", "load_heads"):
        from . import heads

        return getattr(heads, name)
    raise AttributeError(name)
