"""Two CPU processes (gloo), each holding part of a batch, give the loss and gradients of one
process holding the whole batch.

Convention checked (gapkit.distributed): each rank's feature gradient is world_size * the
single-process gradient, so that DDP's averaging of parameter gradients yields exactly the
single-process parameter gradient; replicated scalars (logit scale, SigLIP bias) get the single-
process gradient on every rank.
"""
from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gapkit.distributed import all_gather_with_grad, rank, world_size
from gapkit.losses import create_loss

WORLD = 2
N, DIM_IN, DIM, SEM = 10, 6, 4, 3
# (loss name, kwargs); every loss in the registry that takes a global batch
CASES = [
    ("clip", {}),
    ("clip", {"chunk_size": 3}),
    ("siglip", {"init_bias": -2.0}),
    ("imsep", {"text_term": True}),
    ("slip", {}),
    ("cyclip", {}),
    ("cuaxu", {}),
    ("dual_ce", {}),
]
SPLITS = {"equal": [5, 5], "unequal": [6, 4]}


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "img_in": torch.randn(N, DIM_IN, generator=g, dtype=torch.float64),
        "txt_in": torch.randn(N, DIM_IN, generator=g, dtype=torch.float64),
        "w_img": torch.randn(DIM_IN, DIM, generator=g, dtype=torch.float64),
        "w_txt": torch.randn(DIM_IN, DIM, generator=g, dtype=torch.float64),
        "semantic": torch.randn(N, SEM, generator=g, dtype=torch.float64),
        "noise": torch.randn(N, DIM_IN, generator=g, dtype=torch.float64),
    }


def step(name: str, kw: dict, rows: slice) -> dict[str, torch.Tensor]:
    """A tiny 'model' (two linear projections + L2 norm) on the given rows, one loss backward."""
    b = batch()
    w_img = b["w_img"].requires_grad_()
    w_txt = b["w_txt"].requires_grad_()
    scale = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    x = F.normalize(b["img_in"][rows] @ w_img, dim=1)
    y = F.normalize(b["txt_in"][rows] @ w_txt, dim=1)
    view = F.normalize((b["img_in"][rows] + 0.3 * b["noise"][rows]) @ w_img, dim=1)  # a 2nd image view
    x.retain_grad()
    y.retain_grad()
    loss_fn = create_loss(name, **kw).double()
    terms = loss_fn(x, y, scale, semantic=b["semantic"][rows], views=view)
    total = sum(terms.values())
    total.backward()
    out = {"loss": total.detach().reshape(1), "gx": x.grad, "gy": y.grad, "g_scale": scale.grad.reshape(1),
           "g_w_img": w_img.grad, "g_w_txt": w_txt.grad}
    for pname, p in loss_fn.named_parameters():
        out[f"g_{pname}"] = p.grad.reshape(-1)
    return out


def _worker(r: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=r, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        assert (world_size(), rank()) == (WORLD, r)
        for split_name, sizes in SPLITS.items():
            start = sum(sizes[:r])
            rows = slice(start, start + sizes[r])
            for i, (name, kw) in enumerate(CASES):
                out = step(name, kw, rows)
                # DDP averages parameter gradients over ranks: emulate it
                for key in [k for k in out if k.startswith("g_w") or k == "g_logit_bias"]:
                    dist.all_reduce(out[key])
                    out[key] /= WORLD
                save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(out_dir, f"{split_name}_{i}_{r}.st"))
        # all_gather_with_grad keeps rank order and is the identity for the caller's own slice
        t = torch.full((r + 1, 2), float(r), requires_grad=True)
        g = all_gather_with_grad(t)
        assert g.shape == (3, 2) and g[0].eq(0).all() and g[1:].eq(1).all()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results():
    with tempfile.TemporaryDirectory() as tmp:
        # fork: the children inherit the imported modules (spawn re-imports torch, ~10 s per child on
        # a busy 2-core machine); the workers use one intra-op thread each
        mp.start_processes(_worker, args=(free_port(), tmp), nprocs=WORLD, join=True, start_method="fork")
        yield {f: load_file(os.path.join(tmp, f)) for f in os.listdir(tmp)}


@pytest.mark.timeout(180)  # a hung collective fails the test instead of stalling the suite
@pytest.mark.parametrize("split_name", list(SPLITS))
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}{kw or ''}" for n, kw in CASES])
def test_two_processes_equal_one(ddp_results, split_name, case):
    name, kw = CASES[case]
    single = step(name, kw, slice(0, N))
    ranks = [ddp_results[f"{split_name}_{case}_{r}.st"] for r in range(WORLD)]
    tol = {"rtol": 1e-5, "atol": 1e-5}
    for part in ranks:  # every rank computes the loss of the global batch
        torch.testing.assert_close(part["loss"], single["loss"], **tol)
        torch.testing.assert_close(part["g_scale"], single["g_scale"], **tol)
        for key in [k for k in single if k.startswith("g_w") or k == "g_logit_bias"]:
            torch.testing.assert_close(part[key], single[key], **tol)
    for key in ("gx", "gy"):  # feature gradients: world_size x the single-process ones (see docstring)
        full = torch.cat([part[key] for part in ranks]) / WORLD
        torch.testing.assert_close(full, single[key], **tol)


def test_single_process_is_identity():
    t = torch.randn(3, 2)
    assert all_gather_with_grad(t) is t
    assert (world_size(), rank()) == (1, 0)
