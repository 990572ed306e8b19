"""Shared by the trainer callbacks: find the features in a model's outputs, feed a ModalityGap,
and turn its result into loggable `<prefix><key>` floats.

A host's outputs hold the features under names that depend on the library:
    HF CLIPModel / SiglipModel output     image_embeds, text_embeds        (L2-normalised)
    open_clip model dict, most user code   image_features, text_features
A validation step may also return an (image, text) or (image, text, text_to_image) tuple. Anything
else needs a `features(...)` hook that returns such a tuple.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import GapkitError

FEATURE_NAMES = (("image_embeds", "text_embeds"), ("image_features", "text_features"))
FeatureHook = Callable[..., Any]


def _get(outputs: Any, name: str) -> Any:
    if isinstance(outputs, dict) or hasattr(outputs, "keys"):  # dict or transformers ModelOutput
        return outputs.get(name) if hasattr(outputs, "get") else None
    return getattr(outputs, name, None)


def pick_features(outputs: Any) -> tuple[Any, Any, Any]:
    """(image (N, D), text (M, D), text_to_image (M,) or None) from a step's outputs (module doc)."""
    if isinstance(outputs, (tuple, list)) and len(outputs) in (2, 3) and all(hasattr(o, "shape") or o is None
                                                                               for o in outputs):
        return (outputs[0], outputs[1], outputs[2] if len(outputs) == 3 else None)
    for img_name, txt_name in FEATURE_NAMES:
        img, txt = _get(outputs, img_name), _get(outputs, txt_name)
        if img is not None and txt is not None:
            return img, txt, _get(outputs, "text_to_image")
    raise GapkitError(f"no features in the step outputs ({type(outputs).__name__}): return a dict with "
                      "'image_features' and 'text_features' (or 'image_embeds'/'text_embeds'), an (image, text) "
                      "tuple, or pass features=callable returning one")


class GapCollector:
    """A ModalityGap fed batch by batch; `result(prefix)` -> {prefix + key: float} and a reset."""

    def __init__(self, keys: Any = None, **metric_kw: Any) -> None:
        from .torchmetrics import ModalityGap

        self.metric = ModalityGap(keys, **metric_kw)
        self.batches = 0

    def update(self, image: Any, text: Any, text_to_image: Any = None) -> None:
        """Fold one batch; a batch with no rows (a process's share of the padding) still counts as a
        batch and fixes the dimension, so that this process joins the sync at `result`."""
        if self.batches == 0:  # follow the features' device (CPU or CUDA) from the first batch on
            self.metric = self.metric.to(image.device if hasattr(image, "device") else "cpu")
        if image.shape[0]:
            self.metric.update(image, text, text_to_image)
        else:
            self.metric._check_dim(image.shape[1])
        self.batches += 1

    def reset(self) -> None:
        self.metric.reset()
        self.batches = 0

    def result(self, prefix: str) -> dict[str, float]:
        """The metrics of every batch since the last reset (synced across processes), then reset."""
        if self.batches == 0:
            return {}
        out = {f"{prefix}{k}": float(v) for k, v in self.metric.compute().items()}
        self.reset()
        return out
