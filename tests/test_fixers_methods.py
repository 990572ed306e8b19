"""IsoCLIP and Chowers et al.'s complement shift keep their promises, each against a naive
reference written here from the papers' formulas (not from gapkit's code)."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.fixers import create_fixer, load_fixer
from gapkit.fixers.projections import projections_from_state, projections_of, read_projections


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def projectors(d_model=16, d_img=24, d_txt=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d_model, d_img)), rng.standard_normal((d_model, d_txt))


# ------------------------------------------------------------------------------------ IsoCLIP
def paper_isoclip(a_i, a_t, h, modality, k_top, k_bottom):
    """IsoCLIP on PRE-projection features, as the paper writes it: x = A U_K U_K^T h."""
    psi = a_i.T @ a_t
    u, s, vt = np.linalg.svd(psi)
    r = min(a_i.shape[0], a_i.shape[1], a_t.shape[1])
    keep = slice(k_top, r - k_bottom)
    basis = u[:, keep] if modality == "image" else vt.T[:, keep]
    a = a_i if modality == "image" else a_t
    return unit(h @ (a @ basis @ basis.T).T)


@pytest.mark.parametrize("k_top,k_bottom", [(3, 2), (0, 5), (6, 0)])
def test_isoclip_on_embeddings_equals_paper_formula_on_features(k_top, k_bottom):
    """The fixer sees only x = A h (unit rows); the paper's formula needs h. They agree."""
    a_i, a_t = projectors()
    rng = np.random.default_rng(1)
    h_i, h_t = rng.standard_normal((40, 24)), rng.standard_normal((30, 20))
    x, y = unit(h_i @ a_i.T), unit(h_t @ a_t.T)
    fx = create_fixer("isoclip", k_top=k_top, k_bottom=k_bottom).fit_projections(a_i, a_t)
    np.testing.assert_allclose(fx.transform(x, "image"), paper_isoclip(a_i, a_t, h_i, "image", k_top, k_bottom),
                               atol=1e-10)
    np.testing.assert_allclose(fx.transform(y, "text"), paper_isoclip(a_i, a_t, h_t, "text", k_top, k_bottom),
                               atol=1e-10)


def test_isoclip_keeps_cross_modal_cosines_inside_the_kept_block():
    """Psi restricted to the kept block: <M_i x, M_t y> = h_i^T U_K S_K V_K^T h_t (the isotropic part)."""
    a_i, a_t = projectors(seed=3)
    rng = np.random.default_rng(4)
    h_i, h_t = rng.standard_normal((5, 24)), rng.standard_normal((7, 20))
    fx = create_fixer("isoclip", k_top=2, k_bottom=3).fit_projections(a_i, a_t)
    u, s, vt = np.linalg.svd(a_i.T @ a_t)
    k = slice(2, 16 - 3)
    expect = h_i @ u[:, k] @ np.diag(s[k]) @ vt[k] @ h_t.T
    xi = (h_i @ a_i.T) @ fx.image_map_.T
    yt = (h_t @ a_t.T) @ fx.text_map_.T
    np.testing.assert_allclose(xi @ yt.T, expect, rtol=1e-9, atol=1e-9)


def test_isoclip_defaults_are_the_papers_proportions():
    from gapkit.fixers.isoclip import isoclip_block

    assert isoclip_block(512, None, None) == (150, 512 - 50)  # the paper's ViT-B/32 k_top 150, k_bottom 50
    a_i, a_t = projectors(d_model=16, d_img=24, d_txt=20)
    assert tuple(create_fixer("isoclip").fit_projections(a_i, a_t).kept_) == (round(16 * 150 / 512),
                                                                             16 - round(16 * 50 / 512))


def test_isoclip_reads_weights_from_files_and_models(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file

    from gapkit.models.heads import LiTHeads

    heads = LiTHeads(24, 20, embed_dim=16)
    heads.save(tmp_path / "heads")
    a_i, a_t = read_projections(tmp_path / "heads")
    np.testing.assert_array_equal(a_i, heads.image_proj.weight.detach().numpy().astype(np.float64))
    b_i, b_t = projections_of(heads)
    np.testing.assert_array_equal(a_t, b_t)
    # open_clip layout: visual.proj (width, D) used as h @ proj, i.e. A = proj^T
    proj, tproj = np.random.default_rng(0).standard_normal((2, 24, 16))
    o_i, o_t = projections_from_state({"visual.proj": proj, "text_projection": tproj[:20]})
    np.testing.assert_array_equal(o_i, proj.T)
    np.testing.assert_array_equal(o_t, tproj[:20].T)
    # a bias becomes an extra column (h read as [h, 1])
    w, b = np.ones((16, 24)), np.arange(16.0)
    c_i, _ = projections_from_state({"image.weight": w, "image.bias": b, "text.weight": np.ones((16, 20))})
    assert c_i.shape == (16, 25) and np.array_equal(c_i[:, -1], b)
    save_file({"image_projection": a_i, "text_projection": a_t}, str(tmp_path / "p.safetensors"))
    rng = np.random.default_rng(2)
    x, y = unit(rng.standard_normal((30, 16))), unit(rng.standard_normal((30, 16)))
    fx = create_fixer("isoclip", weights=str(tmp_path / "p.safetensors"), k_top=2, k_bottom=2).fit(x, y)
    fx.save(tmp_path / "fx")
    np.testing.assert_allclose(load_fixer(tmp_path / "fx").transform(x, "image"), fx.transform(x, "image"))
    del torch


def test_isoclip_errors_are_one_line():
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((10, 16)))
    with pytest.raises(GapkitError, match="needs the model's projection weights"):
        create_fixer("isoclip").fit(x, x)
    a_i, a_t = projectors()
    with pytest.raises(GapkitError, match="k_top \\+ k_bottom"):
        create_fixer("isoclip", k_top=10, k_bottom=6).fit_projections(a_i, a_t)
    with pytest.raises(GapkitError, match="no image/text projection pair"):
        projections_from_state({"foo": np.ones((2, 2))})


# ------------------------------------------------------------------------------ complement shift
def class_prompt_data(seed=0, d=32, c=6, n=120, gap=0.6):
    """Images and C < D class prompts with a shared image offset orthogonal-ish to the prompts."""
    rng = np.random.default_rng(seed)
    prompts = unit(rng.standard_normal((c, d)) + np.r_[np.zeros(d - 1), 2.0])
    labels = rng.integers(0, c, n)
    offset = np.r_[2.5, np.zeros(d - 1)] * gap
    images = unit(prompts[labels] + 0.9 * rng.standard_normal((n, d)) / np.sqrt(d) + offset)
    return images, prompts, labels


def test_complement_shift_matches_naive_formula_and_keeps_rankings():
    x, t, _ = class_prompt_data()
    fx = create_fixer("chowers", rank=t.shape[0]).fit(x, t)
    # naive reference: Q from the SVD of the prompts, g = mean(t) - mean(x), x' = unit(x + (I - QQ^T) g)
    _, _, vt = np.linalg.svd(t, full_matrices=False)
    q = vt.T
    g = t.mean(0) - x.mean(0)
    ref = unit(x + g - q @ (q.T @ g))
    np.testing.assert_allclose(fx.transform(x, "image"), ref, atol=1e-10)
    np.testing.assert_allclose(fx.transform(t, "text"), t, atol=1e-12)  # the gallery does not move
    # every query ranks the prompts exactly as before (the promise behind "clean accuracy is flat")
    raw, fixed = x @ t.T, ref @ t.T
    assert np.array_equal(np.argsort(-raw, axis=1), np.argsort(-fixed, axis=1))
    # scores only grow in magnitude: the same ranking with wider margins
    ratio = fixed / raw
    assert np.allclose(ratio, ratio[:, :1]) and (ratio > 1).all()
    # and the gap to the prompts closes
    assert np.linalg.norm(ref.mean(0) - t.mean(0)) < 0.5 * np.linalg.norm(x.mean(0) - t.mean(0))


def test_complement_shift_reduces_flips_under_embedding_noise():
    x, t, _ = class_prompt_data(seed=1)
    fx = create_fixer("chowers", rank=t.shape[0]).fit(x, t)
    xf = fx.transform(x, "image")
    rng = np.random.default_rng(7)
    eps = 0.15 * rng.standard_normal((50,) + x.shape) / np.sqrt(x.shape[1])
    flips = lambda a: np.mean(np.argmax(unit_stack(a + eps) @ t.T, -1) != np.argmax(a @ t.T, -1))  # noqa: E731
    assert flips(xf) < flips(x)


def unit_stack(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_complement_shift_energy_rank_inverse_and_retrieve_image():
    x, t, _ = class_prompt_data(seed=2)
    fx = create_fixer("chowers", energy=1.0).fit(x, t)
    assert fx.rank_ == t.shape[0]  # the prompts span C dimensions: all of their energy
    np.testing.assert_allclose(fx.inverse_transform(fx.transform(x, "image"), "image"), x, atol=1e-10)
    fy = create_fixer("chowers", retrieve="image", rank=4).fit(x, t)
    assert fy.moved_ == "text"
    np.testing.assert_allclose(fy.transform(x, "image"), x, atol=1e-12)
    with pytest.raises(GapkitError, match="retrieve must be"):
        create_fixer("chowers", retrieve="audio").fit(x, t)
    with pytest.raises(GapkitError, match="rank must be"):
        create_fixer("chowers", rank=0).fit(x, t)
    with pytest.raises(GapkitError, match="norm"):
        create_fixer("chowers", lam=5.0).fit(x, t)


# ------------------------------------------------------------------------- the claims' experiments
def test_quantize_matches_a_naive_loop():
    from gapkit.experiments.methods import quantize

    x = np.random.default_rng(0).standard_normal((4, 9))
    got = quantize(x, 4)
    for i, row in enumerate(x):
        m = max(abs(v) for v in row)
        for d, v in enumerate(row):
            assert got[i, d] == pytest.approx(round(v / m * 7) * m / 7)


def test_chowers_claim_on_the_clip_sample(tmp_path):
    """Quick run on the real CLIP sample: clean R@1 flat, fewer flips; the fidelity row says so."""
    from gapkit.experiments import get_experiment
    from gapkit.report import fidelity as F

    rec = get_experiment("chowers").run(tmp_path, quick=True, sigmas=[0.2], draws=5)
    clip = rec["results"]["samples"]["clip"]
    assert clip["centroid_distance_fixed"] < clip["centroid_distance_raw"]
    assert clip["flips_quant_4bit"]["diff"]["ci_high"] < 0
    assert clip["i2t_recall@1"]["diff"]["ci_low"] <= 0 <= clip["i2t_recall@1"]["diff"]["ci_high"]
    claim = next(c for c in F.CLAIMS if c.experiment == "chowers")
    rec["params"]["quick"] = False
    assert claim.evaluate(rec).verdict in ("reproduces", "inconclusive")


def _iv(mean, lo, hi):
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


@pytest.mark.parametrize("diffs, verdict", [
    ([(0.02, 0.01, 0.03), (0.05, 0.02, 0.08)], "reproduces"),
    ([(0.02, 0.01, 0.03), (0.0, -0.01, 0.01)], "direction only"),
    ([(-0.02, -0.03, -0.01), (0.05, 0.02, 0.08)], "does not reproduce"),
    ([(0.0, -0.01, 0.01), (0.0, -0.01, 0.01)], "inconclusive"),
])
def test_isoclip_fidelity_verdicts(diffs, verdict):
    from gapkit.report import fidelity as F

    tasks = {f"task_{i}": {"n_queries": 10, "kept": [1, 5], "recall@1": {
        "raw": _iv(0.5, 0.4, 0.6), "fixed": _iv(0.5 + d[0], 0.4, 0.6), "diff": _iv(*d)}} for i, d in enumerate(diffs)}
    claim = next(c for c in F.CLAIMS if c.experiment == "isoclip")
    assert claim.evaluate({"results": {"tasks": tasks}}).verdict == verdict
