"""Every loss against a naive per-sample formula written here with explicit loops (small B)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gapkit.errors import GapkitError
from gapkit.losses import available_losses, create_loss

B, DIM = 6, 5


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(sum(float(a[k]) * float(b[k]) for k in range(a.shape[0])))


def neg_log_softmax_at(values: list[float], target: int) -> float:
    """-log(exp(v_t) / sum_k exp(v_k)), by hand."""
    return -(values[target] - math.log(sum(math.exp(v) for v in values)))


@pytest.fixture
def feats():
    return unit(B, DIM, 1), unit(B, DIM, 2)


def naive_clip(x, y, s, reduction="mean"):
    n = x.shape[0]
    rows = sum(neg_log_softmax_at([s * dot(x[i], y[j]) for j in range(n)], i) for i in range(n)) / n
    cols = sum(neg_log_softmax_at([s * dot(x[i], y[j]) for i in range(n)], j) for j in range(n)) / n
    return (rows + cols) / 2 if reduction == "mean" else rows + cols


def naive_separation(same, paired_x, paired_y, dist, s):
    """mean_i -log exp(s<x_i,y_i>) / (exp(s<x_i,y_i>) + sum_{j!=i} exp(s same_ij D_ij))."""
    n = same.shape[0]
    total = 0.0
    for i in range(n):
        pos = s * dot(paired_x[i], paired_y[i])
        denom = math.exp(pos) + sum(math.exp(s * float(same[i, j]) * float(dist[i, j])) for j in range(n) if j != i)
        total += -(pos - math.log(denom))
    return total / n


def test_registry_lists_known_names_on_error():
    with pytest.raises(GapkitError, match="known: .*clip.*imsep.*siglip"):
        create_loss("nope")
    for name in ("clip", "clip_chunked", "siglip", "imsep"):
        assert name in available_losses()


def test_clip_matches_naive(feats):
    x, y = feats
    out = create_loss("clip")(x, y, 7.0)
    assert set(out) == {"contrastive_loss"}
    assert out["contrastive_loss"].item() == pytest.approx(naive_clip(x, y, 7.0), rel=1e-10)


def test_siglip_matches_naive(feats):
    x, y = feats
    s, b = 10.0, -3.0
    expected = 0.0
    for i in range(B):
        for j in range(B):
            z = s * dot(x[i], y[j]) + b
            label = 1.0 if i == j else -1.0
            expected += -math.log(1 / (1 + math.exp(-label * z)))
    expected /= B
    loss = create_loss("siglip", init_bias=b)
    assert loss(x, y, s)["contrastive_loss"].item() == pytest.approx(expected, rel=1e-10)
    # a per-call bias overrides the module's parameter
    assert loss(x, y, s, logit_bias=b)["contrastive_loss"].item() == pytest.approx(expected, rel=1e-10)


def test_siglip_bias_is_learnable_and_starts_at_minus_ten(feats):
    x, y = feats
    loss = create_loss("siglip")
    assert loss.logit_bias.item() == -10.0
    assert [p for p in loss.parameters()] == [loss.logit_bias]
    loss(x.float(), y.float(), 10.0)["contrastive_loss"].backward()
    assert loss.logit_bias.grad is not None and loss.logit_bias.grad.abs().item() > 0
    assert list(create_loss("siglip", learn_bias=False).parameters()) == []


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_imsep_matches_naive(feats, reduction):
    x, y = feats
    sem = unit(B, 4, 3)
    s, alpha, beta = 9.0, 0.7, 0.3
    dist = [[1 - dot(sem[i], sem[j]) for j in range(B)] for i in range(B)]
    dist_t = torch.tensor(dist, dtype=torch.float64)
    v = torch.tensor([[dot(x[i], x[j]) for j in range(B)] for i in range(B)], dtype=torch.float64)
    t = torch.tensor([[dot(y[i], y[j]) for j in range(B)] for i in range(B)], dtype=torch.float64)
    loss = create_loss("imsep", alpha=alpha, beta=beta, text_term=True, clip_reduction=reduction)
    out = loss(x, y, s, semantic=sem * 3.0)  # un-normalised semantic input is normalised inside
    assert set(out) == {"contrastive_loss", "imsep_image_loss", "imsep_text_loss"}
    assert out["contrastive_loss"].item() == pytest.approx(alpha * naive_clip(x, y, s, reduction), rel=1e-10)
    assert out["imsep_image_loss"].item() == pytest.approx(beta * naive_separation(v, x, y, dist_t, s), rel=1e-10)
    assert out["imsep_text_loss"].item() == pytest.approx(beta * naive_separation(t, x, y, dist_t, s), rel=1e-10)


def test_imsep_defaults_are_the_papers(feats):
    x, y = feats
    loss = create_loss("imsep")
    assert (loss.alpha, loss.beta, loss.image_term, loss.text_term, loss.clip_reduction) == (1.0, 0.5, True, False, "mean")
    assert set(loss(x, y, 5.0, semantic=unit(B, 4, 3))) == {"contrastive_loss", "imsep_image_loss"}


def test_imsep_with_distance_one_is_plain_intra_inter_infonce(feats):
    """D = 1 everywhere: -log exp(s<x_i,y_i>) / (exp(s<x_i,y_i>) + sum_{j!=i} exp(s<x_i,x_j>))."""
    x, y = feats
    s = 6.0
    sem = torch.eye(B, dtype=torch.float64)  # orthogonal captions -> S = I -> D = 1 off the diagonal
    expected = 0.0
    for i in range(B):
        pos = s * dot(x[i], y[i])
        negatives = [s * dot(x[i], x[j]) for j in range(B) if j != i]
        expected += neg_log_softmax_at([pos, *negatives], 0)
    expected /= B
    for loss, kw in ((create_loss("imsep", beta=1.0), {"semantic": sem}),
                     (create_loss("imsep", beta=1.0, semantic_supervision=False), {})):
        assert loss(x, y, s, **kw)["imsep_image_loss"].item() == pytest.approx(expected, rel=1e-10)


def test_imsep_identical_captions_contribute_exactly_exp0(feats):
    """Captions 0 and 1 identical -> D_01 = 0 -> image 1 adds exp(0) = 1 to image 0's denominator,
    whatever the image cosine V_01 is."""
    x, y = feats
    s = 8.0
    sem = torch.eye(B, dtype=torch.float64)
    sem[1] = sem[0]
    loss = create_loss("imsep", beta=1.0)
    row0 = []
    for x1 in (x[1], -x[0], x[0]):  # very different V_01, same loss row 0
        xx = x.clone()
        xx[1] = x1
        logits_row0 = [s * dot(xx[0], y[0]), 0.0] + [s * dot(xx[0], xx[j]) for j in range(2, B)]
        row0.append(neg_log_softmax_at(logits_row0, 0))
        # rebuild the per-row losses by hand and compare the mean with the module
        rows = [row0[-1]]
        for i in range(1, B):
            vals = [s * dot(xx[i], y[i]) if j == i else s * dot(xx[i], xx[j]) * (1 - dot(sem[i], sem[j]))
                    for j in range(B)]
            rows.append(neg_log_softmax_at(vals, i))
        got = loss(xx, y, s, semantic=sem)["imsep_image_loss"].item()
        assert got == pytest.approx(sum(rows) / B, rel=1e-10)
    # the exp(0) term: row 0's value is independent of image 1
    assert row0[0] == pytest.approx(row0[1], rel=1e-12) == pytest.approx(row0[2], rel=1e-12)


def test_imsep_missing_semantic_is_a_clear_error(feats):
    x, y = feats
    with pytest.raises(GapkitError, match="semantic"):
        create_loss("imsep")(x, y, 5.0)
    with pytest.raises(GapkitError, match="rows"):
        create_loss("imsep")(x, y, 5.0, semantic=torch.randn(B + 1, 3))
    with pytest.raises(GapkitError, match="clip_reduction"):
        create_loss("imsep", clip_reduction="max")


def test_shape_mismatch_is_a_clear_error(feats):
    x, y = feats
    with pytest.raises(GapkitError, match="same"):
        create_loss("clip")(x, y[:-1], 5.0)


@pytest.mark.parametrize("chunk", [1, 4, 7, 13, 64])
def test_chunked_clip_equals_plain_value_and_grads(chunk):
    n = 13
    x0, y0 = unit(n, 8, 5), unit(n, 8, 6)
    results = []
    for loss in (create_loss("clip"), create_loss("clip", chunk_size=chunk)):
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        s = torch.tensor(11.0, dtype=torch.float64, requires_grad=True)
        value = loss(x, y, s)["contrastive_loss"]
        results.append((value, *torch.autograd.grad(3.0 * value, (x, y, s))))
    for plain, chunked in zip(*results):
        torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-12)


def test_chunked_clip_float_scale_and_registry_alias():
    x, y = unit(9, 4, 7), unit(9, 4, 8)
    plain = create_loss("clip")(x, y, 3.0)["contrastive_loss"]
    alias = create_loss("clip_chunked", chunk_size=2)(x, y, 3.0)["contrastive_loss"]
    assert alias.item() == pytest.approx(plain.item(), rel=1e-12)
    with pytest.raises(GapkitError, match="chunk_size"):
        create_loss("clip", chunk_size=0)(x, y, 3.0)
