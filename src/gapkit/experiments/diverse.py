"""The training reproductions on diverse captions: pretrained towers (frozen) + trainable LiT heads.

Fashion-MNIST (the smoke setting of gapkit.experiments.training) has 10 templated captions, so
AlignCLIP's semantic distances are 0 or a constant, every batch is full of false negatives and
R@K counts ties. This setting trains on thousands of distinct human texts instead:

data ("emoji+openclipart", "emoji" or "openclipart")
    train: emoji train (1,079 images, 2,458 CLDR names/keywords) + openclipart train (the first
    1,200 images of the seeded split, 2,574 titles/descriptions/keyword lists); test: emoji test
    (308 / 692) + openclipart test (600 / 1,289). Splits are drawn with seed 0 for every run seed,
    so all seeds and both arms of a comparison share them (and the cached tower features).
model
    EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, frozen; their raw features (1280-d, 384-d)
    are cached on disk (gapkit.encoders.tower_features). Only the heads x W_i, y W_t (-> E) and the
    logit scale train (gapkit.train.fit_heads), so one run costs CPU seconds.
metrics
    gapkit.metrics.measure on the held-out test pairs: centroid_distance, paired_cosine_mean (the
    "alignment score"), rmg, linear_separability, i2t/t2i R@1/5/10 over the whole test gallery.
statistics
    Per seed s both arms start from heads initialised with seed s and see the same batch order
    (seed s), so arm differences are paired by seed: mean difference with its Student-t 95 % CI and
    the minimum detectable effect at 80 % power, mde = (t_.975 + t_.80) sd_d / sqrt(n)
    (gapkit.report.fidelity.paired_difference), plus a BCa bootstrap CI over the seeds' differences.

The records keep the layout of the smoke records (final/per_tau/gap/cosine_distance/per_epoch with
per-seed values), so one fidelity evaluator reads both settings; params carry `data` and `setting`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GapkitError
from ..typecheck import check_positive
from . import Experiment
from .training import seed_ci

DATASETS = ("emoji", "openclipart")
DATA_CHOICES = ("emoji+openclipart", "emoji", "openclipart")
LIMITS = {("openclipart", "train"): 1200, ("openclipart", "test"): 600}  # the cached subsets
SETTING = ("pretrained towers (EfficientNet-Lite0 + MiniLM, frozen) + LiT heads on {data} "
           "(diverse captions), held-out test split")
CURVE_METRICS = ["centroid_distance", "paired_cosine_mean", "retrieval"]  # cheap, for per-epoch rows
FINAL_METRICS = ["centroid_distance", "paired_cosine_mean", "rmg", "linear_separability", "retrieval"]


@dataclass(frozen=True)
class Split:
    """Raw tower features of one split: image (N, D_img), text (M, D_txt), text_to_image (M,)."""

    image: np.ndarray
    text: np.ndarray
    text_to_image: np.ndarray
    captions: tuple[str, ...] = ()

    def subset(self, n_images: int) -> "Split":
        """The first n_images images and all their captions (quick runs)."""
        keep = self.text_to_image < n_images
        return Split(self.image[:n_images], self.text[keep], self.text_to_image[keep],
                     tuple(c for c, k in zip(self.captions, keep) if k))


def check_data(data: str) -> list[str]:
    if data not in DATA_CHOICES:
        raise GapkitError(f"data must be fashion-mnist (the smoke setting) or one of {', '.join(DATA_CHOICES)}; "
                          f"got {data!r}")
    return data.split("+")


def load_split(data: str, split: str) -> Split:
    """The concatenated tower features of the datasets in `data` (cached; extracted on first use)."""
    from ..data import load_dataset
    from ..encoders import tower_features

    parts = []
    for name in check_data(data):
        ds = load_dataset(name, split=split, seed=0, limit=LIMITS.get((name, split)))
        fi, ft = tower_features(ds, progress=False)
        parts.append((np.asarray(fi, np.float32), np.asarray(ft, np.float32), np.asarray(ds.text_to_image),
                      tuple(ds.captions)))
    return concat(parts)


def concat(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]]) -> Split:
    offsets = np.cumsum([0] + [p[0].shape[0] for p in parts[:-1]])
    return Split(np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts]),
                 np.concatenate([p[2] + o for p, o in zip(parts, offsets)]).astype(np.int64),
                 tuple(c for p in parts for c in p[3]))


def load_data(data: str, quick: bool) -> tuple[Split, Split]:
    """(train, test); quick keeps 300 training and 150 test images (numbers not meant as results)."""
    train, test = load_split(data, "train"), load_split(data, "test")
    return (train.subset(300), test.subset(150)) if quick else (train, test)


def evaluate_heads(heads: Any, test: Split, metrics: Sequence[str] = tuple(FINAL_METRICS),
                   seed: int = 0) -> dict[str, float]:
    """Gap and retrieval metrics of the heads' embeddings of the held-out split (plus tau)."""
    from ..metrics import measure

    res = measure(heads.project_image(test.image), heads.project_text(test.text), text_to_image=test.text_to_image,
                  metrics=list(metrics), seed=seed, ks=(1, 5, 10))
    out = {k: float(v) for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["tau"] = float(1 / heads.scale().item())
    out["r1_mean"] = (out["i2t_recall@1"] + out["t2i_recall@1"]) / 2
    return out


def train_arm(arm: str, seed: int, train: Split, test: Split, steps: int, eval_every: int = 0,
              init: Any = None, **fit: Any) -> dict[str, Any]:
    """Fit the heads of one arm and seed; rows = metrics at step 0, every eval_every steps, and the end."""
    from ..train.lit import fit_heads, init_heads

    fit.setdefault("embed_dim", 256)
    if init is None:
        init = init_heads(train.image.shape[1], train.text.shape[1], fit["embed_dim"], seed, fit.get("tau"))
    per_epoch = max(1, train.text.shape[0] // min(fit.get("batch_size", 256), train.text.shape[0]))
    rows = [{"step": 0, "epoch": 0.0, **evaluate_heads(init, test, FINAL_METRICS, seed)}]

    def look(step: int, heads: Any) -> None:
        if eval_every and step % eval_every == 0 and step < steps:
            rows.append({"step": step, "epoch": step / per_epoch, **evaluate_heads(heads, test, CURVE_METRICS, seed)})

    heads = fit_heads(train.image, train.text, steps=steps, seed=seed, text_to_image=train.text_to_image,
                      init=init, on_step=look, **fit)
    rows.append({"step": steps, "epoch": steps / per_epoch, **evaluate_heads(heads, test, FINAL_METRICS, seed)})
    return {"arm": arm, "seed": seed, "run_dir": None, "rows": rows, "init": rows[0], "final": rows[-1],
            "heads": heads}


def paired(runs: Sequence[dict[str, Any]], base: str, other: str, metric: str | Callable[[dict[str, Any]], float],
           where: str = "final") -> dict[str, Any]:
    """other - base over seeds (paired by seed): Student-t CI + mde (fidelity.paired_difference)
    and a BCa bootstrap CI of the mean difference over the seeds."""
    from ..metrics.bootstrap import mean_interval
    from ..report.fidelity import paired_difference

    get = metric if callable(metric) else (lambda row: row[metric])
    by = {arm: {r["seed"]: get(r[where]) for r in runs if r["arm"] == arm} for arm in (base, other)}
    seeds = sorted(set(by[base]) & set(by[other]))
    a, b = [by[base][s] for s in seeds], [by[other][s] for s in seeds]
    out: dict[str, Any] = paired_difference(a, b)
    boot = mean_interval(np.subtract(b, a), seed=0)
    out.update(boot_ci_low=boot.low, boot_ci_high=boot.high, seeds=seeds, base=a, other=b)
    return out


def summary_of(runs: Sequence[dict[str, Any]], where: str = "final") -> dict[str, dict[str, Any]]:
    """{arm: {metric: seed_ci}} like the smoke records (training.summarize), with R@K and tau."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rows = [r[where] for r in runs if r["arm"] == arm]
        keys = [k for k in rows[0] if k not in ("step", "epoch")]
        out[arm] = {k: seed_ci([row.get(k) for row in rows]) for k in keys}
    return out


def settings(data: str, quick: bool, seed: int, n_seeds: int | None, steps: Any, full: Any = 300, quick_value: Any = 20,
             name: str = "steps") -> tuple[list[int], Any]:
    """The seeds and the length (`name`: steps or epochs) of a run: 8 seeds and `full` by default,
    2 seeds and `quick_value` with quick; given values must be > 0."""
    check_data(data)
    n = n_seeds if n_seeds is not None else (2 if quick else 8)
    k = steps if steps is not None else (quick_value if quick else full)
    check_positive("n_seeds", n)
    check_positive(name, k)
    return [seed + i for i in range(n)], k


def record(out_dir: Path, name: str, data: str, quick: bool, seed: int, params: dict[str, Any],
           results: dict[str, Any], runs: list[dict[str, Any]], figures: list[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
    """finish() of the smoke experiments, with the setting named and the per-seed curves kept."""
    from .training import finish

    results = dict(results, curves=[{"arm": r["arm"], "seed": r["seed"], "rows": r["rows"]} for r in runs])
    params = {"data": data, "setting": SETTING.format(data=data), **params}
    return finish(Path(out_dir), name, quick, seed, params, results, runs, figures)


# ---------------------------------------------------------------- the five experiments

def alignclip(out_dir: Path, quick: bool = False, seed: int = 0, *, data: str = "emoji+openclipart",
              n_seeds: int | None = None, steps: int | None = None, beta: float = 0.5, embed_dim: int = 256,
              batch_size: int = 256) -> dict[str, Any]:
    """CLIP loss vs AlignCLIP's IMSep (alpha 1, beta, image term) on the same heads, seeds and batches.

    IMSep's semantic distance D_jk = 1 - cos(SBERT_j, SBERT_k): the text tower IS all-MiniLM-L6-v2
    with unit-normalised mean pooling, so its raw features are the SBERT embeddings the loss needs.
    The shared-tower half of AlignCLIP (SharedCLIP) needs trainable towers and is not in this arm.
    """
    from ..report.figures.training import arm_bars

    seeds, steps = settings(data, quick, seed, n_seeds, steps)
    check_positive("beta", beta)
    train, test = load_data(data, quick)
    fit = dict(embed_dim=embed_dim, batch_size=batch_size)
    runs = []
    for s in seeds:
        runs.append(train_arm("clip", s, train, test, steps, loss="clip", **fit))
        runs.append(train_arm("alignclip", s, train, test, steps, loss="imsep", loss_kwargs={"beta": beta},
                              semantic=train.text, **fit))
    final = summary_of(runs)
    results = {"final": final, "arms": {"clip": {"loss": "clip"}, "alignclip": {"loss": "imsep", "beta": beta}},
               "paired": {m: paired(runs, "clip", "alignclip", m) for m in
                          ("paired_cosine_mean", "centroid_distance", "rmg", "i2t_recall@1", "t2i_recall@1")},
               "paper": {"alignment_score": {"clip": 0.47, "alignclip": 0.67},
                         "claim": "IMSep raises the alignment score and shrinks the gap without hurting retrieval"}}
    return record(out_dir, "alignclip", data, quick, seed, {"n_seeds": len(seeds), "steps": steps, "beta": beta, **fit},
                  results, runs, [("alignclip_arms", lambda: arm_bars(final, ("paired_cosine_mean", "centroid_distance",
                                                                                 "i2t_recall@1")))])


def false_negatives(out_dir: Path, quick: bool = False, seed: int = 0, *, data: str = "emoji+openclipart",
                    n_seeds: int | None = None, steps: int | None = None, per_group: int = 4, tau: float = 0.02,
                    embed_dim: int = 256, batch_size: int = 64) -> dict[str, Any]:
    """Random vs duplicate-heavy batches (per_group captions of one image per group), tau fixed."""
    seeds, steps = settings(data, quick, seed, n_seeds, steps, full=600)
    train, test = load_data(data, quick)
    fit = dict(embed_dim=embed_dim, batch_size=batch_size, tau=tau, learnable_tau=False)
    runs = [train_arm(arm, s, train, test, steps, sampler="random" if arm == "random" else "duplicates",
                      per_group=per_group, **fit)
            for s in seeds for arm in ("random", "duplicates")]
    final = summary_of(runs)
    distance = {arm: seed_ci([1 - r["final"]["paired_cosine_mean"] for r in runs if r["arm"] == arm])
                for arm in ("random", "duplicates")}
    results = {"cosine_distance": distance, "final": final,
               "paired": {"cosine_distance": paired(runs, "random", "duplicates", lambda r: 1 - r["paired_cosine_mean"]),
                          **{m: paired(runs, "random", "duplicates", m) for m in
                             ("centroid_distance", "i2t_recall@1", "t2i_recall@1")}},
               "paper": {"random": 0.7521, "duplicates": 0.7840, "claim": "false negatives widen the gap"}}
    return record(out_dir, "jina-false-negatives", data, quick, seed,
                  {"n_seeds": len(seeds), "steps": steps, "per_group": per_group, **fit}, results, runs, [])


def high_temperature(out_dir: Path, quick: bool = False, seed: int = 0, *, data: str = "emoji+openclipart",
                     n_seeds: int | None = None, epochs: float | None = None, embed_dim: int = 256,
                     batch_size: int = 256) -> dict[str, Any]:
    """Fixed tau 0.1 vs learnable tau (init 0.07): held-out gap and retrieval after every epoch."""
    from ..report.figures.training import metric_over_steps

    seeds, epochs = settings(data, quick, seed, n_seeds, epochs, full=15, quick_value=3, name="epochs")
    train, test = load_data(data, quick)
    per_epoch = max(1, train.text.shape[0] // min(batch_size, train.text.shape[0]))
    fit = dict(embed_dim=embed_dim, batch_size=batch_size)
    runs = [train_arm(arm, s, train, test, max(1, round(epochs * per_epoch)), eval_every=per_epoch,
                      **(dict(tau=0.1, learnable_tau=False) if arm == "fixed_0.1" else dict(learnable_tau=True)), **fit)
            for s in seeds for arm in ("fixed_0.1", "learnable")]
    keys = ("epoch", "centroid_distance", "paired_cosine_mean", "i2t_recall@1", "t2i_recall@1", "tau")
    per_epoch_rows = {arm: [{k: float(np.mean([r["rows"][i][k] for r in runs if r["arm"] == arm])) for k in keys}
                            for i in range(len(runs[0]["rows"]))] for arm in ("fixed_0.1", "learnable")}
    falls = {}
    for arm in ("fixed_0.1", "learnable"):
        steps_down = [b["centroid_distance"] < a["centroid_distance"] for r in runs if r["arm"] == arm
                      for a, b in zip(r["rows"][1:], r["rows"][2:])]  # from epoch 1 on (epoch 0 = random heads)
        falls[arm] = {"epochs_falling": int(sum(steps_down)), "epoch_steps": len(steps_down)}
    results = {"per_epoch": per_epoch_rows, "final": summary_of(runs), "falls_after_epoch_1": falls,
               "paired": {m: paired(runs, "learnable", "fixed_0.1", m) for m in
                          ("centroid_distance", "paired_cosine_mean", "i2t_recall@1", "t2i_recall@1")},
               "paper": {"claim": "fixed tau 0.1 closes the gap epoch by epoch; retrieval drops early, recovers slowly"}}
    return record(out_dir, "jina-high-temperature", data, quick, seed,
                  {"n_seeds": len(seeds), "epochs": epochs, "steps_per_epoch": per_epoch, **fit}, results, runs,
                  [("gap_over_steps", lambda: metric_over_steps(runs, "centroid_distance", "fixed tau 0.1 vs learnable")),
                   ("r1_over_steps", lambda: metric_over_steps(runs, "i2t_recall@1", "fixed tau 0.1 vs learnable"))])


def temperature(out_dir: Path, quick: bool = False, seed: int = 0, *, data: str = "emoji+openclipart",
                n_seeds: int | None = None, base_steps: int | None = None, steps: int | None = None,
                taus: Sequence[float] = (1 / 100, 1 / 50, 1 / 30, 1 / 20, 1 / 10, 1.0), lr: float = 2e-4,
                embed_dim: int = 256, batch_size: int = 256) -> dict[str, Any]:
    """Base heads (learnable tau, 300 steps) per seed, then fine-tuned copies at each fixed tau."""
    from ..report.figures.training import metric_vs_temperature

    seeds, base_steps = settings(data, quick, seed, n_seeds, base_steps, name="base_steps")
    _, steps = settings(data, quick, seed, n_seeds, steps, full=150, quick_value=10)
    if not taus:
        raise GapkitError("taus must name at least one temperature")
    for t in taus:
        check_positive("each of taus", t)
    train, test = load_data(data, quick)
    fit = dict(embed_dim=embed_dim, batch_size=batch_size)
    runs = []
    for s in seeds:
        base = train_arm("base", s, train, test, base_steps, **fit)
        runs.append(base)
        for t in taus:
            runs.append(train_arm(f"tau={t:.4g}", s, train, test, steps, init=base["heads"], tau=t, learnable_tau=False,
                                  lr=lr, warmup_steps=min(10, steps), **fit))
    tuned = [r for r in runs if r["arm"] != "base"]
    final = summary_of(tuned)
    rho = [_spearman([t for t in taus], [next(r["final"]["centroid_distance"] for r in tuned
                                              if r["seed"] == s and r["arm"] == f"tau={t:.4g}") for t in taus])
           for s in seeds]
    lo, hi = f"tau={min(taus):.4g}", f"tau={max(taus):.4g}"
    results = {"per_tau": final, "taus": list(taus), "base": summary_of([r for r in runs if r["arm"] == "base"])["base"],
               "spearman_gap_vs_tau_per_seed": rho,
               "paired": {m: paired(tuned, lo, hi, m) for m in ("centroid_distance", "i2t_recall@1", "t2i_recall@1")},
               "paper": {"liang_gap": {"0.01": 1.00, "1": 0.24}, "claim": "the gap falls monotonically as tau rises"}}
    return record(out_dir, "liang-temperature", data, quick, seed,
                  {"n_seeds": len(seeds), "base_steps": base_steps, "steps": steps, "lr": lr, **fit}, results, runs,
                  [("gap_vs_temperature", lambda: metric_vs_temperature(final, list(taus),
                                                                        ("centroid_distance", "i2t_recall@1")))])


def init_amendment(out_dir: Path, quick: bool = False, seed: int = 0, *, data: str = "emoji+openclipart",
                   n_seeds: int | None = None, steps: int | None = None, tau: float = 0.01, n_fit: int = 2048,
                   embed_dim: int = 256, batch_size: int = 256) -> dict[str, Any]:
    """Original vs Procrustes-amended init of the heads (same seed, tau fixed at 1/100).

    Amended: W = U V^T from X^T Y = U S V^T (X, Y: the initial heads' unit embeddings of n_fit
    training pairs; gapkit.train.procrustes) is folded into the text head, W_t <- W W_t, so the
    run starts from text embeddings W y. The paper keeps W as a fixed layer after a trained text
    tower; with a linear head both span the same models and start from the same point."""
    from ..report.figures.training import metric_over_steps
    from ..train.lit import init_heads

    seeds, steps = settings(data, quick, seed, n_seeds, steps)
    check_positive("n_fit", n_fit)
    train, test = load_data(data, quick)
    fit = dict(embed_dim=embed_dim, batch_size=batch_size, tau=tau, learnable_tau=False)
    runs = []
    for s in seeds:
        h0 = init_heads(train.image.shape[1], train.text.shape[1], embed_dim, s, tau)
        runs.append(train_arm("original", s, train, test, steps, init=h0, eval_every=max(1, steps // 10), **fit))
        runs.append(train_arm("amended", s, train, test, steps, init=amend(h0, train, n_fit, s),
                              eval_every=max(1, steps // 10), **fit))
    init, final = summary_of(runs, "init"), summary_of(runs)
    gap = {arm: {"init": init[arm]["centroid_distance"], "final": final[arm]["centroid_distance"]} for arm in final}
    results = {"gap": gap, "final": final,
               "amended_over_original_final_gap": gap["amended"]["final"]["mean"] / gap["original"]["final"]["mean"],
               "paired": {"amended_reopens": paired(runs_as_init_final(runs, "amended"), "init", "final",
                                                    "centroid_distance"),
                          **{m: paired(runs, "original", "amended", m) for m in
                             ("centroid_distance", "i2t_recall@1", "t2i_recall@1")}},
               "paper": {"original": [1.19, 1.30], "amended": [0.04, 0.75], "ratio": 0.57}}
    return record(out_dir, "liang-init-amendment", data, quick, seed,
                  {"n_seeds": len(seeds), "steps": steps, "n_fit": n_fit, **fit}, results, runs,
                  [("gap_over_steps", lambda: metric_over_steps(runs, "centroid_distance",
                                                                 "Liang 4.4 on diverse captions: original vs amended"))])


def amend(heads: Any, train: Split, n_fit: int, seed: int) -> Any:
    """A copy of `heads` whose text head is rotated by the Procrustes W of n_fit training pairs."""
    import copy

    import torch

    from ..train.procrustes import procrustes_rotation

    rng = np.random.default_rng(seed)
    j = rng.choice(train.text.shape[0], size=min(n_fit, train.text.shape[0]), replace=False)
    x = torch.from_numpy(heads.project_image(train.image[train.text_to_image[j]]))
    y = torch.from_numpy(heads.project_text(train.text[j]))
    w = procrustes_rotation(x, y)  # Y W^T ~ X
    out = copy.deepcopy(heads)
    with torch.no_grad():
        out.text_proj.weight.copy_(w @ out.text_proj.weight)  # new text embedding: W (W_t y)
    return out


def runs_as_init_final(runs: Sequence[dict[str, Any]], arm: str) -> list[dict[str, Any]]:
    """One arm's runs as two pseudo-arms "init" and "final", to pair a run's start with its end."""
    return [{"arm": where, "seed": r["seed"], "final": r[where]} for r in runs if r["arm"] == arm
            for where in ("init", "final")]


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    rho = stats.spearmanr(x, y).statistic
    return float(rho) if math.isfinite(rho) else float("nan")


# ---------------------------------------------------------------- information imbalance (Schrodi et al. 2025)

def text_features(captions: Sequence[str]) -> np.ndarray:
    """Raw text-tower features of new captions: all-MiniLM-L6-v2, unit-normalised, cached per
    caption on disk (gapkit.losses.semantic; equal to the tower's own features within 1e-6)."""
    from ..losses.semantic import caption_embeddings

    return caption_embeddings(list(captions), progress=False).numpy().astype(np.float32)


def truncate(caption: str, keep: float) -> str:
    """The first ceil(keep * words) words (at least one) of a caption."""
    words = caption.split()
    return " ".join(words[:max(1, math.ceil(keep * len(words)))])


def truncated(split: Split, keep: float) -> Split:
    """The split with every caption truncated to `keep` of its words, re-encoded by the text tower."""
    caps = tuple(truncate(c, keep) for c in split.captions)
    return Split(split.image, text_features(caps), split.text_to_image, caps)


def information_imbalance(out_dir: Path, quick: bool = False, seed: int = 0, *, data: str = "emoji+openclipart",
                          n_seeds: int | None = None, steps: int | None = None, keep: float = 0.25,
                          embed_dim: int = 256, batch_size: int = 256) -> dict[str, Any]:
    """Full captions vs captions truncated to `keep` of their words (train and test alike): the
    held-out gap of heads trained on each, same seeds, init and batch order (Schrodi et al. 2025)."""
    from ..report.figures.training import arm_bars

    seeds, steps = settings(data, quick, seed, n_seeds, steps)
    if not 0 < keep < 1:
        raise GapkitError(f"keep must be in (0, 1), got {keep}")
    train, test = load_data(data, quick)
    if len(train.captions) != train.text.shape[0] or len(test.captions) != test.text.shape[0]:
        raise GapkitError("information-imbalance needs the captions of the data")
    arms = {"full": (train, test), f"keep_{keep:g}": (truncated(train, keep), truncated(test, keep))}
    fit = dict(embed_dim=embed_dim, batch_size=batch_size)
    runs = [train_arm(arm, s, tr, te, steps, **fit) for s in seeds for arm, (tr, te) in arms.items()]
    final = summary_of(runs)
    short = f"keep_{keep:g}"
    words = {arm: float(np.mean([len(c.split()) for c in tr.captions])) for arm, (tr, _) in arms.items()}
    results = {"final": final, "arms": list(arms), "mean_words_per_caption": words,
               "distinct_train_captions": {arm: len(set(tr.captions)) for arm, (tr, _) in arms.items()},
               "paired": {m: paired(runs, "full", short, m) for m in
                          ("centroid_distance", "paired_cosine_mean", "rmg", "i2t_recall@1", "t2i_recall@1")},
               "paper": {"claim": "less caption information (truncated captions) widens the gap"}}
    return record(out_dir, "information-imbalance", data, quick, seed,
                  {"n_seeds": len(seeds), "steps": steps, "keep": keep, **fit}, results, runs,
                  [("imbalance_arms", lambda: arm_bars(final, ("centroid_distance", "paired_cosine_mean",
                                                               "i2t_recall@1")))])


EXPERIMENTS = {
    "information-imbalance": Experiment(
        "information-imbalance", information_imbalance,
        "full vs truncated captions (a quarter of the words): held-out gap of LiT heads on the frozen towers, "
        "paired over seeds (CPU minutes; tower features cached)",
        "Schrodi et al. 2025, 'Two Effects, One Trigger' (information imbalance)"),
}
