"""Does closing the gap help? Zero-shot classification, cross-modal, mixed-modality and
intra-modal retrieval, linear probe and denigration rates, each returning a flat dict of metrics
(CLIP_benchmark key names) that `evaluation_record` wraps into one JSON record per
(model, dataset, task).
"""
from __future__ import annotations

from .fairness import denigration
from .mixed import MixedCorpus, corpus_from_pairs, mixed_retrieval
from .probe import linear_probe
from .records import evaluation_record
from .retrieval import intra_modal_retrieval, retrieval
from .zeroshot import TEMPLATES, build_classifier, ensemble, prompts, zero_shot

__all__ = [
    "zero_shot", "build_classifier", "ensemble", "prompts", "TEMPLATES", "retrieval", "intra_modal_retrieval",
    "mixed_retrieval", "corpus_from_pairs", "MixedCorpus", "linear_probe", "denigration", "evaluation_record",
]
