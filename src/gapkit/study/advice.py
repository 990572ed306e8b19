"""The study's plain-language verdict: warnings, one line of evidence per fixer, a recommendation.

Rules (all on held-out queries, differences paired with raw, 95 % CIs from gapkit.evaluate.compare):
- a fixer HELPS when the CI of its mixed NDCG@10 difference lies above 0;
- it HURTS retrieval when the CI of its text->image or image->text R@1 difference lies below 0
  (else retrieval is "unchanged": the CI contains 0);
- the recommendation is the helping fixer with the largest mixed NDCG@10 gain that does not hurt
  retrieval (else the largest gain, with the retrieval cost stated); none helps -> keep raw.
Warnings: fewer than MIN_EVAL_IMAGES held-out images (wide CIs); raw text->image R@10 whose CI
reaches chance (10 / images: a fix ranking then means nothing, and no fixer is recommended);
a gap that the permutation null cannot tell from noise.
"""
from __future__ import annotations

from typing import Any

MIN_EVAL_IMAGES = 100
PRIMARY = "mixed_ndcg@10"
RETRIEVAL = ("t2i_recall@1", "i2t_recall@1")
NAMES = {"mixed_ndcg@10": "mixed NDCG@10", "t2i_recall@1": "text->image R@1", "i2t_recall@1": "image->text R@1",
         "zero_shot_acc1": "zero-shot accuracy"}


def _diff(row: dict[str, float], key: str) -> str:
    from ..evaluate.compare import difference_text

    return difference_text(row, key)


def _hurts(row: dict[str, float], key: str) -> bool:
    return row.get(f"{key}_diff_ci_high", 0.0) < 0


def evidence(label: str, row: dict[str, float], raw_gap: float | None) -> str:
    """'role-center: mixed NDCG@10 +0.21 [+0.15, +0.27], gap 0.86 -> 0.05; retrieval unchanged (...)'."""
    parts = [f"{NAMES[PRIMARY]} {_diff(row, PRIMARY)}"] if f"{PRIMARY}_diff" in row else []
    if raw_gap is not None and "heldout_centroid_distance" in row:
        parts[-1:] = [", ".join(parts[-1:] + [f"gap {raw_gap:.2f} -> {row['heldout_centroid_distance']:.2f}"])]
    keys = [k for k in RETRIEVAL if f"{k}_diff" in row]
    if keys:
        hurt = [k for k in keys if _hurts(row, k)]
        detail = ", ".join(f"{NAMES[k]} {_diff(row, k)}" for k in keys)
        parts.append(f"retrieval {'worse' if hurt else 'unchanged'} ({detail})")
    else:
        parts.append("embeddings unchanged (scores only)")
    if "zero_shot_acc1_diff" in row:
        parts.append(f"{NAMES['zero_shot_acc1']} {_diff(row, 'zero_shot_acc1')}")
    return f"{label}: " + "; ".join(parts)


def _warnings(gap: dict[str, float], table: dict[str, dict[str, float]], split: dict[str, Any],
              skipped: dict[str, str]) -> tuple[list[str], bool]:
    """(warnings, at_chance)."""
    out = []
    n_eval = sum(split["n_evaluation_images"])
    if n_eval < MIN_EVAL_IMAGES:
        out.append(f"only {n_eval} held-out images: confidence intervals are wide and small differences "
                   f"cannot be told from noise (use more data, or --folds K to evaluate every image once)")
    raw = table["raw"]
    per_fold = n_eval / max(len(split["n_evaluation_images"]), 1)
    chance = min(1.0, 10.0 / max(per_fold, 1.0))
    at_chance = raw.get("t2i_recall@10_ci_low", 1.0) <= chance
    if at_chance:
        out.append(f"the raw model retrieves at chance here (text->image R@10 {raw.get('t2i_recall@10', float('nan')):.2f}, "
                   f"95 % CI from {raw.get('t2i_recall@10_ci_low', float('nan')):.2f}; chance {chance:.2f}): "
                   "a fixer ranking means nothing")
    p = gap.get("centroid_distance_p_value")
    if p is not None and p > 0.05:
        out.append(f"the centroid distance {gap['centroid_distance']:.3f} is within what noise gives (p = {p:.2g}; "
                   f"null 95th percentile {gap['centroid_distance_null_p95']:.3f}): no gap to close")
    out += [f"fixer {k} was not evaluated: {v}" for k, v in skipped.items()]
    return out, at_chance


def advise(gap: dict[str, float], table: dict[str, dict[str, float]], pe: Any, split: dict[str, Any],
           skipped: dict[str, str], has_zero_shot: bool = False) -> dict[str, Any]:
    """{"warnings": [...], "evidence": [...], "recommendation": str, "best": label or None}."""
    warnings, at_chance = _warnings(gap, table, split, skipped)
    raw_gap = table["raw"].get("heldout_centroid_distance")
    fixers = {k: v for k, v in table.items() if k != "raw"}
    lines = [evidence(k, v, raw_gap) for k, v in fixers.items()]
    helps = sorted((k for k, v in fixers.items() if v.get(f"{PRIMARY}_diff_ci_low", 0.0) > 0),
                   key=lambda k: -fixers[k][f"{PRIMARY}_diff"])
    safe = [k for k in helps if not any(_hurts(fixers[k], r) for r in RETRIEVAL)]
    best = (safe or helps or [None])[0]
    if at_chance:
        rec, best = "no recommendation: the raw model retrieves at chance on this data (see the warnings)", None
    elif best is None:
        top = max(fixers, key=lambda k: fixers[k].get(f"{PRIMARY}_diff", float("-inf")), default=None)
        rec = "keep the raw embeddings: no fixer improved mixed NDCG@10 beyond noise"
        if top is not None and f"{PRIMARY}_diff" in fixers[top]:
            rec += f" (best: {top} {_diff(fixers[top], PRIMARY)})"
    else:
        rec = evidence(best, fixers[best], raw_gap)
        if best not in safe:
            rec += " (no fixer improved mixed retrieval without a retrieval cost)"
    return {"warnings": warnings, "evidence": lines, "recommendation": rec, "best": best}
