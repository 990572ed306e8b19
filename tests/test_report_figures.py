"""Embedding figures: the numbers behind them against naive references, and the figures draw."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.report.figures import embedding as E
from gapkit.report.figures import save_figure

from .conftest import gapped_pairs


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_cosine_samples_match_naive_loops(rng):
    img = rng.standard_normal((5, 8))
    txt = rng.standard_normal((12, 8))
    t2i = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 2])
    s = E.cosine_samples(img, txt, t2i)
    x, y = _unit(img), _unit(txt)
    matched = [x[t2i[j]] @ y[j] for j in range(12)]
    tt = [y[j] @ y[k] for j in range(12) for k in range(j + 1, 12) if t2i[j] == t2i[k]]
    np.testing.assert_allclose(s["matched image-text"], matched, rtol=1e-12)
    np.testing.assert_allclose(np.sort(s["matched text-text"]), np.sort(tt), rtol=1e-12)
    # every unmatched value is a cosine of a genuinely non-matching (image, text) pair
    allowed = np.array([x[i] @ y[j] for i in range(5) for j in range(12) if t2i[j] != i])
    assert s["unmatched image-text"].size > 0
    assert np.all(np.min(np.abs(s["unmatched image-text"][:, None] - allowed[None]), axis=1) < 1e-12)
    allowed_tt = np.array([y[j] @ y[k] for j in range(12) for k in range(12) if t2i[j] != t2i[k]])
    assert s["unmatched text-text"].size > 0
    assert np.all(np.min(np.abs(s["unmatched text-text"][:, None] - allowed_tt[None]), axis=1) < 1e-12)


def test_one_to_one_data_has_no_text_text_pairs(pairs):
    s = E.cosine_samples(*pairs)
    assert s["matched text-text"].size == 0
    assert s["matched image-text"].size == pairs[0].shape[0]


def test_gap_contributions_match_naive(pairs):
    x, y = pairs
    t2i = np.repeat(np.arange(x.shape[0] // 2), 2)  # two captions per image; centroids are per modality
    x = x[: x.shape[0] // 2]
    dims, share = E.gap_contributions(x * 3.0, y, t2i)  # scaling rows must not matter
    g = _unit(x.astype(np.float64)).mean(0) - _unit(y.astype(np.float64)).mean(0)
    naive = sorted(((g[d] ** 2 / (g @ g), d) for d in range(g.size)), reverse=True)
    np.testing.assert_allclose(share, [v for v, _ in naive], rtol=1e-4, atol=1e-9)
    assert dims[0] == 0  # conftest's gap lies along e0
    assert share.sum() == pytest.approx(1.0)


def test_gap_contributions_reject_zero_gap():
    x = np.eye(4)
    with pytest.raises(GapkitError, match="zero"):
        E.gap_contributions(x, x)


def test_pca_2d_matches_sklearn(rng):
    from sklearn.decomposition import PCA

    x = rng.standard_normal((60, 10)) @ np.diag(np.linspace(3, 0.1, 10))
    xy, ratio = E.pca_2d(x)
    ref = PCA(2).fit(x)
    np.testing.assert_allclose(np.abs(xy), np.abs(ref.transform(x)), atol=1e-9)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-9)


def test_figures_draw_and_save(tmp_path):
    x, y = gapped_pairs(n=80, d=12)
    t2i = np.repeat(np.arange(40), 2)
    for name, fig in {
        "proj": E.pair_projection(x[:40], y, t2i),
        "hist": E.cosine_histograms(x[:40], y, t2i),
        "dims": E.gap_dimensions(x, y, top=5),
        "cones": E.cones({"a": x, "b": y, "c": -x}),
    }.items():
        p = save_figure(fig, tmp_path / name)
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cones_reject_mixed_dims(rng):
    with pytest.raises(GapkitError, match="dim"):
        E.cones({"a": rng.standard_normal((5, 4)), "b": rng.standard_normal((5, 3))})


def test_unknown_projection_is_a_clear_error(pairs):
    with pytest.raises(GapkitError, match="projection"):
        E.pair_projection(*pairs, method="tsne")
