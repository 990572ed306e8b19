"""`gapkit demo`: the whole study on the embedded default, offline, as one command.

Stages (each recorded as ran / skipped with the reason / failed with the error):
  samples    the bundled real CLIP ViT-B/16 COCO embeddings (pretrained, random init): metrics + figures
  cones      random-init encoders: each tower forms its own cone (Liang Fig. 1c / 2c)
  features   pretrained two-tower (EfficientNet-Lite0 + MiniLM) features of emoji + openclipart (cached)
  birth      the gap at birth of fresh projection heads; cones of several random inits
  tuning     LiT heads tuned with CLIP and with gap-closing losses (gapkit.train.fit_heads)
  evaluate   zero-shot, retrieval and mixed-modality retrieval per training arm (gapkit.evaluate)
  fixers     `gapkit study` (gapkit.study): fixers fitted on training embeddings, compared with raw on test
  report     the self-contained HTML report of the run directory

`run_demo(out_dir, quick=False, seed=0)` returns the demo record; the CLI prints the run directory.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from ..outputs import prepare_run_directory
from ..records import new_record, save_record
from .pipeline import Pipeline


def default_run_dir() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"demo-{stamp}"


def _job_ctx(ctx: dict[str, Any]) -> dict[str, Any]:
    """What a stage run in the second process gets: the picklable part of the context."""
    return {"out": ctx["out"], "quick": ctx["quick"], "seed": ctx["seed"], "verbose": False}


def run_demo(out_dir: str | Path | None = None, *, quick: bool = False, seed: int = 0,
             verbose: bool = True) -> dict[str, Any]:
    """Run every stage into `out_dir` (default runs/demo-TIMESTAMP) and build report.html there."""
    from . import stages, towers
    from .background import Background, one_thread

    out = Path(out_dir) if out_dir is not None else default_run_dir()
    out, _ = prepare_run_directory(out)  # a user's own non-empty folder is refused
    plan = stages.plan(quick)
    pipe = Pipeline(total=len(plan) + 1, verbose=verbose)
    bg = Background()
    ctx: dict[str, Any] = {"out": out, "quick": quick, "seed": seed, "verbose": verbose, "background": bg}
    # the second process: the heads' training first, the tuning arms (the tuning stage needs them
    # soonest) then the temperature sweep's, then the stages that depend on nothing
    for part in towers.TRAINING_PARTS:
        bg.start(towers.training_job(part), towers.train_all, quick, seed, None, part)
    later = [(n, t, f) for n, t, f in plan
             if n in stages.background_stages(quick) and bg.start(n, stages.run_here, n, _job_ctx(ctx))]
    try:
        with one_thread():
            for name, title, fn in plan:
                if any(name == n for n, _, _ in later):
                    pipe.reserve(name, title, "running in a second process")
                else:
                    pipe.run(name, title, fn, ctx)
            for name, title, fn in later:
                pipe.run(name, title, fn, ctx)
    finally:
        bg.close()
    record = new_record("demo", title="gapkit demo", seed=seed, params={"quick": quick},
                        inputs={"run_dir": str(out)}, results={"stages": pipe.stages})
    save_record(record, out / "demo.json")
    report = out / "report.html"
    pipe.run("report", "writing the HTML report", stages.report, ctx, report)
    record["results"]["stages"] = pipe.stages
    save_record(record, out / "demo.json")
    record["run_dir"] = str(out)
    record["report"] = str(report)
    return record
