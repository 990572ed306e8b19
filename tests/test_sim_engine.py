"""The compiled sphere engine: gradients against torch autograd, SGD steps against a torch step,
determinism, trace statistics against a naive reference, the gap dynamics, and bad parameters."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gapkit.errors import GapkitError
from gapkit.sim import SphereConfig, run_many, simulate
from gapkit.sim import kernels as K

TAU, BIAS, SIGMA, W_SSL, W_UNIF = 0.2, -3.0, 0.1, 0.7, 1.3


def _unit(rng: np.random.Generator, b: int, d: int) -> np.ndarray:
    x = rng.standard_normal((b, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- naive torch references, written from the formulas -------------------------------------------
def _clip(x, y, s):
    logits = s * x @ y.T
    t = torch.arange(len(x))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2


def _ntxent(u, s):
    n2 = len(u)
    logits = (s * u @ u.T).masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, (torch.arange(n2) + n2 // 2) % n2)


def _unif(u):
    sq = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    off = ~torch.eye(len(u), dtype=torch.bool)
    return torch.log(torch.exp(-2 * sq[off]).mean())


def _shi_eq7(x, y, s):
    """Shi et al. eq. 7 as printed, term by term: -log exp(l_ii) / sum_{j != i} exp(l_ij) (rows) and
    -log exp(l_ii) / sum_j exp(l_ji) (columns), averaged."""
    logits = s * x @ y.T
    b = len(x)
    rows = [torch.log(sum(torch.exp(logits[i, j]) for j in range(b) if j != i)) - logits[i, i] for i in range(b)]
    cols = [torch.log(torch.exp(logits[:, i]).sum()) - logits[i, i] for i in range(b)]
    return (sum(rows) + sum(cols)) / (2 * b)


def _reference(name, x, y, s, e1, e2):
    if name == "clip":
        return _clip(x, y, s)
    if name == "clip_shi_eq7":
        return _shi_eq7(x, y, s)
    if name == "simclr":
        return _ntxent(torch.cat([x, y]), s)
    if name == "slip":
        views = torch.cat([F.normalize(x + SIGMA * e1, dim=1), F.normalize(x + SIGMA * e2, dim=1)])
        return _clip(x, y, s) + W_SSL * _ntxent(views, s)
    if name == "siglip":
        sign = 2 * torch.eye(len(x), dtype=x.dtype) - 1
        return -F.logsigmoid(sign * (s * x @ y.T + BIAS)).sum() / len(x)
    if name == "align_uniform":
        return ((x - y) ** 2).sum(1).mean() + W_UNIF * (_unif(x) + _unif(y)) / 2
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(K.LOSS_IDS))
@pytest.mark.parametrize("b,d", [(6, 3), (5, 8)])
def test_gradients_match_autograd(name, b, d):
    rng = np.random.default_rng(b * 100 + d)
    X, Y = _unit(rng, b, d), _unit(rng, b, d)
    E1, E2 = rng.standard_normal((b, d)), rng.standard_normal((b, d))
    px, py = torch.tensor(X, requires_grad=True), torch.tensor(Y, requires_grad=True)
    ref = _reference(name, F.normalize(px, dim=1), F.normalize(py, dim=1), 1 / TAU,
                     torch.tensor(E1), torch.tensor(E2))
    ref.backward()
    loss, gx, gy = K.batch_loss_grad(K.LOSS_IDS[name], X, Y, 1 / TAU, BIAS, SIGMA, W_SSL, W_UNIF, E1, E2)
    assert loss == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(gx, px.grad.numpy(), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(gy, py.grad.numpy(), rtol=1e-8, atol=1e-11)


def test_low_temperature_gradients_are_finite_and_exact():
    rng = np.random.default_rng(3)
    X, Y = _unit(rng, 10, 3), _unit(rng, 10, 3)
    s = 250.0  # close to the engine's limit of 300
    px, py = torch.tensor(X, requires_grad=True), torch.tensor(Y, requires_grad=True)
    _clip(F.normalize(px, dim=1), F.normalize(py, dim=1), s).backward()
    _, gx, _ = K.batch_loss_grad(K.LOSS_IDS["clip"], X, Y, s, 0.0, 0.0, 1.0, 1.0, X, X)
    np.testing.assert_allclose(gx, px.grad.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("loss, reproject", [("clip", True), ("clip_shi_eq7", True), ("simclr", True), ("siglip", True),
                                             ("align_uniform", True), ("clip", False), ("siglip", False)])
def test_sgd_epochs_match_a_torch_loop(loss, reproject):
    """With batch == n every epoch is one full-batch step, whose result does not depend on the
    permutation (the losses are invariant to reordering pairs): the engine must then follow a plain
    torch SGD loop on normalised points (with or without re-projection), step for step."""
    cfg = SphereConfig(loss=loss, init="nearby", n=8, batch=8, epochs=25, tau=TAU, lr=0.05, traces=1,
                       siglip_bias=BIAS, unif_weight=W_UNIF, seed=4, reproject=reproject)
    res = simulate(cfg)
    from gapkit.sim.init import initial_points

    x0, y0 = initial_points(cfg)
    X, Y = torch.tensor(x0, requires_grad=True), torch.tensor(y0, requires_grad=True)
    for _ in range(cfg.epochs):
        value = _reference(loss, F.normalize(X, dim=1), F.normalize(Y, dim=1), 1 / TAU, None, None)
        gx, gy = torch.autograd.grad(value, [X, Y])
        with torch.no_grad():
            X, Y = X - cfg.lr * gx, Y - cfg.lr * gy
            if reproject:
                X, Y = F.normalize(X, dim=1), F.normalize(Y, dim=1)
            else:  # free parameters: the step is orthogonal to p, so the norms can only grow
                assert (X.norm(dim=1) > 1.0).all()
            X, Y = X.requires_grad_(True), Y.requires_grad_(True)
    np.testing.assert_allclose(res.image, F.normalize(X.detach(), dim=1).numpy(), atol=1e-10)
    np.testing.assert_allclose(res.text, F.normalize(Y.detach(), dim=1).numpy(), atol=1e-10)
    assert res.traces["loss"][-1] == pytest.approx(value.item(), rel=1e-9)


@pytest.mark.parametrize("loss, kw", [("clip", {}), ("clip_shi_eq7", {}),
                                      ("siglip", {"init_bias": -3.0, "learn_bias": False})])
def test_torch_engine_with_registry_losses_agrees_with_compiled_engine(loss, kw):
    """gapkit.losses' clip and siglip, run through autograd, follow the compiled kernels' trajectory
    (full-batch epochs, so the batch order does not matter)."""
    from gapkit.sim.torch_engine import simulate_torch

    cfg = SphereConfig(loss=loss, init="polar", n=10, batch=10, epochs=30, traces=3, seed=2, siglip_bias=-3.0)
    fast, slow = simulate(cfg), simulate_torch(cfg, **kw)
    np.testing.assert_allclose(fast.image, slow.image, atol=1e-10)
    np.testing.assert_allclose(fast.traces["centroid_distance"], slow.traces["centroid_distance"], atol=1e-10)
    assert fast.final("loss") == pytest.approx(slow.final("loss"), rel=1e-9)


def test_same_seed_same_trajectory_and_seeds_differ():
    cfg = SphereConfig(loss="slip", n=100, epochs=200, traces=10, seed=7)
    a, b = simulate(cfg), simulate(cfg)
    c = simulate(cfg.replace(seed=8))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.snapshots_text, b.snapshots_text)
    for k in a.traces:
        np.testing.assert_array_equal(a.traces[k], b.traces[k])
    assert not np.allclose(a.image, c.image)


@pytest.mark.parametrize("d", [3, 4])  # S^2 has its own fused loops
def test_trace_stats_match_naive_definitions(d):
    rng = np.random.default_rng(0)
    X, Y = _unit(rng, 40, d) + np.eye(d)[0], _unit(rng, 40, d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    got = dict(zip(K.TRACE_KEYS, K.trace_stats(X, Y)))
    gap = X.mean(0) - Y.mean(0)
    cross = np.linalg.norm(X[:, None] - Y[None], axis=-1)
    off = ~np.eye(40, dtype=bool)

    def unif(U):
        return np.log(np.exp(-2 * ((U[:, None] - U[None]) ** 2).sum(-1))[off].mean())

    mid = (X.mean(0) + Y.mean(0)) / 2 @ gap
    assert got["centroid_distance"] == pytest.approx(np.linalg.norm(gap))
    assert got["paired_distance_mean"] == pytest.approx(np.diag(cross).mean())
    assert got["paired_cosine_mean"] == pytest.approx((X * Y).sum(1).mean())
    assert got["cross_distance_mean"] == pytest.approx(cross.mean())
    assert got["uniformity_image"] == pytest.approx(unif(X))
    assert got["uniformity_text"] == pytest.approx(unif(Y))
    assert got["linear_separation"] == pytest.approx(((X @ gap > mid).sum() + (Y @ gap < mid).sum()) / 80)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_overlapped_init_never_develops_a_gap_while_polar_does(tau):
    base = SphereConfig(loss="clip", n=200, epochs=6000, traces=40, trace_spacing="log", tau=tau)
    over, polar = run_many([base.replace(init="overlapped"), base.replace(init="polar")], processes=2)
    # Overlapped: the centroids never separate and no hyperplane splits the modalities.
    assert over.traces["centroid_distance"].max() < 0.1
    assert over.traces["linear_separation"].max() < 0.75
    # Polar (control): the modalities stay on two disjoint sides for hundreds of epochs.
    late = polar.traces["epoch"] >= 500
    assert polar.traces["linear_separation"][late][0] >= 0.99
    assert polar.traces["centroid_distance"][late][0] > 0.5


@pytest.mark.parametrize("kw, words", [
    ({"tau": -0.1}, "tau"), ({"tau": 0.0}, "tau"), ({"tau": 1e-4}, "tau"),
    ({"batch": 20, "n": 10}, "batch"), ({"loss": "nope"}, "unknown loss"), ({"init": "nope"}, "unknown init"),
    ({"batch": 1}, "batch"), ({"lr": 0}, "lr"), ({"epochs": -1}, "epochs"), ({"d": 1}, "d must"),
    ({"spread": -1}, "spread"), ({"snapshots": (5,), "epochs": 3}, "snapshot"), ({"n": 2.5}, "n must"),
])
def test_bad_parameters_raise_clear_errors(kw, words):
    with pytest.raises(GapkitError, match=words):
        SphereConfig(**kw)


def test_replace_rejects_unknown_fields():
    with pytest.raises(GapkitError, match="unknown sphere parameter"):
        SphereConfig().replace(temperature=0.1)
