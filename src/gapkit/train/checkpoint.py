"""Atomic, pickle-free checkpoints: safetensors for tensors, JSON for everything else.

<run>/checkpoint/ holds
    model.safetensors      model (and loss-module) parameters and buffers
    optimizer.safetensors  AdamW moments per parameter ("state.<i>.<key>") and RNG states
    state.json             step, sampler position, optimizer param_groups, scheduler state, metadata
The directory is written to a temporary sibling and renamed over the old one (gapkit.atomic),
so a crash at any moment leaves the previous complete checkpoint in place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_dir, read_json_object, recover_dir, write_json_atomic
from ..errors import GapkitError, reading

CHECKPOINT = "checkpoint"


def _flat_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": (v if isinstance(v, torch.Tensor) else torch.tensor(v)).detach().cpu().contiguous()
               for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def _unflat_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        if key.startswith("state."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = t
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any]) -> Path:
    """Write <run_dir>/checkpoint atomically. `modules` maps a key prefix to a module."""
    from safetensors.torch import save_file

    weights = {f"{prefix}.{k}": v.detach().cpu().contiguous()
               for prefix, m in modules.items() for k, v in m.state_dict().items()}
    opt_tensors, groups = _flat_optimizer(optimizer)
    opt_tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        opt_tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = dict(state, param_groups=groups, scheduler=scheduler.state_dict())
    with atomic_dir(run_dir / CHECKPOINT) as tmp:
        save_file(weights, str(tmp / "model.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        write_json_atomic(tmp / "state.json", meta)
    return run_dir / CHECKPOINT


def read_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, optimizer tensors, state) of <run_dir>/checkpoint; GapkitError if incomplete."""
    from safetensors.torch import load_file

    d = Path(run_dir) / CHECKPOINT
    recover_dir(d)  # a save killed between its two renames left complete copies: put one back
    files = [d / "model.safetensors", d / "optimizer.safetensors", d / "state.json"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise GapkitError(f"{d}: no complete checkpoint to resume from (missing {', '.join(missing)})")
    with reading(d, "checkpoint"):
        state = read_json_object(files[2], "checkpoint state")
        int(state["step"]), list(state["param_groups"]), dict(state["scheduler"])
        return load_file(str(files[0])), load_file(str(files[1])), state


def split_weights(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `weights` under `prefix.`, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in weights.items() if k.startswith(p)}


def restore(modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, scheduler: Any,
            weights: dict[str, torch.Tensor], opt_tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Load module weights, optimizer and scheduler state and the RNG states in place."""
    for prefix, m in modules.items():
        m.load_state_dict(split_weights(weights, prefix))
    optimizer.load_state_dict(_unflat_optimizer(opt_tensors, state["param_groups"]))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(opt_tensors["rng.torch"])
    if "rng.cuda" in opt_tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(opt_tensors["rng.cuda"])
