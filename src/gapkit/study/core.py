"""`run_study`: how big is the gap of MY model on MY data, which fixer should I use, did it help?

Input: paired embeddings (computed once, e.g. by `gapkit embed` or the demo's towers) with the
names of the model and the dataset, optional class labels per image and zero-shot class prompt
embeddings. Steps (each a small function below):

1. gap     geometry metrics of all pairs with basic-bootstrap CIs and bias, and the
           modality-label permutation null (p-value, null 95th percentile), linear separability
2. split   images (captions follow) into calibration / evaluation parts with a seed, or K folds
           (every image is evaluated once, in the fold that holds it out): gapkit.evaluate.protocol
3. fit     every fixer on the calibration part only
4. eval    raw and each fixer on the held-out part, per query: retrieval both ways, the protocol's
           mixed corpus, zero-shot when labels and prompts exist (gapkit.evaluate.compare)
5. compare each fixer with raw on the same queries: per-arm value with CI, paired difference
           with CI; the centroid distance of the held-out part before and after the fixer
6. advise  warnings (too little data, retrieval at chance, no gap beyond noise) and one plain
           recommendation with its evidence (gapkit.study.advice)

Outputs (under out_dir): gap/record.json (kind "measure"), evaluations/<fixer>.json (kind
"evaluate", one per arm, flat keys with CIs and differences: `gapkit build` tables carry them),
study.json (kind "study": table, warnings, recommendation) and report.html.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..embeddings import PairedEmbeddings
from ..errors import GapkitError

# Label -> (fixer name, params). "calibrated" changes scores only (mixed retrieval); "noise" is a
# training-time augmentation (C3), not a post-hoc fix, so it is not compared here.
DEFAULT_FIXERS: dict[str, tuple[str, dict[str, Any]]] = {
    "shift": ("shift", {}),
    "center": ("center", {}),
    "role-center": ("role-center", {}),
    "standardize": ("standardize", {}),
    "topk": ("topk", {"k": 10}),
    "procrustes": ("procrustes", {}),
    "calibrated": ("calibrated", {}),
}
RAW = "raw"


@dataclass
class StudyData:
    """What a study needs: embeddings and their names, optionally labels and zero-shot prompts.

    labels: (N,) int class of each image; class_prompts: (C, T, D) prompt embeddings of the same
    model (raw, not normalised) in the order of class_names."""

    pairs: PairedEmbeddings
    model: str
    dataset: str
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    class_prompts: np.ndarray | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


def _say(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"gapkit study: {msg}", file=sys.stderr, flush=True)


def parse_fixers(spec: str | Sequence[str] | None) -> dict[str, tuple[str, dict[str, Any]]]:
    """'center,shift' (or a list) -> the labelled fixer specs; None = DEFAULT_FIXERS."""
    if spec is None:
        return dict(DEFAULT_FIXERS)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise GapkitError("--fixers is empty; give comma-separated fixer names")
    unknown = [n for n in names if n not in DEFAULT_FIXERS]
    if unknown:
        raise GapkitError(f"unknown fixer(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_FIXERS)}")
    return {n: DEFAULT_FIXERS[n] for n in names}


def measure_gap(pe: PairedEmbeddings, seed: int, n_boot: int, n_perm: int) -> dict[str, float]:
    """Step 1: geometry (CI, bias, permutation null) and linear separability of all pairs."""
    from ..metrics import measure

    return measure(pe, metrics=["geometry", "separability"], ci=True, null=True, n_boot=n_boot, n_perm=n_perm,
                   seed=seed)


def splits(pe: PairedEmbeddings, folds: int | None, calib_fraction: float,
           seed: int) -> Iterator[tuple[PairedEmbeddings, PairedEmbeddings]]:
    """Step 2: (calibration, evaluation) parts."""
    from ..evaluate.protocol import kfold_images, split_images

    if folds is not None:
        yield from kfold_images(pe, folds, seed)
    else:
        yield split_images(pe, calib_fraction, seed)


def fit_fixer(name: str, params: dict[str, Any], calib: PairedEmbeddings, seed: int) -> Any:
    """Step 3: one fixer fitted on the calibration part (gapkit.evaluate.protocol.fit_fixer)."""
    from ..evaluate.protocol import fit_fixer as fit
    from ..fixers import create_fixer

    return fit(create_fixer(name, **params), calib, seed)


def _gap_of(fx: Any, test: PairedEmbeddings) -> float:
    from ..evaluate.compare import _apply
    from ..metrics import centroid_distance

    return centroid_distance(_apply(fx, test.image, "image"), _apply(fx, test.text, "text"), test.text_to_image)


Part = tuple[PairedEmbeddings, PairedEmbeddings, "np.ndarray | None"]  # calibration, evaluation, its labels


def split_parts(data: StudyData, folds: int | None, calib_fraction: float, seed: int) -> list[Part]:
    """Step 2 with the labels of each evaluation part (looked up through image ids = row numbers)."""
    pe = data.pairs
    tagged = PairedEmbeddings(pe.image, pe.text, pe.text_to_image, image_ids=[str(i) for i in range(pe.n_image)])
    parts = []
    for calib, test in splits(tagged, folds, calib_fraction, seed):
        rows = np.asarray([int(i) for i in test.image_ids])
        parts.append((calib, test, None if data.labels is None else np.asarray(data.labels)[rows]))
    return parts


def evaluate_arms(data: StudyData, fixers: dict[str, tuple[str, dict[str, Any]]], parts: Sequence[Part],
                  seed: int, verbose: bool) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[float]],
                                                     dict[str, Any]]:
    """Steps 3-4: per-query values of every arm over the evaluation parts (concatenated across
    folds), the held-out centroid distance per part, and facts about the parts."""
    from ..evaluate.compare import per_query

    values: dict[str, dict[str, list[np.ndarray]]] = {}
    gaps: dict[str, list[float]] = {}
    facts: dict[str, Any] = {"n_calibration_images": [], "n_evaluation_images": [], "skipped_fixers": {}}
    for k, (calib, test, labels) in enumerate(parts):
        facts["n_calibration_images"].append(calib.n_image)
        facts["n_evaluation_images"].append(test.n_image)
        arms: dict[str, Any] = {RAW: None}
        for label, (name, params) in fixers.items():
            try:
                arms[label] = fit_fixer(name, params, calib, seed)
            except GapkitError as exc:  # e.g. too few rows for a fixer: say so, go on
                facts["skipped_fixers"][label] = str(exc)
        zs = labels if data.class_prompts is not None else None
        for label, fx in arms.items():
            scores_only = getattr(fx, "acts_on", "embeddings") == "scores"
            tasks = ("mixed-retrieval",) if scores_only else ("retrieval", "mixed-retrieval")
            pq = per_query(test, fx, seed=seed, tasks=tasks, labels=None if scores_only else zs,
                           classifier=data.class_prompts)
            for key, v in pq.items():
                values.setdefault(label, {}).setdefault(key, []).append(v)
            if not scores_only:
                gaps.setdefault(label, []).append(_gap_of(fx, test))
        _say(f"part {k + 1}/{len(parts)}: {len(arms) - 1} fixers fitted on {calib.n_image} images, "
             f"evaluated on {test.n_image}", verbose)
    merged = {arm: {key: np.concatenate(ps) for key, ps in d.items()} for arm, d in values.items()}
    return merged, gaps, facts


def compare_arms(values: dict[str, dict[str, np.ndarray]], gaps: dict[str, list[float]], n_boot: int,
                 seed: int) -> dict[str, dict[str, float]]:
    """Step 5: the table, one row per arm (raw: values with CIs; fixers: + paired differences)."""
    from ..evaluate.compare import compare, summarize

    table = {RAW: summarize(values[RAW], n_boot, seed)}
    for arm, v in values.items():
        if arm != RAW:
            raw = {k: values[RAW][k] for k in v}
            table[arm] = compare(raw, v, n_boot, seed)
    for arm, g in gaps.items():
        table[arm]["heldout_centroid_distance"] = float(np.mean(g))
    return table


def run_study(data: StudyData, out_dir: str | Path, *, fixers: str | Sequence[str] | None = None,
              folds: int | None = None, calib_fraction: float = 0.5, seed: int = 0, n_boot: int = 1000,
              n_perm: int = 1000, report: bool = True, verbose: bool = True, parts: Sequence[Part] | None = None,
              split_description: str | None = None) -> dict[str, Any]:
    """Run steps 1-6 (module doc) and write the records (and report.html); return the study record.

    `parts` replaces step 2 with given (calibration, evaluation, evaluation labels or None) parts,
    e.g. a model's own training and test splits (the demo), described by `split_description`."""
    from ..atomic import atomic_dir, check_replaceable_dir
    from .advice import advise
    from .records import write_study

    t0 = time.perf_counter()
    check_replaceable_dir(out_dir)  # fail before any work
    specs = parse_fixers(fixers)
    if folds is not None and (not isinstance(folds, int) or folds < 2):
        raise GapkitError(f"--folds must be an integer >= 2, got {folds}")
    if folds is None and parts is None and not 0 < calib_fraction < 1:
        raise GapkitError(f"--calib-fraction must be in (0, 1), got {calib_fraction}")
    pe = data.pairs
    _say(f"{data.model} on {data.dataset}: {pe.n_image} images, {pe.n_text} captions, dim {pe.dim}", verbose)
    gap = measure_gap(pe, seed, n_boot, n_perm)
    _say(f"gap measured: centroid distance {gap['centroid_distance']:.3f} (p = {gap['centroid_distance_p_value']:.3g})",
         verbose)
    if parts is None:
        parts = split_parts(data, folds, calib_fraction, seed)
    values, gaps, facts = evaluate_arms(data, specs, parts, seed, verbose)
    table = compare_arms(values, gaps, n_boot, seed)
    split = {"folds": folds, "calib_fraction": None if folds else calib_fraction, "seed": seed,
             "description": split_description,
             "n_calibration_images": facts["n_calibration_images"],
             "n_evaluation_images": facts["n_evaluation_images"]}
    advice = advise(gap, table, pe, split, facts["skipped_fixers"], has_zero_shot=data.class_prompts is not None)
    with atomic_dir(out_dir) as tmp:
        records = write_study(tmp, data, gap, table, split, specs, advice, seed=seed, n_boot=n_boot,
                              n_perm=n_perm, seconds=round(time.perf_counter() - t0, 2))
        if report:
            from ..report.html import build_report

            build_report(records, tmp / "report.html", title=f"gapkit study: {data.model} on {data.dataset}",
                         embedding_figures=False)
    rec = records[-1]
    for w in advice["warnings"]:
        _say(f"WARNING: {w}", True)
    _say(f"recommendation: {advice['recommendation']}", True)
    return rec
