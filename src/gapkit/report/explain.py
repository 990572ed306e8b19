"""Plain-language explanations of the gap metrics, for readers who have not read the papers.

`METRICS[key]` gives a label, what the number is, its range and the reference values of the
papers; `interpret(key, value, p_value=..., null_p95=...)` turns one measured value into a sentence
("0.82: a large gap ..."). With a permutation null (gapkit.metrics.null) a value that noise alone
reaches (p > 0.05) is called "not distinguishable from noise", never graded as a gap.
Keys follow docs/metrics.md (centroid_distance, paired_cosine_mean, rmg, ...); recall@K keys are
matched by prefix (i2t_recall@1, t2i_recall@5, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class MetricInfo:
    label: str
    meaning: str           # what the number is, in one or two sentences
    scale: str             # range and which way is "more gap"
    grade: Callable[[float], str] | None = None  # value -> short verdict


def _bins(*edges: tuple[float, str], last: str) -> Callable[[float], str]:
    """Verdict by thresholds: the first (edge, text) with value < edge, else `last`."""
    def grade(v: float) -> str:
        for edge, text in edges:
            if v < edge:
                return text
        return last
    return grade


METRICS: dict[str, MetricInfo] = {
    "centroid_distance": MetricInfo(
        "Centroid distance",
        "Distance between the average image embedding and the average text embedding (every row "
        "scaled to length 1 first). It is the size of the modality gap as Liang et al. (2022) define it.",
        "0 = the two clouds share a centre; 2 = opposite poles. CLIP ViT-B/32 on COCO: 0.82 "
        "(Liang); the bundled CLIP ViT-B/16 sample: 0.85. A value of 0.8 means the centre of the "
        "images is further from the centre of the texts than a typical image is from its own "
        "centre (about 0.7 for CLIP): the two clouds barely overlap, so a caption is typically "
        "nearer to unrelated captions than to its own image (98 % of captions in that sample).",
        _bins((0.1, "negligible gap: images and texts share one region"),
              (0.3, "small gap"), (0.6, "moderate gap: the two clouds overlap only partly"),
              last="large gap: images and texts sit in separate regions")),
    "centroid_cosine": MetricInfo(
        "Centroid cosine",
        "Cosine of the angle between the average image embedding and the average text embedding: "
        "whether the two clouds lean the same way, independent of how tight each cloud is "
        "(Fahim et al. 2024). Centroid distance mixes this angle with the clouds' tightness "
        "(||mean|| grows with the cone); the cosine isolates the direction.",
        "-1 to 1; 1 = the two clouds point the same way (no directional gap), 0 = their centres are "
        "at right angles, negative = opposite sides. The bundled CLIP ViT-B/16 sample: 0.31 "
        "(centroid distance 0.85); the same architecture at random init: 0.04.",
        _bins((0.2, "the two clouds point in nearly unrelated directions: a strong gap"),
              (0.5, "the clouds lean apart: a clear gap"), (0.8, "the clouds mostly share a direction"),
              last="the clouds point the same way: little directional gap")),
    "paired_cosine_mean": MetricInfo(
        "Matched-pair cosine",
        "Average cosine similarity between each image and its own caption (the 'alignment score').",
        "-1 to 1; higher = matched pairs closer. CLIP: about 0.3 here; AlignCLIP reports 0.47 -> 0.67 "
        "after closing the gap. Compare it with the cosine between two captions of one image.",
        _bins((0.2, "low: a caption is far from its own image"), (0.4, "typical of a gapped model"),
              (0.6, "high"), last="very high: pairs nearly coincide")),
    "paired_distance_mean": MetricInfo(
        "Matched-pair distance", "Average Euclidean distance between an image and its caption.",
        "0 to 2; lower = closer pairs.", None),
    "rmg": MetricInfo(
        "Relative modality gap (RMG)",
        "Distance of matched image-text pairs relative to the typical distance inside each modality: "
        "m / (m + (a + b)/2), with cosine distances halved (Schrodi et al. 2025).",
        "0 to 1; 0.5 = a caption is as far from its image as two images are from each other; "
        "towards 1 = the cross-modal distance dominates (a gap).",
        _bins((0.35, "small: pairs are closer than random same-modality rows"),
              (0.55, "moderate"), last="large: crossing modalities costs more than changing content")),
    "linear_separability": MetricInfo(
        "Linear separability",
        "Held-out accuracy of a linear classifier that guesses whether an embedding came from an "
        "image or a text.",
        "0.5 = the modalities are indistinguishable (no gap); 1.0 = a single hyperplane separates "
        "them perfectly (Shi et al.: 100 % for CLIP on COCO, even trained on 0.1 % of the data).",
        _bins((0.6, "modalities indistinguishable"), (0.9, "partly separable"),
              last="perfectly separable: a gap")),
    "image_cone_cosine_mean": MetricInfo(
        "Image cone (mean cosine)", "Average cosine between two different images.",
        "0 = spread over the sphere; 1 = all in one direction (a narrow cone, Liang Fig. 2a).", None),
    "text_cone_cosine_mean": MetricInfo(
        "Text cone (mean cosine)", "Average cosine between two different texts.",
        "0 = spread over the sphere; 1 = all in one direction (a narrow cone).", None),
    "uniformity_image": MetricInfo(
        "Uniformity (images)", "log mean exp(-2 ||u_i - u_j||^2) over pairs of images (Wang & Isola 2020).",
        "about -4 = spread uniformly over a high-dimensional sphere; 0 = collapsed to one point.", None),
    "uniformity_text": MetricInfo(
        "Uniformity (texts)", "The same for pairs of texts.",
        "about -4 = uniform; 0 = collapsed.", None),
    "uniformity_cross": MetricInfo(
        "Cross-modal uniformity", "The same for (image, non-matching text) pairs.",
        "more negative = the two modalities are spread over each other.", None),
    "alignment_loss": MetricInfo(
        "Alignment loss", "Mean squared distance between matched pairs: 2 - 2 x matched cosine.",
        "0 = pairs coincide; 4 = opposite.", None),
    "effective_rank": MetricInfo(
        "Effective rank", "exp(entropy of the normalised singular values): how many directions are used.",
        "1 to D; low = the embeddings live in few dimensions.", None),
    "logit_entropy": MetricInfo(
        "Logit entropy", "Average entropy of softmax(s x_i Y^T): how peaked image-to-text predictions are.",
        "0 = confident; log(M) = uniform guessing.", None),
    "zero_shot_accuracy": MetricInfo(
        "Zero-shot accuracy", "Share of images whose most similar class prompt is the right class.",
        "0 to 1; higher is better; chance = 1 / number of classes.", None),
    "ndcg@10": MetricInfo(
        "NDCG@10 (mixed-modality retrieval)",
        "Ranking quality when images and texts are searched together with one query.",
        "0 to 1; higher is better. A gap pushes every image below every text.", None),
}

_PREFIX_INFO = {
    "i2t_recall@": ("Image -> text recall@{k}", "Share of images whose caption is among the {k} nearest texts."),
    "t2i_recall@": ("Text -> image recall@{k}", "Share of captions whose image is among the {k} nearest images."),
}


def info(key: str) -> MetricInfo | None:
    """MetricInfo for a metric key, or None when gapkit has no explanation for it."""
    if key in METRICS:
        return METRICS[key]
    for prefix, (label, meaning) in _PREFIX_INFO.items():
        if key.startswith(prefix):
            k = key[len(prefix):]
            return MetricInfo(label.format(k=k), meaning.format(k=k), "0 to 1; higher is better.", None)
    return None


ALPHA = 0.05


def interpret(key: str, value: float, p_value: float | None = None, null_p95: float | None = None) -> str:
    """One sentence on what `value` of metric `key` means, or '' when there is nothing to say.

    p_value / null_p95 (from the modality-label permutation null): when p > ALPHA the value is
    within what noise gives, so no gap grade is given."""
    meta = info(key)
    if meta is None or meta.grade is None or value is None or not math.isfinite(float(value)):
        return ""
    v = float(value)
    null = "" if null_p95 is None else f"; noise alone reaches {float(null_p95):.3g} (95th percentile of a shuffled-label null)"
    if p_value is not None and math.isfinite(float(p_value)):
        if float(p_value) > ALPHA:
            return f"{v:.3g}: not distinguishable from noise (p = {float(p_value):.2g}{null})"
        return f"{v:.3g}: {meta.grade(v)} (p = {float(p_value):.2g}{null})"
    return f"{v:.3g}: {meta.grade(v)}"
