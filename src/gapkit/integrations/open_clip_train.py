"""Gap metrics and gap-closing losses inside open_clip's own training app (`open_clip_train`).

    python -m gapkit.integrations.open_clip_train <open_clip_train arguments> \\
        --gap-metrics [KEYS] [--gap-exact-limit N] [--gap-loss NAME [--gap-loss-weight W] [--gap-loss-param KEY=VALUE ...]]

runs `open_clip_train.main.main` unchanged (same arguments, logs, checkpoints, DDP) and

- `--gap-metrics`: adds gapkit's gap metrics to every evaluation, computed by `gapkit.measure` from the
  validation features open_clip has just collected. They travel with open_clip's own metrics: the
  log line, `results.jsonl`, TensorBoard and W&B under `val/<key>` (e.g. `val/centroid_distance`,
  `val/rmg`). KEYS is a comma list of metric keys or families (docs/metrics.md); default
  DEFAULT_METRICS. logit_entropy uses the model's own logit scale at that evaluation. The pairwise
  metrics are exact up to `--gap-exact-limit` pairs (default 2,000) and sampled, with 95 % CIs
  (`val/<key>_ci_low`, `_ci_high`), above it.
- `--gap-loss NAME`: adds the terms of a gapkit loss (gapkit.losses registry: uniformity, alignment,
  cyclip, cua, cuaxu, dual_ce, imsep, ...) times W to open_clip's loss, logged as `train/gap_<term>`.
  The gap loss's own `contrastive_loss` term, if it has one, is dropped: open_clip's stays the only one.
- `--gap-loss imsep [--gap-loss-cache FILE.npy | --gap-semantic-model SBERT]`: IMSep's caption
  embeddings are computed once before training for every caption of the --train-data CSV (or read
  from FILE, row i for CSV row i) and looked up per batch by the batch's token ids
  (gapkit.integrations.caption_table).

open_clip has no hook for these, so each is patched at one named seam (SEAMS), for the duration of
the run only, and tests check that both seams still exist in the installed open_clip_train:
- `open_clip_train.train.get_clip_metrics(image_features, text_features, logit_scale) -> dict`: called
  by `evaluate` on all validation features; its dict is what evaluate logs under `val/`.
- `open_clip_train.main.create_loss(args) -> nn.Module`: the loss that `train_one_epoch` calls as
  `loss(**model_out, output_dict=True)` and whose dict entries it sums and logs.
- imsep only: `open_clip_train.main.create_model_and_transforms(...) -> (model, ...)`: gapkit adds a
  forward pre-hook to the model that keeps the token ids of its latest `model(images, texts)`.
No code of open_clip is copied: the wrappers call the originals.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import sys
from typing import Any, Callable, Iterator, Sequence

from ..errors import GapkitError

SEAMS = {"metrics": ("open_clip_train.train", "get_clip_metrics"),
         "loss": ("open_clip_train.main", "create_loss"),
         "model": ("open_clip_train.main", "create_model_and_transforms")}
DEFAULT_METRICS = ("geometry", "uniformity", "logit_entropy")
# Above this many validation pairs the pairwise metrics use gapkit's sampled estimators (uniformity
# from 200k random pairs, logit_entropy from 1,000 random queries, each with a 95 % CI), so that they
# add a few % to open_clip's own 10k x 10k ranking instead of doubling it (benchmarks/bench_integrations.py).
DEFAULT_EXACT_LIMIT = 2_000
_DROP = ("n_image", "n_text", "dim")  # open_clip logs its own num_samples


def gap_metrics(image_features: Any, text_features: Any, logit_scale: Any = 100.0,
                metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0,
                exact_limit: int = DEFAULT_EXACT_LIMIT) -> dict[str, float]:
    """gapkit.measure on 1:1 validation features (N, D), (N, D) -> {key: float}, without the counts.

    Pairwise metrics are exact up to `exact_limit` rows, sampled (with `_ci_low/_ci_high/_n_sampled`
    keys) above it; the geometry metrics are always exact.
    """
    from ..metrics import measure

    scale = float(logit_scale.mean()) if hasattr(logit_scale, "mean") else float(logit_scale)
    res = measure(image_features, text_features, metrics=list(metrics), logit_scale=scale, seed=seed,
                  exact_limit=exact_limit)
    return {k: float(v) for k, v in res.items() if k not in _DROP}


def with_gap_metrics(original: Callable[..., dict], metrics: Sequence[str],
                     exact_limit: int = DEFAULT_EXACT_LIMIT) -> Callable[..., dict]:
    """get_clip_metrics -> a function returning open_clip's metrics plus the gap metrics."""
    def get_clip_metrics(image_features: Any, text_features: Any, logit_scale: Any) -> dict:
        out = original(image_features, text_features, logit_scale)
        out.update(gap_metrics(image_features, text_features, logit_scale, metrics, exact_limit=exact_limit))
        return out

    get_clip_metrics.__wrapped__ = original  # type: ignore[attr-defined]
    return get_clip_metrics


def _torch_module() -> Any:
    import torch

    return torch.nn.Module


class GapLossTerm(_torch_module()):  # type: ignore[misc]
    """open_clip's loss + weight x the terms of a gapkit loss (its contrastive term dropped).

    Called as open_clip calls its loss: `loss(image_features=..., text_features=..., logit_scale=...,
    output_dict=True, **other_model_outputs)`; returns open_clip's dict plus `gap_<term>` entries
    (or their sum when output_dict is False).
    """

    def __init__(self, base: Any, gap_loss: Any, weight: float, extra: Callable[[Any], dict] | None = None) -> None:
        super().__init__()
        self.base, self.gap_loss, self.weight = base, gap_loss, float(weight)
        self.extra = extra  # image_features -> more keyword arguments of the gap loss (imsep: semantic)

    def forward(self, image_features: Any, text_features: Any, logit_scale: Any, output_dict: bool = False,
                **kw: Any) -> Any:
        losses = self.base(image_features=image_features, text_features=text_features, logit_scale=logit_scale,
                           output_dict=True, **kw)
        if not isinstance(losses, dict):  # a custom open_clip loss that ignores output_dict
            losses = {"contrastive_loss": losses}
        more = self.extra(image_features) if self.extra is not None else {}
        terms = self.gap_loss(image_features, text_features, logit_scale, **more)
        for name, value in terms.items():
            if name != "contrastive_loss":
                losses[f"gap_{name}"] = self.weight * value
        return losses if output_dict else sum(losses.values())


def build_gap_loss(name: str, params: dict[str, Any]) -> Any:
    """gapkit loss `name` with `params`, checked to add something beyond a contrastive term."""
    from ..losses import create_loss

    loss = create_loss(name, **params)
    if name in ("clip", "clip_chunked", "siglip"):
        raise GapkitError(f"--gap-loss {name} only repeats a contrastive loss; open_clip already has one "
                          "(choose e.g. uniformity, alignment, cyclip, cuaxu)")
    return loss


def seam(kind: str) -> tuple[Any, str]:
    """(module, attribute) of the named seam, imported; GapkitError when open_clip_train lacks it."""
    from . import require

    mod_name, attr = SEAMS[kind]
    require("open_clip_train", "gapkit.integrations.open_clip_train")
    mod = importlib.import_module(mod_name)
    if not callable(getattr(mod, attr, None)):
        raise GapkitError(f"this open_clip_train has no {mod_name}.{attr}: the seam gapkit patches has moved "
                          "(gapkit supports open_clip_torch 3.x)")
    return mod, attr


@contextlib.contextmanager
def patched(kind: str, make: Callable[[Any], Any]) -> Iterator[None]:
    """Replace the seam `kind` by make(original) for the duration of the block."""
    mod, attr = seam(kind)
    original = getattr(mod, attr)
    setattr(mod, attr, make(original))
    try:
        yield
    finally:
        setattr(mod, attr, original)


def parse_gap_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split gapkit's --gap-* options from the arguments that go to open_clip_train unchanged."""
    from ..params import parse_key_values

    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    p.add_argument("--gap-metrics", nargs="?", const=",".join(DEFAULT_METRICS), default=None)
    p.add_argument("--gap-exact-limit", type=int, default=DEFAULT_EXACT_LIMIT)
    p.add_argument("--gap-loss", default=None)
    p.add_argument("--gap-loss-weight", type=float, default=1.0)
    p.add_argument("--gap-loss-param", action="append", default=[])
    p.add_argument("--gap-loss-cache", default=None)
    p.add_argument("--gap-semantic-model", default=None)
    try:
        gap, rest = p.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:  # e.g. --gap-loss-weight abc: one line, not argparse's usage block
        raise GapkitError(str(exc)) from None
    if not math.isfinite(gap.gap_loss_weight):
        raise GapkitError(f"--gap-loss-weight must be a finite number, got {gap.gap_loss_weight}")
    gap.gap_loss_param = parse_key_values(gap.gap_loss_param, "--gap-loss-param", identifier_keys=True)
    if gap.gap_metrics is not None:
        from ..metrics.report import _select

        keys = [k.strip() for k in gap.gap_metrics.split(",") if k.strip()]
        _select(keys)  # unknown keys: one GapkitError line now, not at the first evaluation
        gap.gap_metrics = keys
    if gap.gap_exact_limit < 2:
        raise GapkitError(f"--gap-exact-limit must be at least 2, got {gap.gap_exact_limit}")
    if gap.gap_loss is None and gap.gap_loss_param:
        raise GapkitError("--gap-loss-param needs --gap-loss NAME")
    if gap.gap_loss != "imsep" and (gap.gap_loss_cache or gap.gap_semantic_model):
        raise GapkitError("--gap-loss-cache and --gap-semantic-model give IMSep its caption embeddings: "
                          "they need --gap-loss imsep")
    if gap.gap_loss_cache and gap.gap_semantic_model:
        raise GapkitError("--gap-loss-cache FILE already holds the caption embeddings: drop --gap-semantic-model")
    return gap, rest


def _imsep_semantic(gap: argparse.Namespace, loss: Any, rest: Sequence[str],
                    stack: contextlib.ExitStack) -> Callable[[Any], Any] | None:
    """For --gap-loss imsep: build the caption table now, before open_clip_train starts (so a bad CSV or
    cache file is one error line before any run folder exists), tap the model's token ids (seam
    "model"), and return args -> the loss's `semantic` provider (gapkit.integrations.caption_table)."""
    if gap.gap_loss != "imsep" or not getattr(loss, "semantic_supervision", False):
        return None
    from open_clip_train.params import parse_args

    from .caption_table import SemanticFromTokens, TokenTap, build_table

    table = build_table(parse_args(list(rest)), gap.gap_loss_cache, gap.gap_semantic_model)
    tap = TokenTap()

    def make_model(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_model_and_transforms(*args: Any, **kw: Any) -> Any:
            out = original(*args, **kw)
            tap.attach(out[0])  # the teacher of --distill gets the hook too: it sees the same texts
            return out
        return create_model_and_transforms

    stack.enter_context(patched("model", make_model))
    return lambda args: SemanticFromTokens(table, tap)


def run(argv: Sequence[str]) -> Any:
    """Run open_clip_train's main with the gap options of `argv` applied (see module doc)."""
    gap, rest = parse_gap_args(argv)
    with contextlib.ExitStack() as stack:
        if gap.gap_metrics is not None:
            stack.enter_context(patched("metrics", lambda orig: with_gap_metrics(
                orig, gap.gap_metrics, gap.gap_exact_limit)))
        if gap.gap_loss is not None:
            loss = build_gap_loss(gap.gap_loss, gap.gap_loss_param)
            semantic = _imsep_semantic(gap, loss, rest, stack)
            stack.enter_context(patched("loss", lambda orig: (lambda args: GapLossTerm(
                orig(args), loss.to(args.device), gap.gap_loss_weight, semantic(args) if semantic else None))))
        mod, attr = seam("loss")  # importing open_clip_train.main (after the patches are in place)
        return mod.main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one error line and exit code 2 for a gapkit usage error."""
    import os

    try:
        ret = run(sys.argv[1:] if argv is None else argv)
    except GapkitError as exc:
        if os.environ.get("GAPKIT_DEBUG"):
            raise
        print(f"gapkit open_clip_train: error: {exc}", file=sys.stderr)
        return 2
    return 1 if isinstance(ret, int) and ret != 0 else 0  # open_clip returns -1 e.g. when the run name exists


if __name__ == "__main__":
    sys.exit(main())
