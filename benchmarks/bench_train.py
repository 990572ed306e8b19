"""One training step of gapkit's CLIP vs open_clip's CLIP + ClipLoss, same architecture and batch.

What is compared: both models are built from the same open_clip-schema dict (default the preset
`tiny-openclip`: ViT 64 px / patch 16 / width 128 / 2 layers; text 32 tokens / width 128 /
2 layers; embed 128). open_clip: `open_clip.CLIP(embed_dim, vision_cfg, text_cfg)` with
`open_clip.loss.ClipLoss()`; gapkit: `gapkit.models.create_model(cfg)` with
`gapkit.losses.create_loss("clip")`. A step = forward of both towers on the same pixels and
token ids, the symmetric InfoNCE loss, backward, and an AdamW step. Parameter counts are printed
so the equality of the architectures can be checked. Repeats alternate between the two models
(so machine load hits both alike); the ratio is median(gapkit) / median(open_clip); target <= 1.05.

    PYTHONPATH=src python benchmarks/bench_train.py [--config tiny-openclip] [--batch 128] [--repeats 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def step_fn(model, loss_fn, images, tokens, optimizer):
    def step() -> None:
        if hasattr(model, "scale"):  # gapkit: forward returns normalised features and s
            out = model(images, tokens)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])["contrastive_loss"]
        else:  # open_clip: forward returns a dict when output_dict=True
            out = model(images, tokens)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny-openclip")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import open_clip
    import torch
    from open_clip.loss import ClipLoss as OpenClipLoss

    from gapkit.losses import create_loss
    from gapkit.models import create_model, get_model_config

    torch.set_num_threads(args.threads)
    cfg = get_model_config(args.config)
    if cfg["model"] != "clip":
        raise SystemExit("the comparison needs a two-tower config (open_clip has no SharedCLIP)")
    strip = {"tokenizer", "type"}
    ocfg_v = {k: v for k, v in cfg["vision_cfg"].items() if k not in strip}
    if "heads" in ocfg_v:  # open_clip's vision config names the head width, not the head count
        ocfg_v["head_width"] = ocfg_v["width"] // ocfg_v.pop("heads")
    ocfg_t = {k: v for k, v in cfg["text_cfg"].items() if k not in strip}
    torch.manual_seed(0)
    theirs = open_clip.CLIP(cfg["embed_dim"], ocfg_v, ocfg_t, output_dict=True)
    ours = create_model(cfg, seed=0)
    n_theirs = sum(p.numel() for p in theirs.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    s = cfg["vision_cfg"]["image_size"]
    images = torch.randn(args.batch, 3, s, s)
    tokens = ours.tokenizer([f"a photo of item number {i}" for i in range(args.batch)])
    steps = {
        "open_clip": step_fn(theirs.train(), OpenClipLoss(), images, tokens, torch.optim.AdamW(theirs.parameters(), 1e-4)),
        "gapkit": step_fn(ours.train(), create_loss("clip"), images, tokens, torch.optim.AdamW(ours.parameters(), 1e-4)),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for name, fn in steps.items():
        for _ in range(args.warmup):
            fn()
    for _ in range(args.repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"config {args.config}, batch {args.batch}, threads {args.threads}, repeats {args.repeats} (CPU; no GPU here)")
    print(f"parameters: open_clip {n_theirs:,}  gapkit {n_ours:,}")
    for k, v in med.items():
        print(f"{k:>10}: median step {v * 1e3:8.1f} ms  ({1 / v:6.1f} steps/s)")
    ratio = med["gapkit"] / med["open_clip"]
    print(f"ratio gapkit / open_clip = {ratio:.3f}  (target <= 1.05: {'PASS' if ratio <= 1.05 else 'FAIL'})")


if __name__ == "__main__":
    main()
