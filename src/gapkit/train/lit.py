"""LiT-style heads on cached features of frozen towers: `fit_heads(image_feats, text_feats, ...)`.

Trains only two linear projections and the logit scale (gapkit.models.heads.LiTHeads) with any
registered loss, on precomputed tower features, so it takes seconds to minutes on a CPU:

    heads = fit_heads(img_feats, txt_feats, loss="clip", steps=500, seed=0)
    x = heads.project_image(img_feats); y = heads.project_text(txt_feats)
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..errors import GapkitError
from ..validation import as_matrix, check_mapping
from .loop import lr_factor, make_optimizer


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

    img = torch.from_numpy(np.ascontiguousarray(as_matrix(image_feats, "image features", dtype=np.float32)))
    txt = torch.from_numpy(np.ascontiguousarray(as_matrix(text_feats, "text features", dtype=np.float32)))
    t2i = check_mapping(text_to_image, img.shape[0], txt.shape[0])
    t2i_t = torch.arange(txt.shape[0]) if t2i is None else torch.from_numpy(t2i)
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
