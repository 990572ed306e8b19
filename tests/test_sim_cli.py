"""CLI smoke tests: `gapkit simulate sphere` and `gapkit reproduce` (quick versions)."""
from __future__ import annotations

import json

import pytest

from gapkit.cli import main
from gapkit.commands.reproduce import parse_overrides
from gapkit.errors import GapkitError


def test_simulate_writes_record_and_figures(tmp_path, capsys):
    out, figs = tmp_path / "run.json", tmp_path / "figs"
    rc = main(["simulate", "sphere", "--loss", "clip", "--init", "polar", "--tau", "0.1", "--n", "100",
               "--epochs", "300", "--seed", "0", "--out", str(out), "--figures", str(figs), "--no-progress"])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["kind"] == "simulate" and rec["params"]["tau"] == 0.1 and rec["params"]["steps_per_epoch"] == 10
    res = rec["results"]
    assert res["steps_per_second"] > 0 and res["steps"] == 3000
    tr = res["traces"]
    assert tr["epoch"][0] == 0 and tr["epoch"][-1] == 300 and len(tr["centroid_distance"]) == len(tr["epoch"])
    assert len(res["snapshots"]["indices"]) == 30
    assert sorted(p.name for p in figs.iterdir() if not p.name.startswith(".")) == ["run_distances.png", "run_snapshots.png"]


@pytest.mark.parametrize("args, words", [
    (["--tau", "-1"], "tau"), (["--batch", "500", "--n", "100"], "batch"), (["--loss", "nope"], "unknown loss"),
    (["--init", "nope"], "unknown init"), (["--snapshots", "1,x"], "snapshots"),
])
def test_simulate_bad_parameters_exit_2_without_output(tmp_path, capsys, args, words):
    out = tmp_path / "run.json"
    assert main(["simulate", "sphere", "--out", str(out), "--no-progress", *args]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_reproduce_list_names_every_toy_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("shi-two-rings", "shi-init", "shi-temperature", "shi-slip", "liang-mismatch", "liang-cone-mlp"):
        assert name in listing


def test_reproduce_liang_experiments(tmp_path, capsys):
    assert main(["reproduce", "liang-mismatch", "--quick", "--out", str(tmp_path / "m")]) == 0
    rec = json.loads((tmp_path / "m" / "record.json").read_text())
    assert rec["summary"]["optimal_abs_dtheta_mismatch"]["1"] == 0.0
    assert rec["summary"]["optimal_abs_dtheta_mismatch"]["100"] > 30
    assert set(rec["summary"]["optimal_abs_dtheta_no_mismatch"].values()) == {0.0}
    assert (tmp_path / "m" / "mismatch_landscape.png").exists()
    assert main(["reproduce", "liang-cone-mlp", "--quick", "--set", "depth=4", "--set", 'activations=["none","sigmoid"]',
                 "--out", str(tmp_path / "c")]) == 0
    rec = json.loads((tmp_path / "c" / "record.json").read_text())
    assert rec["params"]["depth"] == 4 and set(rec["results"]["mean_cosine"]) == {"none", "sigmoid"}
    assert "record ->" in capsys.readouterr().out


def test_reproduce_two_rings_quick(tmp_path):
    """CLIP keeps the two modalities on disjoint sides far longer than unimodal NT-Xent (Shi Fig. 2)."""
    assert main(["reproduce", "shi-two-rings", "--quick", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "record.json").read_text())["summary"]
    assert s["clip_gap_closed_epoch"] is not None and s["simclr_gap_closed_epoch"] is not None
    assert s["clip_gap_closed_epoch"] > 5 * s["simclr_gap_closed_epoch"]
    assert s["clip_separated_until"] > 10 * s["simclr_separated_until"]
    assert len(list(tmp_path.glob("snapshots_*.png"))) == 2 and (tmp_path / "distances.png").exists()


@pytest.mark.parametrize("name", ["shi-init", "shi-slip", "shi-temperature"])
def test_reproduce_other_sphere_experiments_quick(tmp_path, name):
    extra = ["--set", "taus=[0.1,0.5]", "--set", 'inits=["polar"]'] if name == "shi-temperature" else []
    assert main(["reproduce", name, "--quick", "--set", "epochs=400", "--set", "n=60", *extra,
                 "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "record.json").read_text())
    assert rec["params"]["experiment"] == name and rec["summary"]
    for run in rec["results"]["runs"].values():
        assert run["params"]["epochs"] == 400 and run["params"]["n"] == 60
    if name == "shi-init":
        assert rec["summary"]["overlapped_max_centroid_distance"] < 0.25  # 60 pairs: sampling noise ~0.1
        assert rec["summary"]["polar_separated_until"] == 400


def test_reproduce_errors(tmp_path, capsys):
    assert main(["reproduce", "no-such-experiment", "--out", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["reproduce", "liang-mismatch", "--set", "bogus=1", "--out", str(tmp_path)]) == 2
    assert "unknown parameter" in capsys.readouterr().err
    assert main(["reproduce", "shi-init", "--quick", "--set", "tau=-1", "--out", str(tmp_path)]) == 2
    assert "tau" in capsys.readouterr().err
    assert main(["reproduce", "liang-mismatch"]) == 2


def test_parse_overrides():
    assert parse_overrides(["tau=0.1", "init=polar", "taus=[1, 2]", "flag=true"]) == {
        "tau": 0.1, "init": "polar", "taus": [1, 2], "flag": True}
    with pytest.raises(GapkitError):
        parse_overrides(["novalue"])
