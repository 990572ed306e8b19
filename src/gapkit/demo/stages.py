"""The demo's stages. Each takes the shared context dict and returns (result, one-line detail)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .measure import figure_record, measure_set

Stage = tuple[str, str, Callable[..., Any]]


def plan(quick: bool) -> list[Stage]:
    """The ordered stages (the report stage is run last by run_demo)."""
    from . import search, towers

    return [
        ("samples", "measuring the bundled real CLIP embeddings (COCO, Liang et al. 2022)", samples),
        ("cones", "random-init encoders: one cone per tower", cones),
        ("explain", "why the gap exists: the papers' toy experiments (quick versions)", explain),
        *([] if quick else [  # the longest toy run (--quick leaves it out), here while the second
            # process trains the tuning arms' heads (the main process would otherwise wait for them)
            ("sphere", "why the gap persists: CLIP vs unimodal NT-Xent on a sphere (Shi et al., quick version)", sphere)]),
        ("features", "pretrained two-tower (EfficientNet-Lite0 + MiniLM) on emoji + openclipart", towers.features),
        ("birth", "the gap at birth: random projection heads", towers.birth),
        ("tuning", "contrastive tuning of the heads: CLIP and gap-closing losses", towers.tuning),
        ("evaluate", "zero-shot, retrieval and mixed-modality retrieval per training arm", towers.evaluate),
        ("fixers", "post-hoc fixers on the CLIP-tuned heads", towers.fixers),
        ("shift_sweep", "evaluation vs the gap: shifting along the gap vector", towers.shift_sweep),
        # search before temperature: the temperature sweep's heads are trained last in the second
        # process, and the search stage fills the main process meanwhile
        ("search", "mixed-modality search: the served index and labelled-query benchmark", search.search),
        ("temperature", "gap and evaluation vs a fixed training temperature", towers.temperature),
    ]


# Stages run in the second process (demo.background) after the head training while the main
# process goes on; each is collected, in its own row of the stage table, after the other stages.
# They depend on no other stage. --quick: the samples stage (the main process's stages before
# tuning are shorter than the training, so the second process has room for it). Full run: the
# cone and mismatch experiments (~2 s), after the 8 x 300 training steps (~37 s of one core);
# the main process runs the sphere simulation (~10 s) meanwhile. Measured (docs/demo.md): with
# the sphere run in the second process instead, that process was the critical path (~51 s of
# work against ~41 s in the main process).
BACKGROUND = {True: ("samples",), False: ("cones", "explain")}


def background_stages(quick: bool) -> tuple[str, ...]:
    """Names of the stages run in the second process for this run."""
    return BACKGROUND[quick]


def collected(name: str, fn: Callable[[dict[str, Any]], tuple[Any, str]]) -> Callable[[dict[str, Any]], tuple[Any, str]]:
    """Stage `name`: its result from the second process when it ran there (the detail line says
    so), else fn(ctx) here. In the second process itself the context has no background: fn runs."""
    def stage(ctx: dict[str, Any]) -> tuple[Any, str]:
        from .background import in_background

        got = in_background(ctx, name)
        if got is None:
            return fn(ctx)
        (result, detail), where = got
        return result, f"{detail} ({where})"

    stage.__doc__ = fn.__doc__
    return stage


def _samples_here(ctx: dict[str, Any]) -> tuple[Any, str]:
    """The bundled CLIP sets measured with their figures (measure_samples)."""
    return measure_samples(ctx["out"], ctx["quick"], ctx["seed"])


samples = collected("samples", _samples_here)


def measure_samples(out: Path, quick: bool, seed: int) -> tuple[Any, str]:
    """Bundled CLIP ViT-B/16 (pretrained and random init) on 500 COCO pairs: metrics + figures."""
    from ..samples import SAMPLES, load_sample, sample_path

    names = {"clip": "CLIP ViT-B/16 (pretrained, COCO)", "clip_random": "CLIP ViT-B/16 (random init, COCO)"}
    methods = ("pca",) if quick else ("pca", "umap")
    recs = {}
    for key, title in names.items():
        pe = load_sample(key)
        recs[key] = measure_set(pe, title, Path(out) / "samples", seed=seed, methods=methods,
                                inputs={"sample": key, "embeddings": str(sample_path(key)),
                                        "description": SAMPLES[key]})
    cd = [r["results"].get("centroid_distance") for r in recs.values()]
    detail = f"{len(recs)} sets; figures: {', '.join(m.upper() for m in methods)}"
    if all(isinstance(c, float) for c in cd):
        detail += "; centroid distance " + ", ".join(f"{k} {c:.2f}" for k, c in zip(recs, cd))
    else:
        detail += "; gap metrics " + str(next(iter(recs.values()))["results"].get("metrics_status", "missing"))
    return recs, detail


def _cones_here(ctx: dict[str, Any]) -> tuple[Any, str]:
    """One shared PCA of the image and text towers of the random-init models of the same width."""
    from ..report.figures.embedding import cones as cones_fig
    from ..samples import load_sample

    clouds: dict[str, np.ndarray] = {}
    for key, label in (("clip_random", "CLIP"), ("convirt_random", "ConVIRT")):
        pe = load_sample(key)
        clouds[f"{label} image tower"] = pe.image
        clouds[f"{label} text tower"] = pe.text
    fig = cones_fig(clouds, seed=ctx["seed"], title="Random-init towers: each its own cone")
    rec = figure_record(Path(ctx["out"]) / "cones", [(
        fig, "cones.png", "Random initialisation: each tower forms its own cone",
        "Embeddings of four randomly initialised encoders (image and text towers of CLIP and ConVIRT, 512-d, "
        "bundled samples) in one shared PCA. Each tower maps all of its inputs into a narrow cone of its own "
        "(right: mean cosine between its rows), so a two-tower model starts with a gap before any training "
        "(Liang et al. 2022, Fig. 1c and 2).")],
        title="Cone effect at random initialisation", seed=ctx["seed"],
        inputs={"samples": ["clip_random", "convirt_random"]})
    return rec, "4 towers in one PCA"


# The papers' explanations, as registered experiments (gapkit reproduce), in their quick
# versions: the cone effect and the mismatch landscape (explain), and CLIP vs NT-Xent on a sphere
# (sphere: the longest, left out of --quick, run in the main process while the second trains).
EXPLAIN = ("liang-cone-mlp", "liang-mismatch")
SPHERE = ("shi-two-rings",)


def _experiments(ctx: dict[str, Any], wanted: tuple[str, ...], **params: Any) -> tuple[Any, str]:
    """Run the quick versions of the registered experiments `wanted` into RUN/explain/NAME."""
    from .pipeline import StageSkipped, require

    exps = require("gapkit.experiments", "registry")
    known = exps.registry()
    missing = [n for n in wanted if n not in known]
    if len(missing) == len(wanted):
        raise StageSkipped(f"experiments not registered: {', '.join(missing)}")
    recs = {name: known[name].run(Path(ctx["out"]) / "explain" / name, quick=True, seed=ctx["seed"], **params)
            for name in wanted if name in known}
    return recs, f"ran {', '.join(recs)} (quick versions)" + (f"; not registered: {', '.join(missing)}" if missing else "")


def _explain_here(ctx: dict[str, Any]) -> tuple[Any, str]:
    """The cone-effect and mismatch-landscape experiments (Liang et al.)."""
    return _experiments(ctx, EXPLAIN)


def _sphere_here(ctx: dict[str, Any]) -> tuple[Any, str]:
    """CLIP vs unimodal NT-Xent on a sphere (Shi et al. Fig. 2); the full run's plan only."""
    return _experiments(ctx, SPHERE, processes=1)  # one thread: the demo's other process has the other core


cones = collected("cones", _cones_here)
explain = collected("explain", _explain_here)
sphere = _sphere_here  # always in the main process (see BACKGROUND)
_HERE = {"samples": _samples_here, "cones": _cones_here, "explain": _explain_here}


def run_here(name: str, ctx: dict[str, Any]) -> tuple[Any, str]:
    """Stage `name`'s own work (what the second process runs: a module-level function, picklable)."""
    return _HERE[name](ctx)


def report(ctx: dict[str, Any], path: Path) -> tuple[Any, str]:
    from ..report.html import build_report

    out = build_report([ctx["out"]], path, title="gapkit demo: the modality gap, measured and closed",
                       embedding_figures=False)
    return out, str(out)
