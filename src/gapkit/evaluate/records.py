"""Evaluation records: one JSON per (model, dataset, task), CLIP_benchmark-compatible.

CLIP_benchmark writes {"dataset", "model", "pretrained", "task", "metrics", "language"}; gapkit
records carry those keys at the top level plus the usual record fields (kind "evaluate",
versions, inputs, params, results == metrics) and the fixer used (or null for raw embeddings).
"""
from __future__ import annotations

from typing import Any

from ..records import new_record


def evaluation_record(task: str, metrics: dict[str, Any], *, model: str = "unknown", dataset: str = "unknown",
                      pretrained: str | None = None, fixer: str | None = None, language: str = "en",
                      params: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                      seed: int | None = None) -> dict[str, Any]:
    """Build the record of one evaluation."""
    return new_record("evaluate", params={**(params or {}), "fixer": fixer}, results=dict(metrics),
                      inputs=inputs, seed=seed, dataset=dataset, model=model, pretrained=pretrained,
                      task=task, language=language, fixer=fixer, metrics=dict(metrics))
