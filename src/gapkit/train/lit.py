"""LiT-style heads on cached features of frozen towers: `fit_heads(image_feats, text_feats, ...)`.

Trains only two linear projections and the logit scale (gapkit.models.heads.LiTHeads) with any
registered loss, on precomputed tower features, so it takes seconds to minutes on a CPU:

    heads = fit_heads(img_feats, txt_feats, loss="clip", steps=500, seed=0)
    x = heads.project_image(img_feats); y = heads.project_text(txt_feats)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import GapkitError
from ..validation import as_matrix, check_mapping
from .loop import lr_factor, make_optimizer


def fit_heads(image_feats: Any, text_feats: Any, loss: str = "clip", steps: int = 500, seed: int = 0, *,
              text_to_image: Any = None, embed_dim: int = 256, batch_size: int = 256, lr: float = 1e-3,
              weight_decay: float = 0.1, warmup_steps: int = 20, tau: float | None = None,
              learnable_tau: bool = True, loss_kwargs: dict[str, Any] | None = None,
              progress: bool = False) -> Any:
    """Fit LiT heads on image features (N, D_img) and text features (M, D_txt).

    Pairs are (text j, image text_to_image[j]) (1:1 when text_to_image is None). `tau` sets the
    initial (or, with learnable_tau=False, fixed) temperature; default 0.07. Returns LiTHeads.
    """
    from tqdm.auto import tqdm

    from ..losses import create_loss
    from ..models.heads import LiTHeads

    img = torch.from_numpy(np.ascontiguousarray(as_matrix(image_feats, "image features", dtype=np.float32)))
    txt = torch.from_numpy(np.ascontiguousarray(as_matrix(text_feats, "text features", dtype=np.float32)))
    t2i = check_mapping(text_to_image, img.shape[0], txt.shape[0])
    t2i_t = torch.arange(txt.shape[0]) if t2i is None else torch.from_numpy(t2i)
    if steps < 1:
        raise GapkitError(f"steps must be >= 1, got {steps}")
    batch_size = min(batch_size, txt.shape[0])
    torch.manual_seed(seed)
    heads = LiTHeads(img.shape[1], txt.shape[1], embed_dim, 1 / (tau or 0.07))
    heads.logit_scale.requires_grad_(learnable_tau)
    loss_fn = create_loss(loss, **(loss_kwargs or {}))
    opt = make_optimizer([heads, loss_fn], lr, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup_steps, steps, 0.0))
    from ..data.samplers import RandomBatchSampler
    from .data import StepBatches

    sampler = StepBatches(RandomBatchSampler(txt.shape[0], batch_size, seed))
    for step in tqdm(range(steps), disable=not progress, desc="fit_heads"):
        idx = torch.from_numpy(sampler.batch(step))
        out = heads(img[t2i_t[idx]], txt[idx])
        terms = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        total = sum(v for k, v in terms.items() if k.endswith("_loss"))
        if not torch.isfinite(total):
            raise GapkitError(f"fit_heads: loss became {float(total)} at step {step}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            heads.logit_scale.clamp_(0, math.log(100))
    return heads.eval()
