"""Fixers over shard folders: fit from merged statistics, apply shard by shard on an engine.

    fx = fit_sharded(create_fixer("center"), "calib_shards/", engine="ray")   # one task per shard
    summary = fix_shards(fx, "data_shards/", "fixed_shards/", engine="ray")  # same layout out

Fitting: each task computes the FitStats of its shard (gapkit.fixers.stats), the engine merges
them in a tree, the driver fits with `fit_from_stats`; the fitted fixer equals one fitted on all
rows at once (float64 rounding). Applying: each task reads one shard, transforms both modalities
(with the shard's global first row, so seeded fixers match a single pass) and writes the shard in
the layout it came in. The output folder is written through `atomic_dir`: it appears whole when
every shard is done, and a failed run leaves nothing under the final name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GapkitError
from ._stream import DEFAULT_CHUNK
from .base import Fixer
from .stats import FitStats, fit_stats, merge_fit_stats


@dataclass(frozen=True)
class _StatsJob:
    shard: Any  # gapkit.shards.Shard
    cross: bool
    chunk: int
    fuse_weight: float | None = None


@dataclass(frozen=True)
class _ApplyJob:
    shard: Any
    fixer: Fixer
    src_root: str
    out_root: str
    chunk: int


def shard_fit_stats(job: _StatsJob) -> FitStats:
    """FitStats of one shard (runs on a worker)."""
    from ..shards import read_shard

    image, text = read_shard(job.shard)
    return fit_stats(image, text, cross=job.cross, chunk=job.chunk, fuse_weight=job.fuse_weight)


def apply_to_shard(job: _ApplyJob) -> dict[str, Any]:
    """Transform one shard and write it under out_root; returns its row count and the sums of its
    unit rows before and after (for the driver's gap summary)."""
    from ..shards import read_shard, write_like
    from ._stream import mean_of_normalized

    image, text = read_shard(job.shard)
    first = job.shard.first_row
    img2 = job.fixer.transform(image, "image", chunk_size=job.chunk, first_row=first)
    txt2 = job.fixer.transform(text, "text", chunk_size=job.chunk, first_row=first)
    write_like(job.shard, job.src_root, job.out_root, img2, txt2)
    n = image.shape[0]
    return {"rows": n, "before": (mean_of_normalized(image, "image") - mean_of_normalized(text, "text")) * n,
            "after": (mean_of_normalized(img2, "image") - mean_of_normalized(txt2, "text")) * n}


def _with_engine(engine: Any, address: str | None, progress: bool) -> tuple[Any, bool]:
    from ..engines import get_engine

    eng = get_engine(engine, address=address, progress=progress)
    return eng, eng is not engine


def fit_sharded(fixer: Fixer, folder: str | Path, *, engine: Any = "local", address: str | None = None,
                chunk: int = DEFAULT_CHUNK, progress: bool = False) -> Fixer:
    """Fit `fixer` on every shard of `folder` from merged statistics (see module doc)."""
    from ..shards import list_shards

    if not fixer.fits_from_stats:
        raise GapkitError(f"fixer '{fixer.name}' needs the calibration rows themselves; fit it on a calibration "
                          "file (--fit FILE) instead of a shard folder")
    jobs = [_StatsJob(s, fixer.needs_cross, chunk, fixer.stats_fuse_weight) for s in list_shards(folder)]
    eng, owned = _with_engine(engine, address, progress)
    try:
        stats = eng.map_reduce(shard_fit_stats, jobs, merge_fit_stats, desc="fit")
    finally:
        if owned:
            eng.close()
    return fixer.fit_from_stats(stats)


def fix_shards(fixer: Fixer, folder: str | Path, out: str | Path, *, engine: Any = "local",
               address: str | None = None, chunk: int = DEFAULT_CHUNK, progress: bool = False) -> dict[str, Any]:
    """Apply a fitted `fixer` to every shard of `folder`, writing `out` in the same layout.

    Returns {"shards", "rows", "gap_before", "gap_after"} (centroid distances over all rows).
    """
    from ..atomic import atomic_dir, check_replaceable_dir
    from ..shards import list_shards

    if not fixer.is_fitted:
        raise GapkitError(f"fixer '{fixer.name}' is not fitted: call fit(image, text) first")
    if Path(out).resolve() == Path(folder).resolve():
        raise GapkitError(f"the output {out} is also the input; choose another output folder")
    shards = list_shards(folder)
    check_replaceable_dir(out)  # before any work
    eng, owned = _with_engine(engine, address, progress)
    try:
        with atomic_dir(out) as tmp:
            jobs = [_ApplyJob(s, fixer, str(folder), str(tmp), chunk) for s in shards]
            parts = eng.map(apply_to_shard, jobs, desc="fix")
    finally:
        if owned:
            eng.close()
    n = sum(p["rows"] for p in parts)
    before = np.sum([p["before"] for p in parts], axis=0) / n
    after = np.sum([p["after"] for p in parts], axis=0) / n
    return {"shards": len(shards), "rows": n, "gap_before": float(np.linalg.norm(before)),
            "gap_after": float(np.linalg.norm(after))}


__all__ = ["fit_sharded", "fix_shards", "shard_fit_stats", "apply_to_shard"]
