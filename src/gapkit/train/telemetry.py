"""Gap telemetry: embed a fixed eval subset and measure the gap and retrieval.

Reported per eval (all on L2-normalised features of the fixed subset):
    centroid_distance, paired_cosine_mean, rmg, linear_separability,
    i2t_recall@1, t2i_recall@1 (any-of-the-captions convention), zero_shot_accuracy (when the
    data has class names: prompts "a photo of a {class}." against the images).
The gap metrics come from gapkit.metrics.measure.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_text_atomic
from ..models.preprocess import normalize_pixels
from .data import PairData

TELEMETRY_METRICS = ["centroid_distance", "paired_cosine_mean", "rmg", "linear_separability", "retrieval"]
TELEMETRY_KEYS = ("centroid_distance", "paired_cosine_mean", "rmg", "linear_separability",
                  "i2t_recall@1", "t2i_recall@1")


@torch.no_grad()
def embed(model: torch.nn.Module, data: PairData, device: torch.device, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image (N, E) and text (M, E) features of `data`, on the CPU, float32."""
    was_training = model.training
    model.eval()
    img = [model.encode_image(normalize_pixels(data.images[i : i + batch_size]).to(device), normalize=True).float().cpu()
           for i in range(0, data.images.shape[0], batch_size)]
    txt = [model.encode_text(data.tokens[i : i + batch_size].to(device), normalize=True).float().cpu()
           for i in range(0, data.tokens.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(img), torch.cat(txt)


@torch.no_grad()
def zero_shot_accuracy(model: torch.nn.Module, image_features: torch.Tensor, labels: np.ndarray,
                       class_names: list[str], device: torch.device) -> float:
    """Share of images whose most similar class prompt "a photo of a {class}." is their label."""
    prompts = model.tokenizer([f"a photo of a {c}." for c in class_names]).to(device)
    was_training = model.training
    model.eval()
    cls = model.encode_text(prompts, normalize=True).float().cpu()
    model.train(was_training)
    pred = (image_features @ cls.T).argmax(dim=1).numpy()
    return float((pred == labels).mean())


def evaluate(model: torch.nn.Module, data: PairData, device: torch.device, seed: int = 0,
             ks: tuple[int, ...] = (1,)) -> dict[str, float]:
    """Gap and retrieval metrics of the model on `data` (a fixed eval subset)."""
    img, txt = embed(model, data, device)
    t2i = data.text_to_image.numpy()
    from ..metrics import measure

    res = measure(img.numpy(), txt.numpy(), text_to_image=t2i, metrics=TELEMETRY_METRICS, seed=seed, ks=ks)
    out = {k: float(v) for k, v in res.items() if k in TELEMETRY_KEYS or "recall@" in k}
    if data.labels is not None and data.class_names:
        out["zero_shot_accuracy"] = zero_shot_accuracy(model, img, data.labels, data.class_names, device)
    return out


class MetricsLog:
    """metrics.jsonl: one JSON object per eval, appended and flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, row: dict[str, Any]) -> None:
        from ..atomic import dumps_json

        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps_json(row, indent=None) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a resumed run repeats those steps)."""
        if not self.path.exists():
            return
        rows = read_metrics(self.path)
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file (a trailing partial line from a crash is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
