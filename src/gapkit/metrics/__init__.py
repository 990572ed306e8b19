"""Modality-gap metrics: pure functions, streaming accumulators and `measure` (docs/metrics.md).

Every function takes NumPy arrays or torch tensors, image (N, D), text (M, D) and an optional
(M,) text_to_image map; rows are L2-normalised inside. Importing this package needs NumPy only
(scikit-learn is imported by linear_separability when it runs).
"""
from __future__ import annotations

from .bootstrap import bootstrap_ci, geometry_bootstrap
from .class_prompts import class_prompt_metrics, class_prompt_pairs
from .cosines import cosine_distributions, cosine_summary
from .distribution import distribution_metrics, mmd_rbf, sliced_wasserstein
from .entropy import logit_entropy
from .gapstats import gap_statistics
from .geometry import (GeometryAccumulator, alignment_loss, centroid_cosine, centroid_distance, cone_cosine_mean, gap_vector,
                       geometry_metrics, paired_cosine_mean, paired_distance_mean, rmg)
from .null import permutation_null
from .pairwise import cone_cosine_min, uniformity
from .report import FAMILIES, measure
from .retrieval import recall_at_k, retrieval_metrics
from .separability import linear_separability
from .spectrum import effective_rank, gap_dimension_shares, rank, singular_values, spectrum_metrics
from .streaming import StreamAccumulator, measure_stream

__all__ = [
    "measure", "measure_stream", "FAMILIES", "StreamAccumulator", "GeometryAccumulator",
    "centroid_distance", "centroid_cosine", "gap_vector", "paired_cosine_mean", "paired_distance_mean", "alignment_loss",
    "cone_cosine_mean", "cone_cosine_min", "rmg", "geometry_metrics", "uniformity", "recall_at_k", "retrieval_metrics",
    "linear_separability", "logit_entropy", "singular_values", "effective_rank", "rank", "gap_dimension_shares",
    "spectrum_metrics", "gap_statistics", "mmd_rbf", "sliced_wasserstein", "distribution_metrics",
    "cosine_distributions", "cosine_summary", "class_prompt_metrics", "class_prompt_pairs", "bootstrap_ci", "geometry_bootstrap", "permutation_null",
]
