"""Image preprocessing shared by training and by the encoder adapter (one definition).

    PIL image -> RGB (or L) -> bicubic resize to (S, S) -> uint8 (C, S, S)      pil_to_uint8
    uint8 [0, 255] -> float [-1, 1]: x / 127.5 - 1                               normalize_pixels
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def pil_to_uint8(im: Any, size: int, channels: int = 3) -> np.ndarray:
    """A PIL image as uint8 (C, size, size)."""
    from PIL import Image

    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BICUBIC)
    a = np.array(im, dtype=np.uint8)  # a writable copy (PIL buffers are read-only)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]: (x / 255 - 0.5) / 0.5."""
    return images.float().div_(127.5).sub_(1.0)


class ImageTransform:
    """Callable PIL -> float (C, S, S) tensor, the model's input format."""

    def __init__(self, size: int, channels: int = 3) -> None:
        self.size, self.channels = size, channels

    def __call__(self, im: Any) -> torch.Tensor:
        return normalize_pixels(torch.from_numpy(pil_to_uint8(im, self.size, self.channels)))

    def __repr__(self) -> str:
        return f"gapkit ImageTransform(size={self.size}, channels={self.channels}, bicubic, [-1, 1])"
