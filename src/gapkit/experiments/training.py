"""The papers' training experiments at a scale a 2-core CPU runs (tiny models, offline data).

Each experiment trains several small runs through gapkit.train (one run directory per arm and
seed under <out>/runs/), summarises the final telemetry over seeds (mean and Student-t 95 % CI),
writes record.json and figures. `quick=True` shrinks steps, data and seeds so that it finishes in
well under a minute (for tests); its numbers are not meant as results.

    liang-init-amendment   Liang et al. 2022, Sec. 4.4: original vs Procrustes-amended init
    liang-temperature      Liang Supp. Fig. 8: fine-tune a trained model at fixed tau, gap per tau
    jina-false-negatives   Jina blog: random vs duplicate-heavy batches (tau 0.02, batch 16, 1 epoch)
    jina-high-temperature  Jina blog: fixed tau 0.1 vs learnable, gap and retrieval per epoch
    alignclip              Eslami & de Melo: CLIP vs SharedCLIP vs AlignCLIP (+ ablations)

Each takes `data`: "fashion-mnist" (default; the smoke setting above: 10 templated captions) or a
diverse-caption setting ("emoji+openclipart", "emoji", "openclipart"), which trains LiT heads on
the frozen pretrained towers instead (gapkit.experiments.diverse; >= 5 seeds, paired CIs).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from ..errors import GapkitError
from ..typecheck import check_positive
from . import Experiment

SUMMARY_KEYS = ("centroid_distance", "paired_cosine_mean", "rmg", "linear_separability", "zero_shot_accuracy",
                "i2t_recall@1", "t2i_recall@1", "i2t_recall@5", "t2i_recall@5", "i2t_recall@10", "t2i_recall@10",
                "logit_scale", "contrastive_loss")


# ---------------------------------------------------------------- shared helpers

def seed_ci(values: list[float]) -> dict[str, float]:
    """Mean and Student-t 95 % CI over seeds: mean +- t_{0.975, n-1} sd / sqrt(n) (no CI for n = 1)."""
    import numpy as np
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "values": []}
    mu = float(v.mean())
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"mean": mu, "ci_low": mu - half, "ci_high": mu + half, "n": int(v.size), "values": v.tolist()}


def base_config(quick: bool, **kw: Any) -> Any:
    """A tiny-model TrainConfig on Fashion-MNIST; `quick` shrinks data, eval set and steps."""
    from ..train import TrainConfig

    d: dict[str, Any] = dict(model="tiny-vit", dataset="fashion-mnist", batch_size=64, lr=5e-4, warmup_steps=20,
                             max_train_texts=10_000, eval_size=500, eval_every=50, ckpt_every=10_000,
                             threads=1, progress=not quick)
    if quick:
        d.update(max_train_texts=640, eval_size=120, warmup_steps=2, eval_every=5)
    d.update(kw)
    return TrainConfig(**d)


def run_arm(out_dir: Path, arm: str, seed: int, config: Any) -> dict[str, Any]:
    """Train one arm for one seed (or reuse a finished run in the same place); return its telemetry."""
    from ..train import train
    from ..train.telemetry import read_metrics

    run_dir = out_dir / "runs" / f"{arm}_seed{seed}"
    cfg = config.with_overrides([f"seed={seed}"])
    done = run_dir / "record.json"
    if not (done.is_file() and json.loads((run_dir / "config.json").read_text()) == json.loads(json.dumps(cfg.to_dict()))):
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # an unfinished or differently configured run: start it again
        train(cfg, run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    return {"arm": arm, "seed": seed, "run_dir": str(run_dir), "rows": rows, "final": rows[-1], "init": rows[0]}


def summarize(runs: list[dict[str, Any]], where: str = "final") -> dict[str, dict[str, Any]]:
    """{arm: {metric: seed_ci}} over the runs' `where` rows ("final" or "init")."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r[where] for r in runs if r["arm"] == arm]
        out[arm] = {k: seed_ci([row.get(k) for row in rows]) for k in SUMMARY_KEYS if any(k in row for row in rows)}
    return out


def finish(out_dir: Path, name: str, quick: bool, seed: int, params: dict[str, Any], results: dict[str, Any],
           runs: list[dict[str, Any]], figures: list[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
    """Save figures and the experiment record (runs are referenced by directory, not copied)."""
    from ..records import new_record, save_record
    from ..report.figures import save_figure

    paths = [str(save_figure(make(), out_dir / fname)) for fname, make in figures]
    results = dict(results, runs=[{"arm": r["arm"], "seed": r["seed"], "run_dir": r["run_dir"]} for r in runs])
    rec = new_record("experiment", seed=seed, params={"experiment": name, "quick": quick, **params},
                     results=results, figures=paths)
    save_record(rec, out_dir / "record.json")
    return rec


def json_bool(b: bool) -> str:
    return "true" if b else "false"


SMOKE = "fashion-mnist"


def on_diverse(fn_name: str, out_dir: Path, quick: bool, seed: int, data: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run gapkit.experiments.diverse.<fn_name> with the given (non-None) params it takes; other
    given params are one GapkitError line (they belong to the smoke setting)."""
    import inspect

    from ..typecheck import check_kwargs
    from . import diverse

    fn = getattr(diverse, fn_name)
    diverse.check_data(data)
    known = [k for k in inspect.signature(fn).parameters if k not in ("out_dir", "quick", "seed", "data")]
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise GapkitError(f"data={data}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return fn(out_dir, quick=quick, seed=seed, data=data, **check_kwargs(fn, given, f"data={data}"))


def _seeds(seed: int, n: int) -> list[int]:
    check_positive("n_seeds", n)
    return [seed + i for i in range(n)]


def _pick(given: Any, quick: bool, quick_value: Any, full_value: Any, name: str | None = None) -> Any:
    """The user's value when given (None = not given), else the quick or full default; a given
    number must be > 0 (`name` set), so `--set steps=0` is rejected rather than replaced."""
    if given is None:
        return quick_value if quick else full_value
    if name is not None:
        check_positive(name, given)
    return given


# ---------------------------------------------------------------- the experiments

def run_liang_init_amendment(out_dir: Path, quick: bool = False, seed: int = 0, n_seeds: int | None = None,
                             steps: int | None = None, tau: float = 0.01, data: str = SMOKE,
                             **overrides: Any) -> dict[str, Any]:
    """Original vs Procrustes-amended init (fresh init per seed and arm), fixed tau = 1/100."""
    if data != SMOKE:
        return on_diverse("init_amendment", out_dir, quick, seed, data,
                          dict(n_seeds=n_seeds, steps=steps, tau=tau, **overrides))
    from ..report.figures.training import metric_over_steps

    out_dir = Path(out_dir)
    n_seeds, steps = _pick(n_seeds, quick, 2, 3, "n_seeds"), _pick(steps, quick, 10, 400, "steps")
    cfg = base_config(quick, steps=steps, temperature="fixed", tau=tau, **overrides)
    runs = [run_arm(out_dir, arm, s, cfg.with_overrides([f"procrustes_init={json_bool(arm == 'amended')}"]))
            for s in _seeds(seed, n_seeds) for arm in ("original", "amended")]
    init, final = summarize(runs, "init"), summarize(runs, "final")
    gap = {arm: {"init": init[arm]["centroid_distance"], "final": final[arm]["centroid_distance"]} for arm in final}
    ratio = gap["amended"]["final"]["mean"] / gap["original"]["final"]["mean"]
    results = {"gap": gap, "final": final, "amended_over_original_final_gap": ratio,
               "paper": {"original": [1.19, 1.30], "amended": [0.04, 0.75], "ratio": 0.57}}
    return finish(out_dir, "liang-init-amendment", quick, seed, {"n_seeds": n_seeds, "steps": steps, "tau": tau,
                  "config": cfg.to_dict()}, results, runs,
                  [("gap_over_steps", lambda: metric_over_steps(runs, "centroid_distance",
                                                                 "Liang 4.4: original vs amended init"))])


def run_liang_temperature(out_dir: Path, quick: bool = False, seed: int = 0, n_seeds: int | None = None,
                          base_steps: int | None = None, steps: int | None = None,
                          taus: tuple[float, ...] | None = None, data: str = SMOKE,
                          **overrides: Any) -> dict[str, Any]:
    """Train a base model (learnable tau), then fine-tune copies at each fixed tau; gap per tau."""
    if data != SMOKE:
        return on_diverse("temperature", out_dir, quick, seed, data,
                          dict(n_seeds=n_seeds, base_steps=base_steps, steps=steps, taus=taus, **overrides))
    from ..report.figures.training import metric_vs_temperature

    out_dir = Path(out_dir)
    n_seeds, base_steps = _pick(n_seeds, quick, 1, 2, "n_seeds"), _pick(base_steps, quick, 10, 300, "base_steps")
    steps = _pick(steps, quick, 5, 150, "steps")
    taus = _pick(taus, quick, (1 / 100, 1 / 10, 1.0), (1 / 100, 1 / 50, 1 / 30, 1 / 20, 1 / 10, 1.0))
    for tau in taus:
        check_positive("each of taus", tau)
    base = base_config(quick, steps=base_steps, **overrides)
    runs = []
    for s in _seeds(seed, n_seeds):
        b = run_arm(out_dir, "base", s, base)
        for tau in taus:
            ft = base_config(quick, steps=steps, temperature="fixed", tau=tau, lr=1e-4, warmup_steps=min(10, steps),
                             init_from=b["run_dir"], **overrides)
            runs.append(run_arm(out_dir, f"tau={tau:.4g}", s, ft))
    final = summarize(runs, "final")
    results = {"per_tau": final, "taus": list(taus),
               "paper": {"liang_gap": {"0.01": 1.00, "1": 0.24}, "claim": "the gap falls monotonically as tau rises"}}
    return finish(out_dir, "liang-temperature", quick, seed, {"n_seeds": n_seeds, "base_steps": base_steps,
                  "steps": steps, "base_config": base.to_dict()}, results, runs,
                  [("gap_vs_temperature", lambda: metric_vs_temperature(final, list(taus)))])


def run_jina_false_negatives(out_dir: Path, quick: bool = False, seed: int = 0, n_seeds: int | None = None,
                             per_group: int = 4, data: str = SMOKE, **overrides: Any) -> dict[str, Any]:
    """Random vs duplicate-heavy batches on emoji (several captions per image): tau 0.02, batch 16,
    one epoch, random-init towers; mean image-text cosine distance (1 - paired cosine) per arm."""
    if data != SMOKE:
        return on_diverse("false_negatives", out_dir, quick, seed, data,
                          dict(n_seeds=n_seeds, per_group=per_group, **overrides))
    out_dir = Path(out_dir)
    n_seeds = _pick(n_seeds, quick, 2, 5, "n_seeds")
    check_positive("per_group", per_group)
    kw = dict(dataset="emoji", batch_size=16, epochs=1.0, temperature="fixed", tau=0.02, warmup_steps=10,
              max_train_texts=0, eval_size=300, eval_every=1000)
    if quick:
        kw.update(max_train_texts=320, eval_size=100, warmup_steps=2)
    kw.update(overrides)
    cfg = base_config(quick, **kw)
    runs = [run_arm(out_dir, arm, s, cfg.with_overrides(
                ["sampler=random"] if arm == "random" else ["sampler=duplicates", f'sampler_kwargs={{"per_group": {per_group}}}']))
            for s in _seeds(seed, n_seeds) for arm in ("random", "duplicates")]
    final = summarize(runs)
    distance = {arm: seed_ci([1 - r["final"]["paired_cosine_mean"] for r in runs if r["arm"] == arm])
                for arm in ("random", "duplicates")}
    results = {"cosine_distance": distance, "final": final,
               "paper": {"random": 0.7521, "duplicates": 0.7840, "claim": "false negatives widen the gap"}}
    return finish(out_dir, "jina-false-negatives", quick, seed, {"n_seeds": n_seeds, "per_group": per_group,
                  "config": cfg.to_dict()}, results, runs, [])


def run_jina_high_temperature(out_dir: Path, quick: bool = False, seed: int = 0, n_seeds: int | None = None,
                              epochs: float | None = None, data: str = SMOKE, **overrides: Any) -> dict[str, Any]:
    """Fixed tau 0.1 vs learnable tau (init 0.07): gap and retrieval at the end of every epoch."""
    if data != SMOKE:
        return on_diverse("high_temperature", out_dir, quick, seed, data,
                          dict(n_seeds=n_seeds, epochs=epochs, **overrides))
    from ..report.figures.training import metric_over_steps

    out_dir = Path(out_dir)
    n_seeds, epochs = _pick(n_seeds, quick, 1, 2, "n_seeds"), _pick(epochs, quick, 2.0, 3.0, "epochs")
    probe = base_config(quick, **overrides)
    per_epoch = probe.max_train_texts // probe.batch_size  # max_train_texts <= the split's captions here
    cfg = probe.with_overrides([f"epochs={epochs}", f"eval_every={per_epoch}"])
    runs = [run_arm(out_dir, arm, s, cfg.with_overrides(["temperature=fixed", "tau=0.1"] if arm == "fixed_0.1"
                                                        else ["temperature=learnable"]))
            for s in _seeds(seed, n_seeds) for arm in ("fixed_0.1", "learnable")]
    per_epoch_rows = {arm: [{k: seed_ci([r["rows"][i].get(k) for r in runs if r["arm"] == arm])["mean"]
                             for k in ("epoch", "centroid_distance", "paired_cosine_mean", "zero_shot_accuracy",
                                       "t2i_recall@1")}
                            for i in range(len(runs[0]["rows"]))] for arm in ("fixed_0.1", "learnable")}
    results = {"per_epoch": per_epoch_rows, "final": summarize(runs),
               "paper": {"claim": "fixed tau 0.1 closes the gap epoch by epoch; retrieval drops early, recovers slowly"}}
    return finish(out_dir, "jina-high-temperature", quick, seed, {"n_seeds": n_seeds, "epochs": epochs,
                  "config": cfg.to_dict()}, results, runs,
                  [("gap_over_steps", lambda: metric_over_steps(runs, "centroid_distance", "fixed tau 0.1 vs learnable")),
                   ("zero_shot_over_steps", lambda: metric_over_steps(runs, "zero_shot_accuracy", "fixed tau 0.1 vs learnable"))])


ALIGNCLIP_ARMS: dict[str, dict[str, Any]] = {
    "clip": {"model": "tiny-vit", "loss": "clip"},
    "sharedclip": {"model": "tiny-shared", "loss": "clip"},
    "alignclip": {"model": "tiny-shared", "loss": "imsep", "loss_kwargs": {"beta": 0.5}},
    # ablations the paper lacks
    "alignclip_img+txt": {"model": "tiny-shared", "loss": "imsep", "loss_kwargs": {"beta": 0.5, "text_term": True}},
    "alignclip_beta0.25": {"model": "tiny-shared", "loss": "imsep", "loss_kwargs": {"beta": 0.25}},
    "alignclip_beta1": {"model": "tiny-shared", "loss": "imsep", "loss_kwargs": {"beta": 1.0}},
}


def run_alignclip(out_dir: Path, quick: bool = False, seed: int = 0, n_seeds: int | None = None,
                  steps: int | None = None, arms: tuple[str, ...] | None = None, data: str = SMOKE,
                  **overrides: Any) -> dict[str, Any]:
    """CLIP vs SharedCLIP vs AlignCLIP (SharedCLIP + IMSep) at equal steps and data, plus ablations."""
    if data != SMOKE:
        return on_diverse("alignclip", out_dir, quick, seed, data,
                          dict(n_seeds=n_seeds, steps=steps, arms=arms, **overrides))
    from ..report.figures.training import arm_bars

    out_dir = Path(out_dir)
    n_seeds, steps = _pick(n_seeds, quick, 1, 2, "n_seeds"), _pick(steps, quick, 8, 300, "steps")
    arms = _pick(arms, quick, ("clip", "sharedclip", "alignclip"), tuple(ALIGNCLIP_ARMS))
    unknown = [a for a in arms if a not in ALIGNCLIP_ARMS]
    if unknown or not arms:
        raise GapkitError(f"arms must name some of {', '.join(ALIGNCLIP_ARMS)}; got {list(arms)}")
    cfg = base_config(quick, steps=steps, **overrides)
    runs = []
    for s in _seeds(seed, n_seeds):
        for arm in arms:
            spec = ALIGNCLIP_ARMS[arm]
            runs.append(run_arm(out_dir, arm, s, cfg.with_overrides(
                [f"model={spec['model']}", f"loss={spec['loss']}",
                 "loss_kwargs=" + json.dumps(spec.get("loss_kwargs", {}))])))
    final = summarize(runs)
    results = {"final": final, "arms": {a: ALIGNCLIP_ARMS[a] for a in arms},
               "paper": {"alignment_score": {"clip": 0.47, "alignclip": 0.67},
                         "claim": "SharedCLIP + IMSep raises the alignment score and shrinks the gap without hurting "
                                  "downstream accuracy"}}
    return finish(out_dir, "alignclip", quick, seed, {"n_seeds": n_seeds, "steps": steps, "config": cfg.to_dict()},
                  results, runs,
                  [("alignclip_arms", lambda: arm_bars(final, ("paired_cosine_mean", "centroid_distance",
                                                               "linear_separability", "zero_shot_accuracy")))])


EXPERIMENTS = {
    "liang-init-amendment": Experiment(
        "liang-init-amendment", run_liang_init_amendment,
        "train tiny CLIPs from scratch with the original vs a Procrustes-amended init; gap at init and after training",
        "Liang et al. 2022, Sec. 4.4"),
    "liang-temperature": Experiment(
        "liang-temperature", run_liang_temperature,
        "fine-tune a trained tiny CLIP at fixed tau in {1/100 ... 1}: gap and retrieval per tau",
        "Liang et al. 2022, Supp. Fig. 8"),
    "jina-false-negatives": Experiment(
        "jina-false-negatives", run_jina_false_negatives,
        "random vs duplicate-heavy batches (tau 0.02, batch 16, one epoch): image-text cosine distance",
        "Jina AI blog on the modality gap of jina-clip-v1"),
    "jina-high-temperature": Experiment(
        "jina-high-temperature", run_jina_high_temperature,
        "fixed tau 0.1 vs learnable: gap and retrieval per epoch", "Jina AI blog, Fig. 6-7"),
    "alignclip": Experiment(
        "alignclip", run_alignclip,
        "CLIP vs SharedCLIP vs AlignCLIP (SharedCLIP + IMSep) at equal steps, with IMSep ablations",
        "Eslami & de Melo, Mitigate the Gap (AlignCLIP)"),
}
