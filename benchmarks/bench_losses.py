"""Loss benchmarks, baseline and gapkit side by side in one run; prints medians and ratios.

1. IMSep vs CLIP at batch 256, dim 512 (target: IMSep costs <= 15 % more per training step).
   Measured two ways, interleaved, medians of repeats, in CPU time of the process (the machines
   here are shared; wall-clock ratios swing with other jobs' load):
   a) loss only: forward + backward of the loss on given (256, 512) features (+ cached (256, 384)
      SBERT caption embeddings for IMSep);
   b) a small model step: a tiny CLIP (a 3-layer CNN on 1x28x28 images and a 2-layer transformer on
      16 tokens, width 128, projections to 512) forward + loss + backward + AdamW step, batch 256.
      The 15 % target is stated for (b), a training step; (a) shows the loss's own overhead.
2. Chunked vs plain symmetric InfoNCE at batch 16,384, dim 512 (target: loss-only peak memory of
   the chunked loss <= 1/4 of the plain B x B one, with equal value and gradients).
   Each variant runs in its own subprocess; "loss-only peak" = peak resident set size during the
   loss forward+backward minus the RSS just before it (Linux: the peak VmHWM is reset by writing 5
   to /proc/self/clear_refs), i.e. the memory the loss itself adds on top of its inputs: the CPU
   equivalent of tracemalloc or torch.cuda.max_memory_allocated.
   Values and gradients of the two variants are compared in the parent.

Usage: PYTHONPATH=src python benchmarks/bench_losses.py [--quick] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gapkit.losses import create_loss


# ----------------------------------------------------------------------------------- 1. IMSep cost
class TinyClip(nn.Module):
    """A small two-tower CLIP: enough compute per step to be a realistic 'tiny model' step here."""

    def __init__(self, width: int = 128, dim: int = 512, vocab: int = 1000, seq: int = 16) -> None:
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, width, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, dim),
        )
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.zeros(seq, width))
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, batch_first=True, norm_first=True)
        self.text = nn.TransformerEncoder(layer, 2)
        self.text_proj = nn.Linear(width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.normalize(self.image(images), dim=1)
        h = self.text(self.tok(tokens) + self.pos)
        y = F.normalize(self.text_proj(h[:, -1]), dim=1)
        return x, y


def time_it(fn, repeats: int) -> list[float]:
    """CPU seconds of this process per call (time.process_time): on a machine shared with other
    jobs, wall-clock time mostly measures their load; CPU time measures our work."""
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


def interleaved(fns: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median CPU seconds per call of each fn, alternating them so machine load hits both alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k] += time_it(fn, 1)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_imsep(batch: int, repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x0 = F.normalize(torch.randn(batch, 512, generator=g), dim=1)
    y0 = F.normalize(torch.randn(batch, 512, generator=g), dim=1)
    semantic = F.normalize(torch.randn(batch, 384, generator=g), dim=1)  # the cached SBERT rows
    scale = torch.tensor(14.3, requires_grad=True)
    losses = {"clip": create_loss("clip"), "imsep": create_loss("imsep")}

    def loss_step(name):
        def run():
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            sum(losses[name](x, y, scale, semantic=semantic).values()).backward()
        return run

    loss_only = interleaved({k: loss_step(k) for k in losses}, repeats)

    images = torch.randn(batch, 1, 28, 28, generator=g)
    tokens = torch.randint(0, 1000, (batch, 16), generator=g)
    models = {}
    for name in losses:
        torch.manual_seed(0)
        model = TinyClip()
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))

    def model_step(name):
        model, opt = models[name]

        def run():
            opt.zero_grad(set_to_none=True)
            x, y = model(images, tokens)
            sum(losses[name](x, y, model.logit_scale.exp(), semantic=semantic).values()).backward()
            opt.step()
        return run

    step = interleaved({k: model_step(k) for k in losses}, max(5, repeats // 4))
    return {"loss_only_clip_ms": 1e3 * loss_only["clip"], "loss_only_imsep_ms": 1e3 * loss_only["imsep"],
            "loss_only_ratio": loss_only["imsep"] / loss_only["clip"],
            "model_step_clip_ms": 1e3 * step["clip"], "model_step_imsep_ms": 1e3 * step["imsep"],
            "model_step_ratio": step["imsep"] / step["clip"]}


# ------------------------------------------------------------------------------ 2. chunked memory
CHILD = r"""
import json, sys, torch, torch.nn.functional as F
from safetensors.torch import save_file
from gapkit.losses import create_loss
n, d, chunk, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(int(sys.argv[5]))
g = torch.Generator().manual_seed(0)
x = F.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_()
y = F.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_()
s = torch.tensor(14.3, requires_grad=True)
loss = create_loss("clip", chunk_size=chunk if chunk > 0 else None)
# warm-up on a small batch: one-off library set-up (BLAS buffers, thread pools) is not the loss's
w = x[:64].detach().requires_grad_()
loss(w, y[:64].detach(), s)["contrastive_loss"].backward()
s.grad = None
def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak RSS (VmHWM) to the current RSS
    f.write("5")
before = status_kb("VmRSS")
value = loss(x, y, s)["contrastive_loss"]
value.backward()
peak = status_kb("VmHWM") - before
save_file({"gx": x.grad, "gy": y.grad, "gs": s.grad.reshape(1)}, out)
print(json.dumps({"value": value.item(), "peak_bytes": peak * 1024}))
"""


def run_child(n: int, d: int, chunk: int, out: str, threads: int) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    # A fixed glibc mmap threshold makes every large tensor its own mapping, returned to the OS when
    # freed, so RSS follows the live tensors (the default dynamic threshold keeps freed blocks of up
    # to 32 MiB in the heap and inflates the peak of whichever variant frees and reallocates most).
    env = {"PYTHONPATH": src, "OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin",
           "MALLOC_MMAP_THRESHOLD_": "1048576"}
    res = subprocess.run([sys.executable, "-c", CHILD, str(n), str(d), str(chunk), out, str(threads)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_chunked(n: int, d: int, chunk: int, threads: int) -> dict[str, float]:
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        plain = run_child(n, d, 0, f"{tmp}/plain.st", threads)
        chunked = run_child(n, d, chunk, f"{tmp}/chunked.st", threads)
        ga, gb = load_file(f"{tmp}/plain.st"), load_file(f"{tmp}/chunked.st")
        grad_err = max(float((ga[k] - gb[k]).abs().max() / ga[k].abs().max()) for k in ga)
    return {"plain_peak_mb": plain["peak_bytes"] / 2**20, "chunked_peak_mb": chunked["peak_bytes"] / 2**20,
            "memory_ratio": chunked["peak_bytes"] / plain["peak_bytes"],
            "value_plain": plain["value"], "value_chunked": chunked["value"],
            "value_rel_diff": abs(plain["value"] - chunked["value"]) / abs(plain["value"]),
            "grad_max_rel_err": grad_err}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, batch 4096 for the memory part")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--skip-memory", action="store_true", help="only the IMSep timing")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    r1 = bench_imsep(256, repeats=20 if args.quick else 60)
    print(f"IMSep vs CLIP, batch 256, dim 512 (median CPU time; threads={args.threads})")
    print(f"  loss only  (fwd+bwd):         clip {r1['loss_only_clip_ms']:.2f} ms   imsep "
          f"{r1['loss_only_imsep_ms']:.2f} ms   ratio {r1['loss_only_ratio']:.3f}")
    print(f"  tiny-CLIP training step:      clip {r1['model_step_clip_ms']:.1f} ms   imsep "
          f"{r1['model_step_imsep_ms']:.1f} ms   ratio {r1['model_step_ratio']:.3f}   (target <= 1.15)")

    if args.skip_memory:
        print(json.dumps({"imsep": r1}))
        return 0
    n = 4096 if args.quick else 16384
    r2 = bench_chunked(n, 512, args.chunk, args.threads)
    print(f"Chunked vs plain symmetric InfoNCE, batch {n}, dim 512, chunk {args.chunk} (loss-only peak RSS)")
    print(f"  plain {r2['plain_peak_mb']:.0f} MiB   chunked {r2['chunked_peak_mb']:.0f} MiB   "
          f"ratio {r2['memory_ratio']:.3f}   (target <= 0.25)")
    print(f"  value plain {r2['value_plain']:.6f} chunked {r2['value_chunked']:.6f} (rel diff "
          f"{r2['value_rel_diff']:.1e}); max relative gradient error {r2['grad_max_rel_err']:.1e}")
    print(json.dumps({"imsep": r1, "chunked": r2}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
