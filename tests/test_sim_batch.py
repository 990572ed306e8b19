"""Many sphere runs in one compiled, multi-threaded kernel: each run equals the single-run engine
(same seed, same stream), and the run's stream is numba's own generator number for number."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from gapkit.errors import GapkitError
from gapkit.sim import SphereConfig, run_many, simulate, simulate_many
from gapkit.sim import mt19937 as R


@njit(cache=True)
def _numba_stream(seed, n, k):
    """The reference: numba's hidden per-thread np.random, as the engine used it before."""
    np.random.seed(seed)
    perms = np.empty((k, n), np.int64)
    normals = np.empty(3 * k)
    for t in range(k):
        perms[t] = np.random.permutation(n)
        for q in range(3):
            normals[3 * t + q] = np.random.standard_normal()
    return perms, normals


@njit(cache=True)
def _explicit_stream(mt, meta, gauss, n, k):
    perms = np.empty((k, n), np.int64)
    normals = np.empty(3 * k)
    for t in range(k):
        perms[t] = R.permutation(mt, meta, n)
        for q in range(3):
            normals[3 * t + q] = R.standard_normal(mt, meta, gauss)
    return perms, normals


@pytest.mark.parametrize("seed", [0, 7, 2**31 + 5])
@pytest.mark.parametrize("n", [1, 10, 1000])
def test_explicit_state_generator_is_numbas_stream(seed, n):
    ref_p, ref_g = _numba_stream(seed, n, 40)
    p, g = _explicit_stream(*R.new_state(seed), n, 40)
    np.testing.assert_array_equal(p, ref_p)
    np.testing.assert_array_equal(g, ref_g)  # bit for bit, not approximately


def test_batched_runs_equal_single_runs_run_by_run():
    """A sweep over losses (slip draws normals), taus, inits and seeds in one kernel, two threads:
    every run's trajectory, traces and snapshots equal simulate(config) exactly."""
    cfgs = [SphereConfig(loss=loss, init=init, tau=tau, n=40, batch=8, epochs=60, traces=6, seed=seed)
            for loss, init, tau, seed in [("clip", "polar", 0.1, 0), ("clip_shi_eq7", "nearby", 0.05, 1),
                                          ("slip", "polar", 0.5, 2), ("simclr", "overlapped", 0.2, 3),
                                          ("clip", "polar", 0.1, 4)]]
    many = simulate_many(cfgs, threads=2)
    for cfg, got in zip(cfgs, many):
        one = simulate(cfg)
        assert got.config == cfg
        np.testing.assert_array_equal(got.image, one.image)
        np.testing.assert_array_equal(got.text, one.text)
        np.testing.assert_array_equal(got.snapshots_image, one.snapshots_image)
        for key in one.traces:
            np.testing.assert_array_equal(got.traces[key], one.traces[key])
    assert not np.allclose(many[0].image, many[4].image)  # seeds differ, runs differ


def test_run_many_groups_mixed_schedules_and_keeps_order():
    cfgs = [SphereConfig(n=30, epochs=20, traces=2, tau=0.1), SphereConfig(n=50, epochs=30, traces=3, tau=0.2),
            SphereConfig(n=30, epochs=20, traces=2, tau=0.3)]
    res = run_many(cfgs, processes=2)
    for cfg, r in zip(cfgs, res):
        assert r.config == cfg
        np.testing.assert_array_equal(r.image, simulate(cfg).image)
    with pytest.raises(GapkitError, match="share"):
        simulate_many(cfgs)
    with pytest.raises(GapkitError, match="processes"):
        run_many(cfgs, processes=0)
