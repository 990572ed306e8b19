"""The training loop, readable top to bottom: `train(config, out_dir) -> run record`.

Run directory:
    config.json          the TrainConfig
    metrics.jsonl        one row per eval: step, epoch, lr, tau, logit_scale, mean loss terms since
                         the last eval, gap metrics and R@1 on a fixed eval subset (telemetry.py)
    checkpoint/          the latest complete checkpoint (checkpoint.py), every ckpt_every steps
    model.safetensors    final weights; model_config.json: the architecture
    record.json          the run record (gapkit.records)

Exact resumption: everything a step depends on is either restored from the checkpoint (weights,
AdamW moments, scheduler, RNG states) or a pure function of (seed, step) (the batch order, the
temperature schedule), so a run killed at any point and resumed with `resume=True` ends with the
same weights as an uninterrupted run (bitwise on CPU).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path, read_json_object, write_json_atomic
from ..errors import reading
from ..outputs import prepare_run_directory
from ..errors import GapkitError
from ..records import new_record, save_record
from . import ddp
from .checkpoint import read_checkpoint, restore, save_checkpoint, split_weights
from .config import TrainConfig
from ..models.preprocess import normalize_pixels
from .data import PairData, eval_subset, make_batches, prepare
from .procrustes import procrustes_rotation
from .telemetry import MetricsLog, embed, evaluate

MIN_TAU = 0.01  # exp(-ln 100): the logit-scale clamp; a fixed tau below it would be silently clamped


class TrainingDiverged(GapkitError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


# ---------------------------------------------------------------- building blocks

def load_split(config: TrainConfig, split: str) -> Any:
    """The dataset named by the config (gapkit.data.load_dataset)."""
    from ..data import load_dataset

    return load_dataset(config.dataset, split=split, seed=config.seed, **config.dataset_kwargs)


def total_steps(config: TrainConfig, per_epoch: int) -> int:
    return max(1, math.ceil(config.epochs * per_epoch)) if config.epochs > 0 else config.steps


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def tau_at(config: TrainConfig, step: int, total: int) -> float | None:
    """The imposed temperature at `step` (None when it is learned)."""
    if config.temperature == "fixed":
        return float(config.tau)
    if config.temperature == "schedule":
        return float(config.tau) * (config.tau_end / float(config.tau)) ** (step / max(1, total))
    return None


def make_optimizer(modules: list[torch.nn.Module], lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                   fused: bool = False) -> torch.optim.AdamW:
    """AdamW; no weight decay on 1-D parameters (LayerNorm gains, biases, CLS token, logit_scale).

    fused=True: one kernel per parameter (the same update up to float rounding; ~6x faster on CPU
    for large linear heads, where the step is memory-bound)."""
    decay, no_decay = [], []
    for m in modules:
        for p in m.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def load_run_model(run_dir: str | Path) -> torch.nn.Module:
    """The final model of a finished run (model_config.json + model.safetensors)."""

    from safetensors.torch import load_file

    from ..models import create_model

    d = Path(run_dir)
    if not (d / "model_config.json").is_file() or not (d / "model.safetensors").is_file():
        raise GapkitError(f"{d}: not a finished training run (model_config.json + model.safetensors)")
    model = create_model(read_json_object(d / "model_config.json", "model config"))
    with reading(d / "model.safetensors", "model weights"):
        weights = load_file(str(d / "model.safetensors"))
    load_model_weights(model, weights, d / "model.safetensors")
    return model


def load_model_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Any = "weights") -> None:
    """load_state_dict that first installs the Procrustes buffer when the weights carry one.

    Weights of another architecture raise one GapkitError counting what does not fit (torch's own
    message lists every key over many lines)."""
    if "text_rotation" in weights:
        with reading(source, "Procrustes rotation"):
            model.set_text_rotation(weights["text_rotation"])
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        example = (f"{shapes[0]}: {tuple(weights[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)}" if shapes
                   else (missing or unexpected)[0])
        raise GapkitError(f"{source}: weights do not fit this model ({len(missing)} missing, {len(unexpected)} "
                          f"unexpected, {len(shapes)} of another shape, e.g. {example}); a run of another architecture?")
    model.load_state_dict(weights)


@torch.no_grad()
def fit_procrustes(model: torch.nn.Module, data: PairData, n: int, seed: int, device: torch.device) -> torch.Tensor:
    """W from the SVD of X^T Y on `n` training pairs at initialisation (procrustes.py)."""
    idx = np.sort(np.random.default_rng([seed, 13]).choice(data.n_texts, min(n, data.n_texts), replace=False))
    sub = data.subset_texts(idx)
    img, txt = embed(model, sub, device)
    return procrustes_rotation(img[sub.text_to_image], txt)


def save_final(run_dir: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    with atomic_path(run_dir / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json_atomic(run_dir / "model_config.json", model.config)


# ---------------------------------------------------------------- the loop

def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, dataset: Any = None,
          eval_dataset: Any = None) -> dict[str, Any]:
    """Train a model as `config` says; write the run directory; return the run record.

    `dataset` / `eval_dataset` (ImageTextDataset-like objects) replace config.dataset, e.g. for
    tests or experiments that build their own data. With resume=True the run continues from
    <out_dir>/checkpoint with the config saved there.
    """
    from tqdm.auto import tqdm

    from ..losses import create_loss
    from ..models import create_model

    run_dir = Path(out_dir)
    if resume:
        config = TrainConfig.load(run_dir / "config.json")
    elif (run_dir / "checkpoint").exists():
        raise GapkitError(f"{run_dir} already holds a run; pass resume=True (--resume) or choose a new --out")
    ctx = ddp.setup(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if config.tau is not None and config.temperature != "learnable" and min(config.tau, config.tau_end if config.temperature == "schedule" else config.tau) < MIN_TAU:
        raise GapkitError(f"tau below {MIN_TAU} would be clamped by the logit-scale limit ln 100")
    if config.batch_size % (ctx.world_size * config.accum_steps):
        raise GapkitError(f"batch_size {config.batch_size} is not divisible by world_size x accum_steps")
    if config.precision == "bf16" and ctx.device.type != "cuda":
        raise GapkitError("precision bf16 needs a CUDA device (set device=cuda); CPU runs use fp32")
    # 1. Model, loss, data. Every rank seeds identically, then takes rank 0's weights anyway.
    model = create_model(config.model, seed=config.seed).to(ctx.device)
    if config.init_from:
        load_model_weights(model, _final_weights(config.init_from), f"init_from {config.init_from}")
    loss_fn = create_loss(config.loss, **config.loss_kwargs).to(ctx.device)
    vcfg = model.config["vision_cfg"]
    size, channels = int(vcfg["image_size"]), int(vcfg.get("in_channels", 3))
    train_data = prepare(dataset if dataset is not None else load_split(config, config.split), size,
                         model.tokenizer, channels, config.max_train_texts, config.seed)
    eval_src = eval_dataset if eval_dataset is not None else (dataset if dataset is not None else load_split(config, config.eval_split))
    eval_data = eval_subset(prepare(eval_src, size, model.tokenizer, channels), config.eval_size, config.seed)
    semantic = _semantic_table(config, train_data.captions)
    sampler = make_batches(config.sampler, train_data, config.batch_size, config.seed, **config.sampler_kwargs)
    steps = total_steps(config, sampler.per_epoch)
    if ctx.is_main:  # only now: a bad model, loss or dataset leaves no run directory behind
        prepare_run_directory(run_dir)  # never a user's own non-empty folder
        if not resume:  # a resumed run keeps its folder as it was until the first new checkpoint
            config.save(run_dir / "config.json")

    # 2. Temperature mode and the optional Procrustes amendment (fitted at init, then fixed).
    if config.temperature != "learnable":
        model.logit_scale.requires_grad_(False)
        model.logit_scale.data.fill_(math.log(1 / tau_at(config, 0, steps)))  # so step-0 telemetry shows it
    elif config.tau is not None:
        model.logit_scale.data.fill_(math.log(1 / config.tau))
    if config.procrustes_init and not resume:
        model.set_text_rotation(fit_procrustes(model, train_data, config.procrustes_samples, config.seed, ctx.device))
    ddp.broadcast_parameters(model, ctx)

    # 3. Optimiser and schedule; restore everything when resuming.
    modules = {"model": model, "loss": loss_fn}
    optimizer = make_optimizer([model, loss_fn], config.lr, config.weight_decay, config.betas, config.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup_steps, steps, config.min_lr_ratio))
    log = MetricsLog(run_dir / "metrics.jsonl")
    start = 0
    if resume:
        weights, opt_tensors, state = read_checkpoint(run_dir)
        if "model.text_rotation" in weights:
            model.set_text_rotation(weights["model.text_rotation"])
        load_model_weights(model, split_weights(weights, "model"), run_dir / "checkpoint")
        with reading(run_dir / "checkpoint", "checkpoint (optimizer or scheduler state does not fit this run)"):
            restore(modules, optimizer, scheduler, weights, opt_tensors, state)
        start = int(state["step"])
        if ctx.is_main:
            log.truncate_after(start)
    params = [p for m in (model, loss_fn) for p in m.parameters() if p.requires_grad]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.precision == "bf16")

    def telemetry(step: int, running: dict[str, list[float]], ks: tuple[int, ...] = (1,)) -> dict[str, Any]:
        row = {"step": step, **sampler.position(step), "lr": optimizer.param_groups[0]["lr"],
               "logit_scale": float(model.scale().detach()), "tau": 1 / float(model.scale().detach()),
               **{k: float(np.mean(v)) for k, v in running.items() if v}}
        row.update(evaluate(model, eval_data, ctx.device, seed=config.seed, ks=ks))
        if ctx.is_main:
            log.append(row)
        running.clear()
        return row

    # 4. The loop.
    running: dict[str, list[float]] = {}
    if start == 0:
        last = telemetry(0, running)
    else:  # resumed: the latest telemetry row logged before the checkpoint
        from .telemetry import read_metrics

        logged = read_metrics(log.path) if log.path.exists() else []
        last = logged[-1] if logged else {}
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not (config.progress and ctx.is_main),
               desc="train", dynamic_ncols=True)
    t0 = time.perf_counter()
    per_rank = config.batch_size // ctx.world_size
    micro = per_rank // config.accum_steps
    for step in bar:
        tau = tau_at(config, step, steps)
        if tau is not None:
            model.logit_scale.data.fill_(math.log(1 / tau))
        batch = sampler.batch(step)[ctx.rank * per_rank : (ctx.rank + 1) * per_rank]
        optimizer.zero_grad(set_to_none=True)
        terms_sum: dict[str, float] = {}
        for m0 in range(0, per_rank, micro):
            idx = torch.from_numpy(batch[m0 : m0 + micro])
            images = normalize_pixels(train_data.images[train_data.text_to_image[idx]]).to(ctx.device)
            tokens = train_data.tokens[idx].to(ctx.device)
            extra = {"semantic": semantic[idx].to(ctx.device)} if semantic is not None else {}
            with autocast:
                out = model(images, tokens)
                terms = loss_fn(out["image_features"], out["text_features"], out["logit_scale"], **extra)
            loss = sum(v for k, v in terms.items() if k.endswith("_loss"))
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"training diverged at step {step} (loss {float(loss.detach())}; terms "
                    f"{ {k: round(float(v.detach()), 4) for k, v in terms.items()} }); {_last_good(run_dir)}")
            (loss / config.accum_steps).backward()
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + float(v.detach()) / config.accum_steps
        ddp.average_gradients(params, ctx)
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():  # keep the parameter itself inside [0, ln 100] (open_clip does the same)
            model.logit_scale.clamp_(0, math.log(100))
        for k, v in terms_sum.items():
            running.setdefault(k, []).append(v)
        done = step + 1
        due_eval = done % config.eval_every == 0 or done == steps
        if (due_eval or done % config.ckpt_every == 0) and not all(bool(torch.isfinite(p).all()) for p in params):
            # checked before telemetry and checkpoints: NaN weights must neither be evaluated nor saved
            raise TrainingDiverged(f"training diverged at step {done} (the update made parameters NaN or inf; "
                                   f"last loss {sum(terms_sum.values()):.4g}); {_last_good(run_dir)}")
        if due_eval:  # the final eval adds R@5 and R@10
            last = telemetry(done, running, (1, 5, 10) if done == steps else (1,))
        if ctx.is_main and (done % config.ckpt_every == 0 or done == steps):
            save_checkpoint(run_dir, modules, optimizer, scheduler, {"step": done, "sampler": sampler.position(done)})
        bar.set_postfix(loss=f"{sum(terms_sum.values()):.3f}", gap=f"{last.get('centroid_distance', float('nan')):.3f}")
    elapsed = time.perf_counter() - t0

    # 5. Final weights and the record.
    record = new_record("train", params=config.to_dict(), seed=config.seed,
                        inputs={"dataset": config.dataset if dataset is None else getattr(dataset, "name", "in-memory"),
                                "n_train_texts": train_data.n_texts, "n_eval_texts": eval_data.n_texts},
                        results={"final": last, "steps": steps, "resumed_from": start if resume else None,
                                 "seconds": elapsed, "steps_per_second": (steps - start) / max(elapsed, 1e-9),
                                 "world_size": ctx.world_size})
    if ctx.is_main:
        save_final(run_dir, model)
        save_record(record, run_dir / "record.json")
    ddp.teardown(ctx)
    return record


def _last_good(run_dir: Path) -> str:
    ckpt = run_dir / "checkpoint"
    return (f"last good checkpoint: {ckpt}"
            if ckpt.is_dir() else "no checkpoint was saved yet")


def _final_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    p = Path(run_dir) / "model.safetensors"
    if not p.is_file():
        raise GapkitError(f"init_from: {p} does not exist (expected a finished run directory)")
    with reading(p, "model weights"):
        return load_file(str(p))


def _semantic_table(config: TrainConfig, captions: list[str]) -> torch.Tensor | None:
    """SBERT embeddings of every training caption, computed once (only for IMSep)."""
    if config.loss != "imsep" or not config.loss_kwargs.get("semantic_supervision", True):
        return None
    from ..losses.semantic import caption_embeddings

    kw = {"model": config.semantic_encoder} if config.semantic_encoder else {}
    return caption_embeddings(captions, progress=config.progress, **kw).float()
