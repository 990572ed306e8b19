"""Every loss against a naive per-sample formula written here with explicit loops (small B)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F

from gapkit.errors import GapkitError
from gapkit.losses import available_losses, create_loss
from tests._synthetic_pairs import single_thread

B, DIM = 6, 5


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(sum(float(a[k]) * float(b[k]) for k in range(a.shape[0])))


def neg_log_softmax_at(values: list[float], target: int) -> float:
    """-log(exp(v_t) / sum_k exp(v_k)), by hand."""
    return -(values[target] - math.log(sum(math.exp(v) for v in values)))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    yield from single_thread()


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


def test_unknown_parameter_is_a_clear_error():
    with pytest.raises(GapkitError, match="loss 'imsep'.*parameters: alpha"):
        create_loss("imsep", gamma=1.0)


def naive_nt_xent(a, b, s):
    u = [a[i] for i in range(a.shape[0])] + [b[i] for i in range(b.shape[0])]
    n = a.shape[0]
    total = 0.0
    for k in range(2 * n):
        partner = k + n if k < n else k - n
        vals = {m: s * dot(u[k], u[m]) for m in range(2 * n) if m != k}
        total += -(vals[partner] - math.log(sum(math.exp(v) for v in vals.values())))
    return total / (2 * n)


def test_simclr_matches_naive(feats):
    x, y = feats
    v = unit(B, DIM, 9)
    out = create_loss("simclr")(x, y, 50.0, views=v)  # fixed temperature 0.1 -> s = 10
    assert set(out) == {"simclr_loss"}
    assert out["simclr_loss"].item() == pytest.approx(naive_nt_xent(x, v, 10.0), rel=1e-10)
    text = create_loss("simclr", modality="text", temperature=None)(x, y, 4.0, views=(v, y))
    assert text["simclr_loss"].item() == pytest.approx(naive_nt_xent(v, y, 4.0), rel=1e-10)


def test_simclr_jitter_views_and_missing_views(feats):
    x, y = feats
    torch.manual_seed(0)
    jittered = create_loss("simclr", jitter=1e-4)(x, y)["simclr_loss"]
    # tiny jitter: both views ~ x, so the loss ~ NT-Xent of x against itself
    assert jittered.item() == pytest.approx(naive_nt_xent(x, x, 10.0), rel=1e-3)
    with pytest.raises(GapkitError, match="views"):
        create_loss("simclr")(x, y)


def test_slip_is_clip_plus_weighted_simclr(feats):
    x, y = feats
    v1, v2 = unit(B, DIM, 10), unit(B, DIM, 11)
    out = create_loss("slip", ssl_scale=0.5)(x, y, 7.0, views=(v1, v2))
    assert out["contrastive_loss"].item() == pytest.approx(naive_clip(x, y, 7.0), rel=1e-10)
    assert out["simclr_loss"].item() == pytest.approx(0.5 * naive_nt_xent(v1, v2, 10.0), rel=1e-10)


def test_cyclip_matches_naive(feats):
    x, y = feats
    inm = sum((dot(x[j], x[k]) - dot(y[j], y[k])) ** 2 for j in range(B) for k in range(B)) / B
    crm = sum((dot(x[j], y[k]) - dot(x[k], y[j])) ** 2 for j in range(B) for k in range(B)) / B
    out = create_loss("cyclip", lambda_inmodal=0.3, lambda_crossmodal=0.2)(x, y, 5.0)
    assert out["contrastive_loss"].item() == pytest.approx(naive_clip(x, y, 5.0), rel=1e-10)
    assert out["cyclic_inmodal_loss"].item() == pytest.approx(0.3 * inm, rel=1e-10)
    assert out["cyclic_crossmodal_loss"].item() == pytest.approx(0.2 * crm, rel=1e-10)
    assert create_loss("cyclip")(x, x, 5.0)["cyclic_inmodal_loss"].item() == pytest.approx(0.0, abs=1e-12)


def sqdist(a, b):
    return sum((float(a[k]) - float(b[k])) ** 2 for k in range(a.shape[0]))


def naive_uniformity(a, b, t=2.0):
    vals = [math.exp(-t * sqdist(a[i], b[j])) for i in range(B) for j in range(B) if i != j]
    return math.log(sum(vals) / len(vals))


def naive_alignment(x, y, alpha=2.0):
    return sum(sqdist(x[i], y[i]) ** (alpha / 2) for i in range(B)) / B


def test_uniformity_and_alignment_match_naive(feats):
    x, y = feats
    u = create_loss("uniformity", t=3.0)(x, y)["uniformity_loss"].item()
    assert u == pytest.approx((naive_uniformity(x, x, 3.0) + naive_uniformity(y, y, 3.0)) / 2, rel=1e-10)
    a = create_loss("alignment", alpha=3.0, weight=2.0)(x, y)["alignment_loss"].item()
    assert a == pytest.approx(2.0 * naive_alignment(x, y, 3.0), rel=1e-10)


def test_cua_and_cuaxu_match_naive(feats):
    x, y = feats
    cua = create_loss("cua")(x, y, 6.0)
    assert set(cua) == {"contrastive_loss", "uniformity_loss", "alignment_loss"}
    cuaxu = create_loss("cuaxu", cross_uniformity_weight=0.5)(x, y, 6.0)
    for out in (cua, cuaxu):
        assert out["contrastive_loss"].item() == pytest.approx(naive_clip(x, y, 6.0), rel=1e-10)
        assert out["uniformity_loss"].item() == pytest.approx(
            (naive_uniformity(x, x) + naive_uniformity(y, y)) / 2, rel=1e-10)
        assert out["alignment_loss"].item() == pytest.approx(naive_alignment(x, y), rel=1e-10)
    assert cuaxu["cross_uniformity_loss"].item() == pytest.approx(0.5 * naive_uniformity(x, y), rel=1e-10)


def naive_dual_ce(x, y, s, w=1.0):
    def side(a, b):
        total = 0.0
        for i in range(B):
            denom = sum(math.exp(s * dot(a[i], b[j])) for j in range(B))
            denom += w * sum(math.exp(s * dot(a[i], a[k])) for k in range(B) if k != i)
            total += -(s * dot(a[i], b[i]) - math.log(denom))
        return total / B
    return (side(x, y) + side(y, x)) / 2


@pytest.mark.parametrize("w", [1.0, 0.25])
def test_dual_ce_matches_naive(feats, w):
    x, y = feats
    got = create_loss("dual_ce", intra_weight=w)(x, y, 8.0)["contrastive_loss"].item()
    assert got == pytest.approx(naive_dual_ce(x, y, 8.0, w), rel=1e-10)
    clip = create_loss("dual_ce", intra_weight=0.0)(x, y, 8.0)["contrastive_loss"].item()
    assert clip == pytest.approx(naive_clip(x, y, 8.0), rel=1e-10)


@pytest.mark.parametrize("name", ["clip", "siglip", "imsep", "simclr", "slip", "cyclip", "uniformity",
                                  "alignment", "cua", "cuaxu", "dual_ce", "clip_chunked"])
def test_every_loss_returns_finite_loss_terms_with_gradients(name, feats):
    x, y = (t.clone().float().requires_grad_() for t in feats)
    out = create_loss(name)(x, y, torch.tensor(10.0), semantic=torch.randn(B, 3), views=x.detach() * 0.9 + 0.1)
    assert out and all(k.endswith("_loss") and v.ndim == 0 and torch.isfinite(v) for k, v in out.items())
    sum(out.values()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name,kw", [("clip", {"chunk_size": 4}), ("siglip", {}), ("imsep", {"text_term": True}),
                                     ("simclr", {"temperature": None}), ("slip", {}), ("cyclip", {}),
                                     ("cuaxu", {}), ("dual_ce", {}), ("uniformity", {})])
def test_gradients_match_finite_differences(name, kw):
    """The custom backwards (chunked InfoNCE, symmetric Gram) against numerical differentiation."""
    x, y, v = (unit(B, DIM, k).requires_grad_() for k in (20, 21, 22))
    s = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    loss = create_loss(name, **kw).double()
    sem = unit(B, 3, 23)

    def f(x, y, v, s):
        return sum(loss(x, y, s, semantic=sem, views=v).values())

    assert torch.autograd.gradcheck(f, (x, y, v, s), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["clip", "clip_chunked", "siglip", "imsep", "slip", "cyclip", "cuaxu", "dual_ce"])
def test_half_precision_under_autocast_runs_in_float32(name):
    """bf16 features inside autocast: the loss equals the float32 loss of the same (rounded)
    features and returns float32 terms."""
    torch.manual_seed(0)
    x32, y32 = F.normalize(torch.randn(B, 8), dim=1), F.normalize(torch.randn(B, 8), dim=1)
    xb, yb = x32.bfloat16(), y32.bfloat16()
    kw = {"semantic": torch.randn(B, 3), "views": yb}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = create_loss(name)(xb, yb, torch.tensor(10.0), **kw)
    full = create_loss(name)(xb.float(), yb.float(), torch.tensor(10.0), **{**kw, "views": yb.float()})
    for k in full:
        assert half[k].dtype == torch.float32
        assert half[k].item() == pytest.approx(full[k].item(), rel=1e-6)


def test_keyword_call(feats):
    x, y = feats
    out = create_loss("clip")(image_features=x, text_features=y, logit_scale=7.0)
    assert out["contrastive_loss"].item() == pytest.approx(naive_clip(x, y, 7.0), rel=1e-10)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 17), d=st.integers(1, 6), chunk=st.integers(1, 20), scale=st.floats(0.5, 60.0),
       seed=st.integers(0, 2**16))
def test_chunked_equals_plain_property(n, d, chunk, scale, seed):
    x0, y0 = unit(n, d, seed), unit(n, d, seed + 1)
    got = []
    for loss in (create_loss("clip"), create_loss("clip", chunk_size=chunk)):
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        s = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
        value = loss(x, y, s)["contrastive_loss"]
        got.append((value, *torch.autograd.grad(value, (x, y, s))))
    for plain, chunked in zip(*got):
        torch.testing.assert_close(chunked, plain, rtol=1e-9, atol=1e-11)


def test_imsep_separates_images_except_semantic_duplicates():
    """What IMSep promises: descending its image term spreads a tight cone of image embeddings
    (mean off-diagonal cosine falls), while two images with identical captions (D = 0) are not
    pushed apart: they stay much closer than the dissimilar pairs. With D = 1 everywhere (plain
    intra-modal InfoNCE) the same pair is separated like any other."""
    g = torch.Generator().manual_seed(3)
    n, d = 8, 6
    noise = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.2
    cone = F.normalize(noise + torch.eye(d, dtype=torch.float64)[0], dim=1)
    y = unit(n, d, 4)
    y[1] = y[0]  # identical captions: same text embedding and same SBERT embedding
    sem = torch.eye(n, dtype=torch.float64)
    sem[1] = sem[0]
    loss = create_loss("imsep", alpha=0.0, beta=1.0)

    def image_grad(x, sem):
        x = x.clone().requires_grad_()
        loss(x, y, 10.0, semantic=sem)["imsep_image_loss"].backward()
        return x.grad

    def cosines(x):
        c = x @ x.T
        others = [float(c[i, j]) for i in range(n) for j in range(n) if i != j and {i, j} != {0, 1}]
        return float(c[0, 1]), sum(others) / len(others)

    def descend(sem):
        x = cone.clone()
        for _ in range(50):
            x = F.normalize(x - 0.05 * image_grad(x, sem), dim=1)
        return x

    pair_before, others_before = cosines(cone)
    pair_after, others_after = cosines(descend(sem))
    assert others_after < others_before - 0.2
    assert pair_after > others_after + 0.3
    pair_plain, others_plain = cosines(descend(torch.eye(n, dtype=torch.float64)))
    assert pair_plain < pair_after - 0.2
