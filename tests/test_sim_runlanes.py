"""Sweeps as SIMD lanes across runs (gapkit.sim.vector with W runs per chunk, engine.plan_chunks):
runs that share a seed share their batches and run as lanes of one chunk; each still equals its
single run bit for bit, whatever its chunk, lane, thread or neighbours."""
from __future__ import annotations

import numpy as np
import pytest

from gapkit.errors import GapkitError
from gapkit.sim import SphereConfig, simulate, simulate_many
from gapkit.sim.engine import MAX_RUN_LANES, plan_chunks


def _assert_same(got, one):
    np.testing.assert_array_equal(got.image, one.image)
    np.testing.assert_array_equal(got.text, one.text)
    np.testing.assert_array_equal(got.snapshots_image, one.snapshots_image)
    for key in one.traces:
        np.testing.assert_array_equal(got.traces[key], one.traces[key])


@pytest.mark.parametrize("threads", [1, 2])
def test_a_temperature_sweep_in_lanes_equals_its_single_runs(threads):
    """Both CLIP losses x 5 taus x 2 seeds (two chunks of 10 lanes; 13 steps per epoch, so the
    blocks of 12 steps leave a partial one), plus a free-rows pair, an odd seed alone and a
    scalar-path loss in the same batch."""
    base = SphereConfig(n=67, batch=5, epochs=12, traces=3, init="polar")
    cfgs = [base.replace(loss=loss, tau=tau, seed=seed) for seed in (0, 1)
            for loss in ("clip", "clip_shi_eq7") for tau in (0.02, 0.05, 0.2, 0.5, 2.0)]
    cfgs += [base.replace(tau=0.1, seed=0, reproject=False), base.replace(tau=0.3, seed=0, reproject=False),
             base.replace(tau=0.1, seed=5, init="nearby"), base.replace(loss="siglip", seed=0)]
    many = simulate_many(cfgs, threads=threads)
    for cfg, got in zip(cfgs, many):
        assert got.config == cfg
        _assert_same(got, simulate(cfg))
    # Same seed, different tau: the lanes really are different runs.
    assert not np.array_equal(many[0].image, many[1].image)


def test_more_runs_of_one_seed_than_a_chunk_holds_split_into_chunks():
    base = SphereConfig(n=40, batch=4, epochs=6, traces=2, seed=3, d=4)  # d != 3: the general dot loop
    taus = np.geomspace(0.05, 1.0, MAX_RUN_LANES + 3)
    cfgs = [base.replace(tau=float(t), loss="clip_shi_eq7" if i % 3 == 0 else "clip", lr=0.01 * (1 + i % 2))
            for i, t in enumerate(taus)]
    for cfg, got in zip(cfgs, simulate_many(cfgs, threads=2)):
        _assert_same(got, simulate(cfg))


def test_plan_chunks_keeps_shared_seeds_together_and_balances_the_tasks():
    keys = [(s, True) for s in [0] * 20 + [1] * 12 + [2]]
    plan = plan_chunks(keys, threads=2)
    seen = sorted(p for _, ch in plan for p in ch)
    assert seen == list(range(len(keys)))  # every run exactly once
    for _, ch in plan:
        assert len({keys[p] for p in ch}) == 1 and len(ch) <= MAX_RUN_LANES
    load = [sum(len(ch) for t, ch in plan if t == task) for task in (0, 1)]
    assert max(load) <= -(-len(keys) // 2)  # 33 runs: 17 + 16
    # One group of 16 runs on 2 threads: halved, so both cores work.
    one = plan_chunks([(0, True)] * 16, threads=2)
    assert sorted(len(ch) for _, ch in one) == [8, 8] and {t for t, _ in one} == {0, 1}
    # Too narrow to halve (< 8 runs): one chunk, one task.
    assert len(plan_chunks([(0, True)] * 6, threads=2)) == 1


def test_threads_must_be_a_positive_integer():
    cfgs = [SphereConfig(n=20, epochs=1, traces=1), SphereConfig(n=20, epochs=1, traces=1, tau=0.2)]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(GapkitError, match="threads"):
            simulate_many(cfgs, threads=bad)
