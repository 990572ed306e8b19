"""LiT-style heads on cached features of frozen towers: `fit_heads(image_feats, text_feats, ...)`.

Trains only two linear projections and the logit scale (gapkit.models.heads.LiTHeads) with any
registered loss, on precomputed tower features, so it takes seconds to minutes on a CPU:

    heads = fit_heads(img_feats, txt_feats, loss="clip", steps=500, seed=0)
    x = heads.project_image(img_feats); y = heads.project_text(txt_feats)

`fit_heads_many(img_feats, txt_feats, arms=[{"loss": "clip"}, {"loss": "clip", "tau": 0.5,
"learnable_tau": False}, ...])` trains several arms (loss / temperature variants) that share the
seed, and therefore the initial weights and every batch, in one pass: their projections are
stacked side by side, so each step is one large matrix product per modality instead of one small
one per arm. The arms stay independent (the summed loss has a separate gradient per arm's block;
AdamW acts element by element), so each arm ends with the weights `fit_heads` gives it alone, up
to float rounding.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import GapkitError
from ..validation import as_matrix, check_mapping
from .loop import lr_factor, make_optimizer

#: What an arm may set (fit_heads' keywords of the same names).
ARM_KEYS = ("loss", "tau", "learnable_tau", "loss_kwargs")


def fit_heads(image_feats: Any, text_feats: Any, loss: str = "clip", steps: int = 500, seed: int = 0, *,
              text_to_image: Any = None, embed_dim: int = 256, batch_size: int = 256, lr: float = 1e-3,
              weight_decay: float = 0.1, warmup_steps: int = 20, tau: float | None = None,
              learnable_tau: bool = True, loss_kwargs: dict[str, Any] | None = None,
              progress: bool = False, init: Any = None, sampler: str = "random",
              per_group: int = 4, semantic: Any = None,
              on_step: Callable[[int, Any], None] | None = None) -> Any:
    """Fit LiT heads on image features (N, D_img) and text features (M, D_txt).

    Pairs are (text j, image text_to_image[j]) (1:1 when text_to_image is None). `tau` sets the
    initial (or, with learnable_tau=False, fixed) temperature; default 0.07. Returns LiTHeads.

    init: LiTHeads to start from (copied; its logit scale is replaced when `tau` is given), else
    `init_heads(..., seed)`. sampler: "random" batches, or "duplicates" (false-negative-heavy:
    `per_group` captions of one image per group; gapkit.data.samplers). semantic: (M, K) caption
    embeddings, rows of the batch passed to the loss as `semantic=` (IMSep's SBERT distances).
    on_step(k, heads) is called after every optimiser step k = 1..steps (curves, early looks).
    """
    from tqdm.auto import tqdm

    from ..losses import create_loss

    img, txt, t2i_t = _inputs(image_feats, text_feats, text_to_image)
    if steps < 1:
        raise GapkitError(f"steps must be >= 1, got {steps}")
    batch_size = min(batch_size, txt.shape[0])
    if init is None:
        heads = init_heads(img.shape[1], txt.shape[1], embed_dim, seed, tau)
    else:
        import copy

        heads = copy.deepcopy(init).train()
        if tau is not None:
            with torch.no_grad():
                heads.logit_scale.fill_(math.log(1 / tau))
    heads.logit_scale.requires_grad_(learnable_tau)
    sem = None if semantic is None else torch.from_numpy(
        np.ascontiguousarray(as_matrix(semantic, "semantic embeddings", dtype=np.float32)))
    if sem is not None and sem.shape[0] != txt.shape[0]:
        raise GapkitError(f"semantic has {sem.shape[0]} rows but there are {txt.shape[0]} texts")
    loss_fn = create_loss(loss, **(loss_kwargs or {}))
    opt = make_optimizer([heads, loss_fn], lr, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup_steps, steps, 0.0))
    batches = _batches(sampler, t2i_t.numpy(), batch_size, per_group, seed)
    for step in tqdm(range(steps), disable=not progress, desc="fit_heads"):
        idx = torch.from_numpy(batches.batch(step))
        out = heads(img[t2i_t[idx]], txt[idx])
        extra = {} if sem is None else {"semantic": sem[idx]}
        terms = loss_fn(out["image_features"], out["text_features"], out["logit_scale"], **extra)
        total = sum(v for k, v in terms.items() if k.endswith("_loss"))
        if not torch.isfinite(total):
            raise GapkitError(f"fit_heads: loss became {float(total)} at step {step}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            heads.logit_scale.clamp_(0, math.log(100))
        if on_step is not None:
            on_step(step + 1, heads)
    return heads.eval()


def fit_heads_many(image_feats: Any, text_feats: Any, arms: Sequence[dict[str, Any]], steps: int = 500,
                   seed: int = 0, *, text_to_image: Any = None, embed_dim: int = 256, batch_size: int = 256,
                   lr: float = 1e-3, weight_decay: float = 0.1, warmup_steps: int = 20,
                   progress: bool = False) -> list[Any]:
    """One LiTHeads per arm (a dict of ARM_KEYS: loss, tau, learnable_tau, loss_kwargs), all
    trained on the same batches from the same initial weights (see the module docstring)."""
    from tqdm.auto import tqdm

    from ..data.samplers import RandomBatchSampler
    from .data import StepBatches

    img, txt, t2i = _inputs(image_feats, text_feats, text_to_image)
    if steps < 1:
        raise GapkitError(f"steps must be >= 1, got {steps}")
    stack = _Stack(arms, img.shape[1], txt.shape[1], embed_dim, seed)
    opt = make_optimizer([stack], lr, weight_decay, fused=True)  # the step is memory-bound: one pass per tensor
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup_steps, steps, 0.0))
    sampler = StepBatches(RandomBatchSampler(txt.shape[0], min(batch_size, txt.shape[0]), seed))
    for step in tqdm(range(steps), disable=not progress, desc="fit_heads"):
        idx = torch.from_numpy(sampler.batch(step))
        total = stack.loss(img[t2i[idx]], txt[idx], step)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        stack.clamp_scales()
    return stack.heads()


def _inputs(image_feats: Any, text_feats: Any, text_to_image: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated float32 feature tensors and the (M,) text -> image row map."""
    img = torch.from_numpy(np.ascontiguousarray(as_matrix(image_feats, "image features", dtype=np.float32)))
    txt = torch.from_numpy(np.ascontiguousarray(as_matrix(text_feats, "text features", dtype=np.float32)))
    t2i = check_mapping(text_to_image, img.shape[0], txt.shape[0])
    return img, txt, torch.arange(txt.shape[0]) if t2i is None else torch.from_numpy(t2i)


class _Stack(torch.nn.Module):
    """The arms' projections side by side: image (A * E, D_img), text (A * E, D_txt), one logit
    scale and one loss module per arm. Arm a owns rows [a * E, (a + 1) * E)."""

    def __init__(self, arms: Sequence[dict[str, Any]], image_dim: int, text_dim: int, embed_dim: int,
                 seed: int) -> None:
        from ..losses import create_loss

        super().__init__()
        if not arms:
            raise GapkitError("fit_heads_many: give at least one arm")
        unknown = sorted({k for a in arms for k in a} - set(ARM_KEYS))
        if unknown:
            raise GapkitError(f"fit_heads_many: unknown arm keys {unknown}; known: {', '.join(ARM_KEYS)}")
        self.embed_dim, self._arms = embed_dim, [dict(a) for a in arms]
        init = []
        for arm in self._arms:  # every arm starts where fit_heads would start it for this seed
            h = init_heads(image_dim, text_dim, embed_dim, seed, arm.get("tau"))
            h.logit_scale.requires_grad_(arm.get("learnable_tau", True))
            init.append(h)
        self.image_weight = torch.nn.Parameter(torch.cat([h.image_proj.weight.detach() for h in init]))
        self.text_weight = torch.nn.Parameter(torch.cat([h.text_proj.weight.detach() for h in init]))
        self.logit_scales = torch.nn.ParameterList([h.logit_scale for h in init])
        self.losses = torch.nn.ModuleList([create_loss(a.get("loss", "clip"), **(a.get("loss_kwargs") or {}))
                                           for a in self._arms])
        self._init = init

    def loss(self, image_batch: torch.Tensor, text_batch: torch.Tensor, step: int) -> torch.Tensor:
        """Sum over arms of each arm's loss on the batch (its gradient is per arm: blocks are disjoint)."""
        from ..models.clip import LOGIT_SCALE_MAX

        zi = torch.nn.functional.linear(image_batch, self.image_weight)
        zt = torch.nn.functional.linear(text_batch, self.text_weight)
        e, total = self.embed_dim, None
        for a, loss_fn in enumerate(self.losses):
            xa = torch.nn.functional.normalize(zi[:, a * e:(a + 1) * e], dim=-1)
            ya = torch.nn.functional.normalize(zt[:, a * e:(a + 1) * e], dim=-1)
            terms = loss_fn(xa, ya, self.logit_scales[a].clamp(max=LOGIT_SCALE_MAX).exp())
            arm_total = sum(v for k, v in terms.items() if k.endswith("_loss"))
            if not torch.isfinite(arm_total):
                which = f" (arm {a}: {self._arms[a].get('loss', 'clip')})" if len(self.losses) > 1 else ""
                raise GapkitError(f"fit_heads: loss became {float(arm_total)} at step {step}{which}")
            total = arm_total if total is None else total + arm_total
        return total

    @torch.no_grad()
    def clamp_scales(self) -> None:
        for s in self.logit_scales:
            s.clamp_(0, math.log(100))

    @torch.no_grad()
    def heads(self) -> list[Any]:
        """The trained arms as LiTHeads (eval mode)."""
        e = self.embed_dim
        for a, h in enumerate(self._init):
            h.image_proj.weight.copy_(self.image_weight[a * e:(a + 1) * e])
            h.text_proj.weight.copy_(self.text_weight[a * e:(a + 1) * e])
        return [h.eval() for h in self._init]


def init_heads(image_dim: int, text_dim: int, embed_dim: int = 256, seed: int = 0, tau: float | None = None) -> Any:
    """The heads fit_heads starts from without `init`: seeded default nn.Linear init, logit
    scale 1 / tau (tau default 0.07)."""
    from ..models.heads import LiTHeads

    torch.manual_seed(seed)
    return LiTHeads(image_dim, text_dim, embed_dim, 1 / (tau or 0.07))


def _batches(name: str, text_to_image: np.ndarray, batch_size: int, per_group: int, seed: int) -> Any:
    """Step-indexed batches of caption indices: "random" or "duplicates" (grouped by image)."""
    from ..data.samplers import DuplicateHeavyBatchSampler, RandomBatchSampler
    from .data import StepBatches

    if name == "random":
        return StepBatches(RandomBatchSampler(text_to_image.size, batch_size, seed))
    if name == "duplicates":
        return StepBatches(DuplicateHeavyBatchSampler(text_to_image, batch_size, per_group=per_group, seed=seed))
    raise GapkitError(f"fit_heads: sampler must be 'random' or 'duplicates', got {name!r}")
