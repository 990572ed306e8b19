"""Shi et al.'s readings on the sphere: eq. 7 as printed gives the paper's temperature direction,
the standard loss the opposite one on tau <= 0.5; the step reading of 'epoch'; bad readings."""
from __future__ import annotations

import pytest

from gapkit.errors import GapkitError
from gapkit.experiments.sphere import closing_trend, shi_temperature, shi_two_rings, trend_words


def test_closing_trend_ranks_never_closed_runs_last():
    taus = [0.01, 0.1, 0.5, 2.0]
    assert closing_trend(taus, [100, 200, 300, None], 0.0, 10.0) == pytest.approx(1.0)
    assert closing_trend(taus, [300, 200, 100, 50], 0.0, 10.0) == pytest.approx(-1.0)
    assert closing_trend(taus, [None, None, None, None], 0.0, 10.0) is None
    assert closing_trend(taus, [1, 2, 3, 4], 0.0, 0.2) is None  # fewer than 3 taus in the branch
    assert trend_words(1.0).startswith("closes sooner at lower tau")
    assert trend_words(None) == "undetermined"


def test_two_rings_rejects_an_unknown_reading(tmp_path):
    with pytest.raises(GapkitError, match="reading"):
        shi_two_rings(tmp_path, quick=True, reading="fortnight")


@pytest.mark.slow
def test_eq7_gives_shis_direction_and_the_standard_loss_the_opposite(tmp_path):
    """n = 200 polar runs (seconds each on an idle core): closing epoch rises with tau under eq. 7
    as printed, falls with tau under the standard loss on tau <= 0.5 (its U-shaped branch)."""
    rec = shi_temperature(tmp_path, quick=True, taus=[0.02, 0.05, 0.1, 0.5], inits=["polar"])
    s = rec["summary"]
    assert s["clip_shi_eq7_polar_low_tau_rho"] >= 0.8
    assert s["clip_polar_low_tau_rho"] <= -0.8
    eq7 = s["clip_shi_eq7_polar_gap_closed_epoch_by_tau"]
    assert eq7["0.02"] is not None and eq7["0.02"] < eq7["0.5"]
