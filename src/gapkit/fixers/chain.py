"""A chain of fixers applied one after another, with no re-normalisation between the steps.

    steps = [{"name": "center", "renormalize": False}, {"name": "noise", "std": 0.1265}]
    x' = step_k( ... step_2(step_1(x)) ... )

Every fixer on its own sees L2-normalised rows (the fixer contract). Inside a chain only the FIRST
step does; each later step receives the previous step's output as it is. That is what C3's
"collapse then corrupt" needs (Zhang et al. 2024: subtract the modality mean, add Gaussian noise to
the centred, un-normalised vector, then normalise):

    create_fixer("chain", steps=[{"name": "center", "renormalize": False}, {"name": "noise"}])
    gives normalise((x - mu_m) + eps), eps ~ N(0, 0.016 I)

whereas `center` (renormalize=True) followed by a separate `noise` call would give
normalise(normalise(x - mu_m) + eps): the noise would then be far larger relative to the centred
vector, whose norm is well below 1 when the cone is narrow.

Fitting: step k is fitted on the calibration rows as transformed by steps 1..k-1 (its own `fit`
then L2-normalises them, as every fixer's fit does). Saving writes each step into a sub-folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapkitError
from .base import Fixer


def _step_spec(step: Any, i: int) -> tuple[str, dict[str, Any]]:
    if not isinstance(step, dict) or not isinstance(step.get("name"), str):
        raise GapkitError(f"chain: step {i} must be an object with a \"name\" (and the fixer's parameters), "
                          f"got {step!r}")
    params = {k: v for k, v in step.items() if k != "name"}
    if step["name"] == "chain":
        raise GapkitError("chain: a step cannot itself be a chain (list its steps instead)")
    return step["name"], params


class FixerChain(Fixer):
    """Fixers applied in order without re-normalising between them. Fitted: steps_ (the fitted
    fixers; saved as step0/, step1/, ... beside fixer.json)."""

    name = "chain"

    def __init__(self, steps: list | None = None) -> None:
        self.steps = steps

    def _build(self) -> list[Fixer]:
        from .registry import create_fixer

        if not isinstance(self.steps, list) or not self.steps:
            raise GapkitError("chain: steps must be a non-empty list, e.g. "
                              '[{"name": "center", "renormalize": false}, {"name": "noise"}]')
        return [create_fixer(n, **p) for n, p in (_step_spec(s, i) for i, s in enumerate(self.steps))]

    def fit(self, image: Any, text: Any, text_to_image: Any = None) -> "FixerChain":
        fitted = []
        img, txt = image, text
        for k, fx in enumerate(self._build()):
            if fx.acts_on != "embeddings":
                raise GapkitError(f"chain: step {k} ('{fx.name}') calibrates scores, it does not map embeddings")
            fx.fit(img, txt, text_to_image)
            fitted.append(fx)
            if k + 1 < len(self.steps):  # later steps are fitted on what the earlier ones output
                img = self._apply(fitted, image, "image", 0, normalise_first=True)
                txt = self._apply(fitted, text, "text", 0, normalise_first=True)
        self.steps_ = fitted
        self.dim_ = int(fitted[0].dim_)
        return self

    @staticmethod
    def _apply(fixers: list[Fixer], x: Any, modality: str, start: int, normalise_first: bool) -> np.ndarray:
        u = np.asarray(x, dtype=np.float64)
        if normalise_first:
            u = u / np.linalg.norm(u, axis=1, keepdims=True)
        for fx in fixers:
            u = fx._transform_chunk(np.array(u, dtype=np.float64), modality, start)
        return u

    def _transform_chunk(self, u: np.ndarray, modality: str, start: int) -> np.ndarray:
        # `u` is already normalised by the base class; the steps' own row-position keys (the
        # noise fixer's seeded blocks) see the same `start`, so chunking does not change the result
        return self._apply(self.steps_, u, modality, start, normalise_first=False)

    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:  # pragma: no cover
        raise AssertionError("FixerChain overrides fit()")

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        # the steps are saved in their own folders (save_extra), not as attributes of the chain
        return {"dim_": self.dim_, "n_steps_": len(self.steps_)}, {}

    def save_extra(self, tmp: Path) -> None:
        for k, fx in enumerate(self.steps_):
            fx.save(tmp / f"step{k}")

    def load_extra(self, path: Path) -> None:
        from .base import load_fixer

        n = int(getattr(self, "n_steps_", 0))
        self.steps_ = [load_fixer(path / f"step{k}") for k in range(n)]
        if len(self.steps_) != len(self.steps or []):
            raise GapkitError(f"{path}: the saved chain has {n} fitted steps but {len(self.steps or [])} in its parameters")
