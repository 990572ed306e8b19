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

import contextlib
import datetime as _dt
from pathlib import Path
from typing import Any, Iterator

from ..outputs import prepare_run_directory
from ..records import new_record, save_record
from .pipeline import Pipeline


def default_run_dir() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"demo-{stamp}"


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """NumPy's BLAS/LAPACK on one thread: the second core trains the heads, and a threaded LAPACK
    call on a busy core waits on its own spinning threads (a 1000 x 512 SVD took 2-5x longer with
    two threads than with one on a loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it the demo is only slower
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def run_demo(out_dir: str | Path | None = None, *, quick: bool = False, seed: int = 0,
             verbose: bool = True) -> dict[str, Any]:
    """Run every stage into `out_dir` (default runs/demo-TIMESTAMP) and build report.html there."""
    from . import stages
    from .background import start_training, stop_training

    out = Path(out_dir) if out_dir is not None else default_run_dir()
    out, _ = prepare_run_directory(out)  # a user's own non-empty folder is refused
    plan = stages.plan(quick)
    pipe = Pipeline(total=len(plan) + 1, verbose=verbose)
    ctx: dict[str, Any] = {"out": out, "quick": quick, "seed": seed, "verbose": verbose}
    start_training(ctx)  # the heads train in a second process while the first stages run
    try:
        with one_blas_thread():
            for name, title, fn in plan:
                pipe.run(name, title, fn, ctx)
    finally:
        stop_training(ctx)
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
