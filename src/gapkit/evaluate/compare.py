"""Raw vs fixer on the same held-out queries: each arm's value with its 95 % CI and the PAIRED
difference (fixer - raw) with its 95 % CI.

A fixer changes every query's result a little; whether that is more than noise can only be
judged on the same queries. So every evaluation is first computed per query (per text query,
per image query, per mixed-corpus query, per zero-shot image), then

    arm value  = mean over queries   CI: Wilson for 0/1 values (recall, accuracy), else BCa
    difference = mean_q (fixer_q - raw_q)   CI: BCa bootstrap over queries (both arms resampled
                                                together), see gapkit.metrics.bootstrap

Flat keys (what records and `gapkit build` tables carry), for every metric KEY:
    KEY, KEY_ci_low, KEY_ci_high                       the arm's value
    KEY_diff, KEY_diff_ci_low, KEY_diff_ci_high        fixer - raw (fixer arms only)
Metric keys: t2i_recall@K, i2t_recall@K (the vocabulary of gapkit measure), mixed_ndcg@10,
mixed_recall@K, mixed_image_share@10, mixed_image_recall@K / mixed_text_recall@K (queries with a
relevant document of that role), zero_shot_acc1.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..embeddings import PairedEmbeddings
from ..metrics.bootstrap import DEFAULT_N_BOOT, Interval, mean_interval, paired_difference

DEFAULT_KS = (1, 5, 10)
MIXED_KEYS = ("ndcg@10", "recall@1", "recall@10", "image_share@10", "image_recall@10", "text_recall@10")


def _apply(fixer: Any, x: np.ndarray, modality: str) -> np.ndarray:
    """Rows through an embedding fixer (unchanged for None or a score fixer)."""
    if fixer is None or getattr(fixer, "acts_on", "embeddings") != "embeddings":
        return np.asarray(x)
    return np.asarray(fixer.transform(x, modality))


def retrieval_per_query(test: PairedEmbeddings, fixer: Any = None,
                        ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """t2i_recall@K (M,) and i2t_recall@K (images with a caption,) as 0/1 per query."""
    from ..metrics._prep import prepare
    from ..metrics.retrieval import i2t_ranks, t2i_ranks

    p = prepare(_apply(fixer, test.image, "image"), _apply(fixer, test.text, "text"), test.text_to_image)
    r_t2i, r_i2t = t2i_ranks(p), i2t_ranks(p)  # 0-based: number of strictly better items
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"t2i_recall@{k}"] = (r_t2i < k).astype(np.float64)
        out[f"i2t_recall@{k}"] = (r_i2t < k).astype(np.float64)
    return out


def mixed_per_query_of(test: PairedEmbeddings, fixer: Any = None, seed: int = 0, ks: Sequence[int] = DEFAULT_KS,
                       query_fraction: float = 0.5, fused: bool = False, kind: str = "auto",
                       prefix: str = "mixed_", alpha: float = 0.5,
                       gains: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Per-query mixed-retrieval values on the protocol's corpus of `test` (MIXED_KEYS); alpha and
    gains as in gapkit.evaluate.mixed (fused-document image weight, graded relevance)."""
    from .mixed import mixed_per_query
    from .protocol import mixed_corpus

    per = mixed_per_query(mixed_corpus(test, seed, query_fraction, fused, alpha, gains), fixer, ks, kind)
    return {f"{prefix}{k}": v for k, v in per.items() if k in MIXED_KEYS}


def alpha_sweep(test: PairedEmbeddings, alphas: Sequence[float], fixer: Any = None, seed: int = 0,
                query_fraction: float = 0.5, gains: dict[str, float] | None = None, kind: str = "auto",
                n_boot: int = DEFAULT_N_BOOT) -> list[dict[str, float]]:
    """Mixed retrieval with fused documents at each image weight alpha (MixBench sweeps [0, 1]):
    one row per alpha with every metric, its 95 % CI and, with a fixer, the paired difference from
    raw on the same queries. The corpus (queries, documents) is the same at every alpha; only the
    fused documents change."""
    rows = []
    for a in alphas:
        run = lambda f: mixed_per_query_of(test, f, seed, query_fraction=query_fraction, fused=True,  # noqa: E731
                                           kind=kind, prefix="", alpha=float(a), gains=gains)
        raw = run(None)
        rows.append({"alpha": float(a), **uncertainty(raw, None if fixer is None else run(fixer), n_boot, seed)})
    return rows


def zero_shot_per_query(image: np.ndarray, labels: np.ndarray, classifier: np.ndarray,
                        fixer: Any = None) -> dict[str, np.ndarray]:
    """zero_shot_acc1 (N,) 0/1: images and class prompts (C, D) or (C, T, D) through the fixer."""
    from .zeroshot import zero_shot_ranks

    cls = np.asarray(classifier)
    flat = _apply(fixer, cls.reshape(-1, cls.shape[-1]), "text").reshape(cls.shape[:-1] + (-1,))
    rank = zero_shot_ranks(_apply(fixer, image, "image"), labels, flat)[0]
    return {"zero_shot_acc1": (rank <= 1).astype(np.float64)}


def per_query(test: PairedEmbeddings, fixer: Any = None, *, seed: int = 0, ks: Sequence[int] = DEFAULT_KS,
              tasks: Sequence[str] = ("retrieval", "mixed-retrieval"), labels: np.ndarray | None = None,
              classifier: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-query values of every evaluation of held-out pairs (raw when fixer is None): retrieval,
    the protocol's mixed corpus, and zero-shot when image labels (N,) and a classifier are given.
    A score fixer (acts_on "scores") only changes the mixed ranking."""
    out: dict[str, np.ndarray] = {}
    if "retrieval" in tasks:
        out.update(retrieval_per_query(test, fixer, ks))
    if "mixed-retrieval" in tasks:
        out.update(mixed_per_query_of(test, fixer, seed, ks))
    if labels is not None and classifier is not None:
        labelled = np.asarray(labels) >= 0  # -1 = an image without a class (left out of zero-shot)
        if labelled.any():
            out.update(zero_shot_per_query(np.asarray(test.image)[labelled], np.asarray(labels)[labelled],
                                           classifier, fixer))
    return out


def uncertainty(raw: dict[str, np.ndarray], fixed: dict[str, np.ndarray] | None, n_boot: int = DEFAULT_N_BOOT,
                seed: int = 0) -> dict[str, float]:
    """summarize(raw) without a fixer, compare(raw, fixed) with one."""
    return summarize(raw, n_boot, seed) if fixed is None else compare(raw, fixed, n_boot, seed)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop queries where either arm has no value (NaN: no relevant document of a role)."""
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def summarize(values: dict[str, np.ndarray], n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> dict[str, float]:
    """KEY, KEY_ci_low, KEY_ci_high of one arm (NaN queries dropped), plus n_queries_KEY."""
    out: dict[str, float] = {}
    for key, v in values.items():
        v = v[np.isfinite(v)]
        if v.size:
            out.update(mean_interval(v, n_boot, seed).as_dict(key))
            out.pop(f"{key}_bias", None)  # a mean of per-query values is unbiased
            out[f"n_queries_{key}"] = int(v.size)
    return out


def compare(raw: dict[str, np.ndarray], fixed: dict[str, np.ndarray], n_boot: int = DEFAULT_N_BOOT,
            seed: int = 0) -> dict[str, float]:
    """The fixer arm's KEY / KEY_ci_* and KEY_diff / KEY_diff_ci_* against raw, same queries."""
    out: dict[str, float] = {}
    for key in fixed:
        if key not in raw or raw[key].shape != fixed[key].shape:
            continue
        a, b = _pair(raw[key], fixed[key])
        if not a.size:
            continue
        res = paired_difference(a, b, n_boot, seed)
        out.update({k: v for k, v in res["other"].as_dict(key).items() if not k.endswith("_bias")})
        d: Interval = res["diff"]
        out.update({f"{key}_diff": d.estimate, f"{key}_diff_ci_low": d.low, f"{key}_diff_ci_high": d.high})
        out[f"n_queries_{key}"] = int(a.size)
    return out


def difference_text(results: dict[str, float], key: str, digits: int = 2) -> str:
    """'+0.21 [+0.15, +0.27]' for KEY_diff of a compare() result ('' when absent)."""
    if f"{key}_diff" not in results:
        return ""
    return Interval(results[f"{key}_diff"], results[f"{key}_diff_ci_low"],
                    results[f"{key}_diff_ci_high"]).text(digits, signed=True)


def excludes_zero(results: dict[str, float], key: str) -> bool:
    """True when the CI of KEY_diff lies entirely above or below 0."""
    lo, hi = results.get(f"{key}_diff_ci_low"), results.get(f"{key}_diff_ci_high")
    return lo is not None and hi is not None and (lo > 0 or hi < 0)
