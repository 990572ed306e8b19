"""The fixer contract (scikit-learn style) and its JSON + safetensors persistence.

A fixer is fitted on a calibration set of paired embeddings and then applied to new embeddings:

    fx = create_fixer("center").fit(image, text)        # image (N, D), text (M, D)
    image2 = fx.transform(new_image, modality="image")  # (n, D) -> (n, D)
    text2 = fx.transform(new_text, modality="text")

Rules (as in scikit-learn): `__init__` only stores its parameters; `fit` validates the inputs,
sets attributes whose names end in "_" and returns self; `transform` on an unfitted fixer, or on
rows of another dimension, raises a GapkitError. Inputs are L2-normalised row by row before any
fixer sees them (the gap is defined on the unit sphere). Fitting and transforming stream over
row chunks, so memory-mapped inputs of any size work in bounded memory (see `_stream`).
Persistence: `save(dir)` writes fixer.json (name, parameters, scalar attributes) and
arrays.safetensors (array attributes); `load_fixer(dir)` rebuilds it. Nothing is pickled.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from ..atomic import atomic_dir, dumps_json, read_json_object
from ..errors import GapkitError, reading
from ..validation import check_mapping
from ._stream import DEFAULT_CHUNK, check_rows, map_rows

FORMAT = "gapkit-fixer"
FORMAT_VERSION = 1
_ATTR_RE = re.compile(r"^[a-z][a-z0-9_]*_$")


class Fixer(BaseEstimator):
    """Base class: subclasses implement `_fit(image, text, mapping)` and `_transform(u, modality)`.

    `_transform` receives a float64 chunk of L2-normalised rows of one modality and returns the
    transformed rows; `_inverse` (optional) undoes it.
    """

    name: ClassVar[str] = ""
    #: modality names accepted by transform (role-aware fixers accept more)
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    #: "embeddings" (transform changes vectors) or "scores" (the fixer calibrates similarities)
    acts_on: ClassVar[str] = "embeddings"
    #: whether `_fit_stats` needs the (D, D) cross sum of FitStats (procrustes)
    needs_cross: ClassVar[bool] = False

    @property
    def stats_fuse_weight(self) -> float | None:
        """The fuse weight whose fused-pair moments `_fit_stats` needs (role-center), else None."""
        return None

    # ------------------------------------------------------------------ public API
    def fit(self, image: Any, text: Any, text_to_image: Any = None) -> "Fixer":
        """Fit on a calibration set: image (N, D), text (M, D), optional text -> image map (M,)."""
        img = check_rows(image, "image embeddings")
        txt = check_rows(text, "text embeddings", dim=img.shape[1])
        mapping = None if text_to_image is None else check_mapping(text_to_image, img.shape[0], txt.shape[0])
        self._fit(img, txt, mapping)
        self.dim_ = int(img.shape[1])
        return self

    def transform(self, x: Any, modality: str = "image", *, out: np.ndarray | None = None,
                  chunk_size: int = DEFAULT_CHUNK, first_row: int = 0) -> np.ndarray:
        """Apply the fitted fix to rows of one modality: (n, D) -> (n, D).

        `out` may be a preallocated (e.g. memory-mapped, writable) array of the same shape; the
        rows stream through in chunks of `chunk_size`. `first_row`: the global row of x[0] when x
        is one shard of a larger set (fixers whose result depends on the row, e.g. seeded noise,
        then give each shard what a single pass would).
        """
        a = self._check_input(x, modality)
        return map_rows(a, lambda u, start: self._transform_chunk(u, modality, first_row + start),
                        f"{modality} embeddings", out=out, chunk=chunk_size)

    @property
    def fits_from_stats(self) -> bool:
        """True when `fit_from_stats` works: the fit needs only mergeable statistics (FitStats)."""
        return type(self)._fit_stats is not Fixer._fit_stats

    def fit_from_stats(self, stats: Any) -> "Fixer":
        """Fit from `gapkit.fixers.stats.FitStats` (merged over shards); same result as `fit` on the
        rows, to float64 rounding."""
        if not self.fits_from_stats:
            raise GapkitError(f"fixer '{self.name}' needs the calibration rows themselves (it cannot fit from "
                              "merged statistics)")
        self._fit_stats(stats)
        self.dim_ = int(stats.dim)
        return self

    def fit_transform(self, image: Any, text: Any, text_to_image: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """fit(image, text) then transform both; returns (image', text')."""
        self.fit(image, text, text_to_image)
        return self.transform(image, "image"), self.transform(text, "text")

    def inverse_transform(self, x: Any, modality: str = "image", *, out: np.ndarray | None = None,
                          chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """Undo `transform` for unit-norm original rows; only where the fixer is invertible."""
        if not self.invertible:
            raise GapkitError(f"fixer '{self.name}' has no inverse_transform (it discards information)")
        a = self._check_input(x, modality)
        return map_rows(a, lambda u, start: self._inverse(u, modality), f"{modality} embeddings",
                        out=out, chunk=chunk_size)

    @property
    def invertible(self) -> bool:
        return type(self)._inverse is not Fixer._inverse

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "dim_")

    def save(self, path: str | Path) -> Path:
        """Write the fitted fixer to directory `path` (fixer.json + arrays.safetensors), atomically."""
        self._require_fitted()
        from safetensors.numpy import save_file

        scalars, arrays = self._fitted_state()
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "params": self.get_params(), "attributes": scalars, "arrays": sorted(arrays)}
        with atomic_dir(path) as tmp:
            (tmp / "fixer.json").write_text(dumps_json(meta) + "\n", encoding="utf-8")
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "arrays.safetensors"))
            self.save_extra(tmp)
        return Path(path)

    def save_extra(self, tmp: Path) -> None:
        """Write state that is not an attribute (e.g. a chain's fitted steps) into the folder being
        saved; `load_extra` reads it back. Nothing by default."""

    def load_extra(self, path: Path) -> None:
        """Read what `save_extra` wrote (called by `load_fixer` after the attributes are restored)."""

    # ------------------------------------------------------------------ for subclasses
    def _fit(self, image: np.ndarray, text: np.ndarray, mapping: np.ndarray | None) -> None:
        raise NotImplementedError

    def _fit_stats(self, stats: Any) -> None:
        raise NotImplementedError

    def _transform(self, u: np.ndarray, modality: str) -> np.ndarray:
        raise NotImplementedError

    def _inverse(self, u: np.ndarray, modality: str) -> np.ndarray:
        raise NotImplementedError

    def _transform_chunk(self, u: np.ndarray, modality: str, start: int) -> np.ndarray:
        """Transform rows [start, start + len(u)); override when the result depends on the row
        position (e.g. seeded noise)."""
        return self._transform(u, modality)

    # ------------------------------------------------------------------ helpers
    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise GapkitError(f"fixer '{self.name}' is not fitted: call fit(image, text) first")

    def _check_input(self, x: Any, modality: str) -> np.ndarray:
        self._require_fitted()
        if modality not in self.modalities:
            raise GapkitError(f"fixer '{self.name}': unknown modality '{modality}'; use one of "
                              f"{', '.join(self.modalities)}")
        return check_rows(x, f"{modality} embeddings", dim=self.dim_)

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Split fitted attributes into JSON scalars and arrays (dicts of arrays are flattened
        with '.' in the key: tables_ = {"a": arr} -> "tables_.a")."""
        scalars: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for k, v in vars(self).items():
            if not _ATTR_RE.match(k):
                continue
            if isinstance(v, np.ndarray):
                arrays[k] = v
            elif isinstance(v, dict) and v and all(isinstance(a, np.ndarray) for a in v.values()):
                for sub, a in v.items():
                    arrays[f"{k}.{sub}"] = a
            else:
                scalars[k] = v
        return scalars, arrays


def _restore_state(fx: Fixer, scalars: dict[str, Any], arrays: dict[str, np.ndarray], where: Path) -> None:
    for k, v in scalars.items():
        if not _ATTR_RE.match(k):
            raise GapkitError(f"{where}: invalid attribute name '{k}'")
        setattr(fx, k, v)
    for key, a in arrays.items():
        attr, _, sub = key.partition(".")
        if not _ATTR_RE.match(attr):
            raise GapkitError(f"{where}: invalid array name '{key}'")
        if sub:
            d = getattr(fx, attr, None)
            if not isinstance(d, dict):
                d = {}
                setattr(fx, attr, d)
            d[sub] = a
        else:
            setattr(fx, attr, a)


def load_fixer(path: str | Path) -> Fixer:
    """Load a fixer saved with `Fixer.save(path)` (JSON + safetensors; nothing is unpickled)."""
    from safetensors.numpy import load_file

    from .registry import create_fixer

    p = Path(path)
    meta_path, arr_path = p / "fixer.json", p / "arrays.safetensors"
    if not meta_path.is_file() or not arr_path.is_file():
        raise GapkitError(f"{p}: not a saved fixer (expected fixer.json and arrays.safetensors)")
    meta = read_json_object(meta_path, "fixer file")
    if meta.get("format") != FORMAT:
        raise GapkitError(f"{meta_path}: not a gapkit fixer file")
    version, params, attributes = meta.get("version"), meta.get("params") or {}, meta.get("attributes") or {}
    if isinstance(version, bool) or not isinstance(version, int):
        raise GapkitError(f"{meta_path}: invalid fixer file ('version' must be an integer, got {version!r})")
    if version > FORMAT_VERSION:
        raise GapkitError(f"{meta_path}: written by a newer gapkit (format version {version})")
    if not isinstance(params, dict) or not isinstance(attributes, dict):
        raise GapkitError(f"{meta_path}: invalid fixer file ('params' and 'attributes' must be objects)")
    fx = create_fixer(str(meta.get("name")), **params)
    with reading(arr_path, "saved fixer arrays"):
        arrays = dict(load_file(str(arr_path)))
    _restore_state(fx, attributes, arrays, p)
    fx.load_extra(p)
    if not fx.is_fitted:
        raise GapkitError(f"{p}: the saved fixer has no fitted state")
    with reading(p, "saved fixer (its arrays do not fit together)"):
        _probe(fx)
    return fx


def _probe(fx: Fixer) -> None:
    """Transform one unit row per modality: a tampered fixer (arrays of the wrong shape, a
    dimension that is not an integer) fails here, at load time, not in the middle of a job."""
    dim = fx.dim_
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise GapkitError(f"dim_ must be a positive integer, got {dim!r}")
    row = np.full((1, dim), 1.0 / np.sqrt(dim), dtype=np.float32)
    for modality in fx.modalities:
        try:
            out = np.asarray(fx.transform(row, modality=modality))
        except GapkitError:  # a score fixer (calibrated) says it has no embedding transform
            return
        if out.ndim != 2 or out.shape[0] != 1 or not np.all(np.isfinite(out)):
            raise GapkitError(f"transform of a probe {modality} row gave shape {out.shape} or non-finite values")


__all__ = ["Fixer", "load_fixer", "DEFAULT_CHUNK"]
