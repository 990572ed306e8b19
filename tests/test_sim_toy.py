"""Liang et al.'s toy experiments: the mismatched-data landscape and the cone effect of random MLPs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gapkit.errors import GapkitError
from gapkit.sim.cone import cone_curve, mean_offdiag_cosine
from gapkit.sim.landscape import (LIANG_SCALES, mismatch_landscape, mismatch_points, optimal_dtheta,
                                  symmetric_clip_loss)


def test_points_follow_the_paper_geometry():
    img, txt = mismatch_points(0.0, mismatch=False)
    np.testing.assert_allclose(img, txt, atol=1e-12)
    np.testing.assert_allclose(np.degrees(np.arctan2(img[:, 1], img[:, 0])), [-20, 0, 20, 40, 60, 80])
    assert np.allclose(img[:, 2], 0)
    img, txt = mismatch_points(30.0, mismatch=True)
    # Texts slide 30 degrees below the equator; the first two texts trade places.
    np.testing.assert_allclose(txt[:, 2], -np.sin(np.radians(30.0)))
    assert np.argmax(img[0] @ txt.T) == 1 and np.argmax(img[1] @ txt.T) == 0


def test_loss_is_the_symmetric_clip_loss():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    logits = 35.0 * torch.tensor(x) @ torch.tensor(y).T
    t = torch.arange(6)
    ref = (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2
    assert symmetric_clip_loss(x, y, 35.0) == pytest.approx(ref.item(), rel=1e-12)


def test_optimum_moves_off_zero_only_with_the_mismatch_at_low_temperature():
    grid = np.arange(-90.0, 90.5, 0.5)
    d, with_mm = mismatch_landscape(LIANG_SCALES, grid, mismatch=True)
    _, without = mismatch_landscape(LIANG_SCALES, grid, mismatch=False)
    opt_mm = {s: optimal_dtheta(d, c) for s, c in zip(LIANG_SCALES, with_mm)}
    opt_clean = {s: optimal_dtheta(d, c) for s, c in zip(LIANG_SCALES, without)}
    assert opt_mm[1.0] == 0.0
    assert opt_mm[100.0] > 30.0  # a repulsive structure: closing the gap costs loss
    assert with_mm[LIANG_SCALES.index(100.0)][grid == 0][0] > with_mm[LIANG_SCALES.index(100.0)].min() + 0.5
    assert all(v == 0.0 for v in opt_clean.values())
    # The landscape is even in d_theta (reflection through the equator fixes the images).
    np.testing.assert_allclose(with_mm, with_mm[:, ::-1], atol=1e-12)


def test_landscape_rejects_bad_grids():
    with pytest.raises(GapkitError):
        mismatch_landscape(dthetas=np.array([100.0]))
    with pytest.raises(GapkitError):
        mismatch_landscape(scales=(0.0,))


def test_mean_offdiag_cosine_matches_the_gram_matrix():
    h = np.random.default_rng(1).standard_normal((50, 7)) + 0.3
    u = h / np.linalg.norm(h, axis=1, keepdims=True)
    g = u @ u.T
    assert mean_offdiag_cosine(h) == pytest.approx(g[~np.eye(50, dtype=bool)].mean())


def test_linear_mlp_keeps_low_cosine_while_relu_and_sigmoid_climb():
    kw = dict(n=256, dim=128, depth=10, seed=0)
    linear, relu, sigmoid = (cone_curve(a, **kw) for a in ("none", "relu", "sigmoid"))
    assert abs(linear[0]) < 0.02 and abs(relu[0]) < 0.02
    assert np.abs(linear).max() < 0.15
    assert relu[10] > 0.9 and np.all(np.diff(relu[:6]) > 0)
    assert sigmoid[2] > 0.95  # Liang: ~0.99 after two Sigmoid layers


def test_cone_rejects_unknown_activation():
    with pytest.raises(GapkitError, match="unknown activation"):
        cone_curve("swish")
