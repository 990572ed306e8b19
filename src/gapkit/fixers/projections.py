"""A two-tower model's projection weights, read from a file or a model (what IsoCLIP needs).

Convention: A_image (D, d_i) and A_text (D, d_t) with embedding = A h for a pre-projection
feature h (the layout of nn.Linear.weight and of HF's CLIPModel). A projector with a bias b is
returned as [A, b] (D, d + 1), i.e. h is read as [h, 1]: the affine map becomes linear, which is
how IsoCLIP's released code treats projectors with a bias (an appended column of ones).

Recognised layouts (state-dict keys; the first scheme whose image key is present wins):
    open_clip / gapkit ViT   visual.proj (d_i, D), text_projection or text.text_projection (d_t, D)
    gapkit CNN towers        visual.proj.weight (D, d_i) [+ visual.proj.bias], text.text_projection (d_t, D)
    HF transformers CLIP     visual_projection.weight (D, d_i), text_projection.weight (D, d_t)
    gapkit LiT heads         image_proj.weight (D, d_i), text_proj.weight (D, d_t)
    gapkit tower heads       image.weight (D, 1280) [+ image.bias], text.weight (D, 384) [+ text.bias]
    plain arrays             image_projection (D, d_i), text_projection (D, d_t)   (.npz / .safetensors)
Files: .safetensors, .npz (allow_pickle=False), .pt/.bin (torch weights_only=True; a
{"state_dict": ...} wrapper and a "module." prefix are unwrapped), or a folder holding
heads.safetensors (saved LiT heads). Nothing is unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import GapkitError, reading

# (image key, image layout, image bias key, text keys, text layout, text bias key);
# layout "out_in" = (D, d) as nn.Linear.weight, "in_out" = (d, D) as a CLIP projection parameter
_SCHEMES: tuple[tuple[str, str, str | None, tuple[str, ...], str, str | None], ...] = (
    ("visual.proj", "in_out", None, ("text_projection", "text.text_projection"), "in_out", None),
    ("visual.proj.weight", "out_in", "visual.proj.bias", ("text.text_projection", "text_projection"), "in_out", None),
    ("visual_projection.weight", "out_in", "visual_projection.bias", ("text_projection.weight",), "out_in",
     "text_projection.bias"),
    ("image_proj.weight", "out_in", "image_proj.bias", ("text_proj.weight",), "out_in", "text_proj.bias"),
    ("image.weight", "out_in", "image.bias", ("text.weight",), "out_in", "text.bias"),
    ("image_projection", "out_in", None, ("text_projection",), "out_in", None),
)


def _matrix(state: Mapping[str, Any], key: str, layout: str, bias_key: str | None) -> np.ndarray:
    a = np.asarray(state[key], dtype=np.float64)
    if a.ndim != 2:
        raise GapkitError(f"projection '{key}' must be a matrix, got shape {a.shape}")
    a = a.T if layout == "in_out" else a
    if bias_key and bias_key in state:
        b = np.asarray(state[bias_key], dtype=np.float64).reshape(-1)
        if b.shape[0] != a.shape[0]:
            raise GapkitError(f"projection bias '{bias_key}' has {b.shape[0]} entries, its weight {a.shape[0]} rows")
        if np.any(b != 0):
            a = np.hstack([a, b[:, None]])  # affine -> linear on [h, 1]
    if not np.all(np.isfinite(a)):
        raise GapkitError(f"projection '{key}' contains NaN or inf")
    return a


def projections_from_state(state: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(A_image (D, d_i), A_text (D, d_t)) from a state dict of one of the layouts above."""
    keys = {k[len("module."):] if k.startswith("module.") else k: k for k in state}
    flat = {k: state[v] for k, v in keys.items()}
    for img_key, img_layout, img_bias, txt_keys, txt_layout, txt_bias in _SCHEMES:
        if img_key not in flat:
            continue
        txt_key = next((k for k in txt_keys if k in flat), None)
        if txt_key is None:
            continue
        a_i = _matrix(flat, img_key, img_layout, img_bias)
        a_t = _matrix(flat, txt_key, txt_layout, txt_bias)
        if a_i.shape[0] != a_t.shape[0]:
            raise GapkitError(f"projections map into different dimensions: image {a_i.shape[0]}, text {a_t.shape[0]}")
        return a_i, a_t
    known = ", ".join(f"{s[0]} + {s[3][0]}" for s in _SCHEMES)
    raise GapkitError(f"no image/text projection pair found among {len(flat)} tensors; expected one of: {known}")


def _to_numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


def read_projections(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Projection weights from a file or a saved LiT-heads folder (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        p = p / "heads.safetensors"
    if not p.is_file():
        raise GapkitError(f"projection weights not found: {p}")
    suffix = p.suffix.lower()
    with reading(p, "projection weights"):
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            state: dict[str, Any] = dict(load_file(str(p)))
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                state = {k: z[k] for k in z.files}
        elif suffix in (".pt", ".pth", ".bin"):
            import torch

            obj = torch.load(p, map_location="cpu", weights_only=True)
            obj = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
            if not isinstance(obj, dict):
                raise GapkitError(f"{p}: expected a state dict, got {type(obj).__name__}")
            state = {k: _to_numpy(v) for k, v in obj.items()}
        else:
            raise GapkitError(f"{p}: projection weights must be .safetensors, .npz, .pt/.pth/.bin or a heads folder")
    return projections_from_state(state)


def projections_of(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Projection weights of an in-memory model: a torch module (open_clip CLIP, HF CLIPModel,
    gapkit CLIP / LiT heads), or a gapkit encoder wrapping one (`.model` or `.heads`)."""
    for obj in (model, getattr(model, "model", None), getattr(model, "heads", None)):
        if obj is not None and hasattr(obj, "state_dict"):
            try:
                return projections_from_state({k: _to_numpy(v) for k, v in obj.state_dict().items()})
            except GapkitError:
                continue
    raise GapkitError(f"{type(model).__name__}: no image/text projection weights found")
