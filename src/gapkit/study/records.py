"""The study's records: every one names the model, the dataset, the split and the fixer.

    gap/record.json               kind "measure": the gap of all pairs (CIs, bias, permutation null)
    evaluations/<arm>.json        kind "evaluate", task "held-out": one per arm (raw and every fixer),
                                  flat keys KEY, KEY_ci_low/high, KEY_diff, KEY_diff_ci_low/high
    study.json                    kind "study": the comparison table, warnings, evidence, recommendation
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..records import new_record, save_record

TASK = "held-out"
GAP_KEYS = ("centroid_distance", "centroid_distance_ci_low", "centroid_distance_ci_high", "centroid_distance_bias",
            "centroid_distance_null_p95", "centroid_distance_p_value", "linear_separability")
# Columns of the report's comparison table, in this order when present.
TABLE_KEYS = ("mixed_ndcg@10", "mixed_image_share@10", "t2i_recall@1", "i2t_recall@1", "t2i_recall@10",
              "zero_shot_acc1")


def split_text(split: dict[str, Any]) -> str:
    """'5-fold by image (seed 0)' or '50% calibration / 50% evaluation by image (seed 0)'."""
    if split.get("description"):
        return str(split["description"])
    if split.get("folds"):
        return f"{split['folds']}-fold by image (seed {split['seed']})"
    f = split["calib_fraction"]
    return f"{f:.0%} calibration / {1 - f:.0%} evaluation by image (seed {split['seed']})"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in label)


def write_study(out: Path, data: Any, gap: dict[str, float], table: dict[str, dict[str, float]],
                split: dict[str, Any], specs: dict[str, tuple[str, dict[str, Any]]], advice: dict[str, Any], *,
                seed: int, n_boot: int, n_perm: int, seconds: float) -> list[dict[str, Any]]:
    """Write every record under `out`; return them (the study record last)."""
    names = {"model": data.model, "dataset": data.dataset}
    inputs = {**names, **data.inputs}
    where = split_text(split)
    pe = data.pairs
    records = []
    gap_rec = new_record("measure", title=f"Gap of {data.model} on {data.dataset} (all {pe.n_image} images)",
                         seed=seed, inputs=inputs, results=gap, params={"n_boot": n_boot, "n_perm": n_perm},
                         n_image=pe.n_image, n_text=pe.n_text, dim=pe.dim, **names)
    save_record(gap_rec, out / "gap" / "record.json")
    records.append(gap_rec)
    for arm, row in table.items():
        fixer = None if arm == "raw" else arm
        params = {"split": split, "fixer_spec": None if fixer is None else {"name": specs[arm][0], **specs[arm][1]}}
        title = (f"raw embeddings, held-out: {data.model} on {data.dataset}" if fixer is None else
                 f"{arm} vs raw, held-out: {data.model} on {data.dataset}")
        rec = new_record("evaluate", title=title, seed=seed, inputs=inputs, params=params, results=row,
                         task=TASK, fixer=fixer, split=where, metrics=row, pretrained=None, **names)
        save_record(rec, out / "evaluations" / f"{_slug(arm)}.json")
        records.append(rec)
    study = new_record(
        "study", title=f"Study: {data.model} on {data.dataset} ({where})", seed=seed, inputs=inputs,
        params={"split": split, "fixers": {k: {"name": n, **p} for k, (n, p) in specs.items()}, "n_boot": n_boot,
                "n_perm": n_perm},
        results={"recommendation": advice["recommendation"], "best": advice["best"], "warnings": advice["warnings"],
                 "evidence": advice["evidence"], "table": table,
                 "gap_summary": {k: gap[k] for k in GAP_KEYS if k in gap},
                 "split": where, "seconds": seconds},
        **names)
    save_record(study, out / "study.json")
    records.append(study)
    return records
