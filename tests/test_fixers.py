"""Fixers keep their promises: each property is checked against an independent computation."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.fixers import (
    available_fixers, create_fixer, fuse, load_fixer, shift_pair, signed_gap,
)
from tests.conftest import gapped_pairs

EMBEDDING_FIXERS = ["shift", "center", "role-center", "standardize", "topk", "procrustes", "noise"]


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def centroid_gap(x, y):
    return float(np.linalg.norm(unit(x).mean(0) - unit(y).mean(0)))


def rank_table(q, d):
    """Naive reference: for every query, the doc indices sorted by decreasing cosine."""
    return np.argsort(-(unit(q) @ unit(d).T), axis=1, kind="stable")


def random_rotation(d, seed=0):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------ promised properties
def test_registry_lists_all():
    assert set(EMBEDDING_FIXERS + ["calibrated"]) <= set(available_fixers())


def test_centering_closes_centroid_gap(pairs):
    x, y = pairs
    assert centroid_gap(x, y) > 0.4
    fx = create_fixer("center", renormalize=False).fit(x, y)
    # without re-normalisation the centred clouds have exactly zero mean
    xc, yc = fx.transform(x, "image"), fx.transform(y, "text")
    np.testing.assert_allclose(xc.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(yc.mean(0), 0, atol=1e-6)
    # with re-normalisation the gap is close to 0 and far below the raw gap
    fx = create_fixer("center").fit(x, y)
    assert centroid_gap(fx.transform(x, "image"), fx.transform(y, "text")) < 0.1 * centroid_gap(x, y)


def test_centering_means_match_naive(pairs):
    x, y = pairs
    fx = create_fixer("center").fit(x, y)
    np.testing.assert_allclose(fx.image_mean_, unit(x).mean(0), atol=1e-6)
    got = fx.transform(y[:5], "text")
    want = unit(unit(y[:5]) - unit(y).mean(0))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_shift_matches_formula_and_close_lambda(pairs):
    x, y = pairs
    fx = create_fixer("shift", lam=0.7).fit(x, y)
    g = unit(x).mean(0) - unit(y).mean(0)
    d = g / np.linalg.norm(g)
    np.testing.assert_allclose(fx.transform(x, "image"), unit(unit(x) - 0.35 * d), atol=1e-5)
    np.testing.assert_allclose(fx.transform(y, "text"), unit(unit(y) + 0.35 * d), atol=1e-5)
    closing = create_fixer("shift", lam="close").fit(x, y)
    xs, ys = closing.transform(x, "image"), closing.transform(y, "text")
    # re-normalisation leaves a small residual orthogonal to g; "close" is the best lam anyway
    grid = [centroid_gap(*shift_pair(unit(x), unit(y), d, lam)) for lam in np.linspace(0, 2, 201)]
    assert centroid_gap(xs, ys) <= min(grid) + 1e-4
    assert centroid_gap(xs, ys) < 0.05 * centroid_gap(x, y)
    # the signed gap changes sign when lam passes the closing value
    lam = closing.lam_
    assert signed_gap(*shift_pair(unit(x), unit(y), d, lam * 0.9), reference=g) > 0
    assert signed_gap(*shift_pair(unit(x), unit(y), d, lam * 1.1), reference=g) < 0


def test_shift_one_sided(pairs):
    x, y = pairs
    fx = create_fixer("shift", lam=0.5, side="image").fit(x, y)
    np.testing.assert_allclose(fx.transform(y, "text"), unit(y), atol=1e-6)
    assert centroid_gap(fx.transform(x, "image"), y) < centroid_gap(x, y)


def test_role_centering_per_role_means(pairs):
    x, y = pairs
    q = unit(y[:50] + 0.3)  # queries with their own offset
    fx = create_fixer("role-center").fit(x, y, query_text=q)
    np.testing.assert_allclose(fx.role_means_[fx.roles_.index("query_text")], unit(q).mean(0), atol=1e-6)
    np.testing.assert_allclose(fx.role_means_[fx.roles_.index("doc_fused")], fuse(x, y).mean(0), atol=1e-6)
    np.testing.assert_allclose(fx.transform(q, "query_text"), unit(unit(q) - unit(q).mean(0)), atol=1e-5)
    # "image" is an alias of doc_image
    np.testing.assert_allclose(fx.transform(x, "image"), fx.transform(x, "doc_image"))


def test_standardize_zero_mean_unit_std_without_renorm(pairs):
    x, y = pairs
    fx = create_fixer("standardize", renormalize=False).fit(x, y)
    z = fx.transform(x, "image")
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)


def test_topk_removes_largest_gap_dims(pairs):
    x, y = pairs  # the fixture's gap lives in coordinate 0
    fx = create_fixer("topk", k=1).fit(x, y)
    assert fx.dims_.tolist() == [0]
    assert np.all(fx.transform(x, "image")[:, 0] == 0)
    assert centroid_gap(fx.transform(x, "image"), fx.transform(y, "text")) < 0.5 * centroid_gap(x, y)


def test_procrustes_recovers_known_rotation():
    rng = np.random.default_rng(1)
    x = unit(rng.standard_normal((300, 12)))
    r = random_rotation(12, seed=2)
    y = x @ r.T  # texts are the images rotated: the best map back is r
    fx = create_fixer("procrustes").fit(x, y)
    np.testing.assert_allclose(fx.rotation_, r, atol=1e-8)
    np.testing.assert_allclose(fx.transform(y, "text"), x, atol=1e-5)
    np.testing.assert_allclose(fx.transform(x, "image"), x, atol=1e-6)


def test_procrustes_multi_caption_uses_mapping():
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((40, 8)))
    m = np.repeat(np.arange(40), 3)
    r = random_rotation(8, seed=4)
    y = unit(x[m] @ r.T + 0.01 * rng.standard_normal((120, 8)))
    fx = create_fixer("procrustes").fit(x, y, text_to_image=m)
    np.testing.assert_allclose(fx.rotation_, r, atol=0.02)


# standardize, topk and noise work per coordinate: not rotation-equivariant by design
@pytest.mark.parametrize("name", ["shift", "center", "role-center", "procrustes"])
def test_rigid_rotation_keeps_retrieval_ranks(name, pairs):
    """Fit on (x, y) and on (x R, y R): the fixed embeddings give the same ranking."""
    x, y = pairs
    r = random_rotation(x.shape[1], seed=5)
    fa = create_fixer(name).fit(x, y)
    fb = create_fixer(name).fit(x @ r, y @ r)
    ra = rank_table(fa.transform(y, "text"), fa.transform(x, "image"))
    rb = rank_table(fb.transform(y @ r, "text"), fb.transform(x @ r, "image"))
    assert (ra[:, :10] == rb[:, :10]).mean() > 0.99


@pytest.mark.parametrize("name", ["shift", "center", "role-center", "standardize", "procrustes"])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_inverse_round_trip(name, modality, pairs):
    x, y = pairs
    params = {"lam": 0.6} if name == "shift" else {}
    fx = create_fixer(name, **params).fit(x, y)
    rows = unit(x if modality == "image" else y)
    back = fx.inverse_transform(fx.transform(rows, modality), modality)
    np.testing.assert_allclose(back, rows, atol=1e-5)


def test_non_invertible_fixers_say_so(pairs):
    for name in ("topk", "noise"):
        fx = create_fixer(name).fit(*pairs)
        with pytest.raises(GapkitError, match="no inverse_transform"):
            fx.inverse_transform(pairs[0], "image")


def test_noise_statistics_and_determinism(pairs):
    x, y = pairs
    fx = create_fixer("noise", std=0.05, apply_to="text", seed=3).fit(x, y)
    np.testing.assert_allclose(fx.transform(x, "image"), unit(x), atol=1e-6)
    a = fx.transform(y, "text")
    b = fx.transform(y, "text", chunk_size=7)  # chunking does not change the draw
    np.testing.assert_allclose(a, b)
    # the perturbation before re-normalisation has norm ~ std * sqrt(D)
    cos = np.einsum("ij,ij->i", a, unit(y))
    expected = 1 / np.sqrt(1 + 0.05**2 * y.shape[1])
    assert abs(cos.mean() - expected) < 0.02


# ------------------------------------------------------------------ calibration
def multi_caption_pairs(n=150, per=3, d=16, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    m = np.repeat(np.arange(n), per)
    x = unit(z + 2.0 * np.eye(d)[0])
    y = unit(z[m] - 2.0 * np.eye(d)[0] + 0.4 * rng.standard_normal((n * per, d)))
    return x, y, m


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrated_scores_monotone_and_meaningful(method):
    x, y, m = multi_caption_pairs()
    # balanced prior: P(match) is the likelihood ratio's logistic, comparable across pairs
    fx = create_fixer("calibrated", method=method, prior="balanced").fit(x, y, text_to_image=m)
    assert set(fx.prob_pairs_) == {"image-text", "text-text", "text-fused"}
    grid = np.linspace(-1, 1, 401)
    for pair in ("image-text", "text-text"):
        p = fx.probability(grid, pair)
        assert np.all(np.diff(p) >= -1e-12) and p[0] < 0.1 and p[-1] > 0.9
        q = fx.percentile(grid, pair)
        assert np.all(np.diff(q) >= 0) and q[0] == 0 and q[-1] == 1
    # a matching image-text pair and a matching text-text pair get comparable probabilities,
    # although their raw cosines differ a lot
    pos_it = np.einsum("ij,ij->i", x[m], y).mean()
    same = m[:-1] == m[1:]
    pos_tt = np.einsum("ij,ij->i", y[:-1][same], y[1:][same]).mean()
    assert pos_tt - pos_it > 0.2
    assert abs(fx.probability(pos_it, "image-text") - fx.probability(pos_tt, "text-text")) < 0.3


def test_calibrated_percentile_matches_empirical_cdf():
    x, y, m = multi_caption_pairs()
    fx = create_fixer("calibrated").fit(x, y, text_to_image=m)
    neg = np.array([0.1, 0.2, 0.3, 0.4])
    fx.fit_pair("image-text", positives=[0.9, 0.8], negatives=neg)
    # percentile = share of negatives below: 0.25 sits between 0.2 and 0.3 -> 0.5
    assert abs(float(fx.percentile(0.25)) - 0.5) < 0.02


def test_calibration_without_text_matches_offers_percentile_only(pairs):
    fx = create_fixer("calibrated").fit(*pairs)
    assert fx.prob_pairs_ == ["image-text"]
    with pytest.raises(GapkitError, match="percentile"):
        fx.probability(0.5, "text-text")
    assert 0 <= float(fx.percentile(0.5, "text-text")) <= 1


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("name", EMBEDDING_FIXERS + ["calibrated"])
def test_unfitted_fixer_raises(name, pairs):
    with pytest.raises(GapkitError, match="not fitted"):
        create_fixer(name).transform(pairs[0], "image")


@pytest.mark.parametrize("name", EMBEDDING_FIXERS)
def test_dimension_mismatch_raises(name, pairs):
    x, y = pairs
    fx = create_fixer(name).fit(x, y)
    with pytest.raises(GapkitError, match="dimension 8 does not match the fitted dimension 16"):
        fx.transform(x[:, :8], "image")
    with pytest.raises(GapkitError, match="dims differ|does not match"):
        create_fixer(name).fit(x, y[:, :8])


def test_bad_inputs_are_named(pairs):
    x, y = pairs
    fx = create_fixer("center").fit(x, y)
    bad = x.copy()
    bad[3] = 0
    with pytest.raises(GapkitError, match="row 3 is all zeros"):
        fx.transform(bad, "image")
    bad[3] = np.nan
    with pytest.raises(GapkitError, match="row 3 contains NaN"):
        create_fixer("center").fit(bad, y)
    with pytest.raises(GapkitError, match="unknown modality 'audio'"):
        fx.transform(x, "audio")
    with pytest.raises(GapkitError, match="unknown fixer 'nope'"):
        create_fixer("nope")
    with pytest.raises(GapkitError, match="no parameter bogus"):
        create_fixer("center", bogus=1)
    with pytest.raises(GapkitError, match="lam must be"):
        create_fixer("shift", lam="wide").fit(x, y)


# ------------------------------------------------------------------ persistence
@pytest.mark.parametrize("name", EMBEDDING_FIXERS + ["calibrated"])
def test_save_load_identical(name, pairs, tmp_path):
    x, y = pairs
    fx = create_fixer(name).fit(x, y)
    fx.save(tmp_path / "fx")
    assert not list(tmp_path.glob("fx/*.pkl"))
    back = load_fixer(tmp_path / "fx")
    assert type(back) is type(fx) and back.get_params() == fx.get_params()
    for mod in ("image", "text"):
        rows = x if mod == "image" else y
        if name == "calibrated":  # a score fixer has no transform and says so
            with pytest.raises(GapkitError, match="no transform"):
                back.transform(rows, mod)
        else:
            np.testing.assert_array_equal(back.transform(rows, mod), fx.transform(rows, mod))
    if name == "calibrated":
        grid = np.linspace(-1, 1, 11)
        np.testing.assert_array_equal(back.probability(grid), fx.probability(grid))


def test_load_rejects_non_fixer(tmp_path):
    with pytest.raises(GapkitError, match="not a saved fixer"):
        load_fixer(tmp_path)
    (tmp_path / "fixer.json").write_text('{"format": "other"}')
    (tmp_path / "arrays.safetensors").write_bytes(b"")
    with pytest.raises(GapkitError, match="not a gapkit fixer"):
        load_fixer(tmp_path)


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("name", EMBEDDING_FIXERS)
def test_memmap_streaming_matches_in_memory(name, tmp_path):
    x, y = gapped_pairs(n=1000, d=16)
    xs = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=x.shape)
    xs[:] = x
    xs.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    fa = create_fixer(name).fit(x.astype(np.float16).astype(np.float32), y)
    fb = create_fixer(name).fit(mm, y)
    out = np.lib.format.open_memmap(tmp_path / "o.npy", mode="w+", dtype=np.float32, shape=x.shape)
    fb.transform(mm, "image", out=out, chunk_size=97)
    np.testing.assert_allclose(out, fa.transform(x.astype(np.float16), "image"), atol=1e-5)


# ------------------------------------------------------------------ fitting from merged statistics
@pytest.mark.parametrize("name,params", [("center", {}), ("role-center", {}), ("role-center", {"fuse_weight": 0.3}),
                                         ("standardize", {}), ("topk", {"k": 3}), ("procrustes", {}),
                                         ("shift", {"lam": 0.7})])
def test_fit_from_merged_shard_statistics_equals_fit_on_all_rows(name, params):
    """Statistics of unequal shards, merged pairwise, fit the same fixer as every row at once."""
    from gapkit.fixers.stats import fit_stats, merge_fit_stats

    x, y = gapped_pairs(700, 16, seed=5)
    direct = create_fixer(name, **params).fit(x, y)
    fx = create_fixer(name, **params)
    assert fx.fits_from_stats
    cuts = [0, 90, 333, 350, 700]
    parts = [fit_stats(x[a:b], y[a:b], cross=fx.needs_cross, chunk=64, fuse_weight=fx.stats_fuse_weight)
             for a, b in zip(cuts, cuts[1:])]
    merged = parts[0]
    for p in parts[1:]:
        merged = merge_fit_stats(merged, p)
    fx.fit_from_stats(merged)
    fitted = [a for a in vars(direct) if a.endswith("_") and isinstance(getattr(direct, a), np.ndarray)]
    assert fitted
    for attr in fitted:
        np.testing.assert_allclose(getattr(fx, attr), getattr(direct, attr), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fx.transform(x[:20], "image"), direct.transform(x[:20], "image"), atol=1e-12)
    np.testing.assert_allclose(fx.transform(y[:20], "text"), direct.transform(y[:20], "text"), atol=1e-12)


def test_fixers_that_need_rows_say_so():
    from gapkit.fixers.stats import fit_stats

    x, y = gapped_pairs(50, 8, seed=1)
    for fx in (create_fixer("shift", lam="close"), create_fixer("calibrated")):
        assert not fx.fits_from_stats
        with pytest.raises(GapkitError, match="needs the calibration rows"):
            fx.fit_from_stats(fit_stats(x, y))
    with pytest.raises(GapkitError, match="fused-pair statistics"):
        create_fixer("role-center").fit_from_stats(fit_stats(x, y))  # made without the fused moments
