"""gapkit: measure, explain and close the modality gap of contrastive image-text models.

The top-level import is light (NumPy only); torch, open_clip, transformers and matplotlib are
imported by the subpackages that need them, when they are used.

    >>> import gapkit
    >>> pe = gapkit.load_sample("clip")          # real CLIP ViT-B/16 COCO embeddings (500 pairs)
    >>> gapkit.measure(pe.image, pe.text)["centroid_distance"]   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .embeddings import PairedEmbeddings, load_embeddings, save_embeddings  # noqa: E402
from .errors import GapkitError  # noqa: E402
from .samples import SAMPLES, load_sample, sample_path  # noqa: E402


def measure(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run the gap metrics (see `gapkit.metrics.measure`)."""
    from .metrics import measure as _measure

    return _measure(*args, **kwargs)


def measure_stream(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Stream shards in bounded memory, in process or with engine="ray" (see `gapkit.metrics.measure_stream`)."""
    from .metrics import measure_stream as _measure_stream

    return _measure_stream(*args, **kwargs)


__all__ = [
    "__version__", "PairedEmbeddings", "load_embeddings", "save_embeddings", "GapkitError",
    "measure", "measure_stream", "load_sample", "sample_path", "SAMPLES",
]
