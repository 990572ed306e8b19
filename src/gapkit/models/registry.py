"""Model architectures as JSON configs: the bundled presets in models/configs/ plus user files.

A config follows open_clip's schema (so open_clip's own ViT JSON files load as they are), with
two gapkit additions:
    {"model": "clip" | "sharedclip",              default "clip"
     "embed_dim": E, "init_logit_scale": 1/0.07,
     "vision_cfg": {"type": "vit" | "cnn", "image_size", "patch_size", "width", "layers",
                    "heads" | "head_width", "mlp_ratio", "in_channels"}     (cnn: "widths": [...])
     "text_cfg": {"tokenizer": "clip" | "word", "context_length", "vocab_size", "width",
                  "layers", "heads", "mlp_ratio"},
     sharedclip only: "width", "layers", "heads", "mlp_ratio" of the one shared transformer}
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..atomic import read_json_object
from ..errors import GapkitError

CONFIG_DIR = Path(__file__).with_name("configs")

_TOP = {"model", "embed_dim", "init_logit_scale", "vision_cfg", "text_cfg", "width", "layers", "heads",
        "mlp_ratio", "description", "name"}
_VISION = {"type", "image_size", "patch_size", "width", "layers", "heads", "head_width", "mlp_ratio",
           "in_channels", "widths"}
_TEXT = {"tokenizer", "context_length", "vocab_size", "width", "layers", "heads", "mlp_ratio"}
_USER: dict[str, dict[str, Any]] = {}


def available_models() -> list[str]:
    """Names of the bundled and registered configs."""
    return sorted({p.stem for p in CONFIG_DIR.glob("*.json")} | set(_USER))


def register_model_config(name: str, config: dict[str, Any]) -> None:
    """Register a config dict under `name` (validated now)."""
    _USER[name] = validate_config(copy.deepcopy(config), name)


def get_model_config(name_or_config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A validated config from a preset name, a JSON file path, or a dict (deep-copied)."""
    if isinstance(name_or_config, dict):
        return validate_config(copy.deepcopy(name_or_config), "config")
    key = str(name_or_config)
    if key in _USER:
        return copy.deepcopy(_USER[key])
    path = CONFIG_DIR / f"{key}.json"
    if not path.is_file():
        path = Path(key)
        if not path.is_file():
            raise GapkitError(f"unknown model '{key}': not a preset ({', '.join(available_models())}) nor a JSON file")
    cfg = read_json_object(path, "model config")
    cfg.setdefault("name", path.stem)
    return validate_config(cfg, str(path))


def _check_keys(cfg: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(cfg) - allowed)
    if extra:
        raise GapkitError(f"{where}: unsupported model config keys {extra}; gapkit builds "
                          f"ViT / small-CNN / transformer towers (allowed: {sorted(allowed)})")


def validate_config(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Check a config's keys and required fields; fill defaults; return it."""
    if not isinstance(cfg, dict):
        raise GapkitError(f"{where}: a model config must be a JSON object")
    _check_keys(cfg, _TOP, where)
    cfg.setdefault("model", "clip")
    if cfg["model"] not in ("clip", "sharedclip"):
        raise GapkitError(f"{where}: model must be 'clip' or 'sharedclip', got '{cfg['model']}'")
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in cfg:
            raise GapkitError(f"{where}: missing '{key}'")
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    _check_keys(v, _VISION, f"{where} vision_cfg")
    _check_keys(t, _TEXT, f"{where} text_cfg")
    if isinstance(v.get("layers"), list):
        raise GapkitError(f"{where}: ResNet image towers (open_clip RN*) are not built by gapkit; "
                          "use vision_cfg type 'cnn' or a ViT")
    need_v = ["image_size", "widths"] if v.get("type") == "cnn" else ["image_size", "patch_size"]
    if cfg["model"] == "clip" and v.get("type") != "cnn":
        need_v += ["width", "layers"]
    need_t = ["context_length", "vocab_size"] + (["width", "layers"] if cfg["model"] == "clip" else [])
    if cfg["model"] == "sharedclip":
        if v.get("type", "vit") != "vit":
            raise GapkitError(f"{where}: sharedclip needs a ViT patch embedder (vision_cfg type 'vit')")
        for key in ("width", "layers", "heads"):
            if key not in cfg:
                raise GapkitError(f"{where}: sharedclip needs '{key}' of the shared transformer")
    for key in need_v:
        if key not in v:
            raise GapkitError(f"{where}: vision_cfg is missing '{key}'")
    for key in need_t:
        if key not in t:
            raise GapkitError(f"{where}: text_cfg is missing '{key}'")
    return cfg
