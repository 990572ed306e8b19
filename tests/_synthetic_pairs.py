"""A tiny synthetic image-caption dataset for trainer tests (no files, ~ms to build).

Class c has a fixed random 32x32 RGB template; an image is its template plus pixel noise; its
caption names the class. Follows the gapkit.data ImageTextDataset protocol (n_images, image(i),
captions, text_to_image, labels, class_names).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NAMES = ["apple", "boat", "cat", "door", "egg", "fish", "guitar", "house", "igloo", "jacket"]


@dataclass
class SyntheticPairs:
    n_images: int = 512
    n_classes: int = 10
    seed: int = 0
    noise: float = 40.0
    size: int = 32
    name: str = "synthetic"
    arrays: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # Templates are the same for every seed (one "world"); the seed draws the noise only.
        templates = np.random.default_rng(1234).integers(0, 256, (self.n_classes, self.size // 4, self.size // 4, 3)).repeat(4, 1).repeat(4, 2)
        self.labels = np.arange(self.n_images) % self.n_classes
        r = np.random.default_rng(self.seed)
        noisy = templates[self.labels] + self.noise * r.standard_normal((self.n_images, self.size, self.size, 3))
        self.arrays = np.clip(noisy, 0, 255).astype(np.uint8)
        self.class_names = NAMES[: self.n_classes]
        self.captions = [f"a photo of a {self.class_names[c]}." for c in self.labels]
        self.text_to_image = np.arange(self.n_images)

    def image(self, i: int):
        from PIL import Image

        return Image.fromarray(self.arrays[i], "RGB")


class NanAfterLoss:
    """CLIP loss that returns NaN from its `after`-th call on (to test the divergence stop)."""

    def __new__(cls, after: int = 5):
        import torch

        from gapkit.losses import create_loss

        clip = create_loss("clip")

        class _Nan(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.calls = 0

            def forward(self, x, y, s, **kw):
                self.calls += 1
                out = clip(x, y, s)
                if self.calls > after:
                    out = {k: v * float("nan") for k, v in out.items()}
                return out

        return _Nan()


class GatheringClipLoss:
    """CLIP loss over the global batch, gathering with torch.distributed.nn.functional.all_gather
    (gradients flow back to every rank): the trainer's DDP path, independent of gapkit.distributed."""

    def __new__(cls):
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        class _Gather(torch.nn.Module):
            def forward(self, x, y, s, **kw):
                if dist.is_available() and dist.is_initialized():
                    import warnings

                    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecated, still exact
                    from torch.distributed.nn.functional import all_gather

                    x, y = torch.cat(all_gather(x)), torch.cat(all_gather(y))
                logits = s * x @ y.T
                labels = torch.arange(x.shape[0])
                return {"contrastive_loss": (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2}

        return _Gather()


def single_thread():
    """Generator for an autouse fixture: torch on one thread (tiny models gain nothing from two,
    and a busy shared 2-core machine makes two spinning threads much slower), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
