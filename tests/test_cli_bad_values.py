"""Bad values on the command line: one GapkitError line, exit 2, no output written.

Each case comes from the QA pass: before the fix it gave a traceback or was silently accepted.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from gapkit.cli import main
from gapkit.errors import GapkitError
from gapkit.typecheck import check_kwargs, check_value
from tests.conftest import gapped_pairs


def rejected(argv: list[str], capsys, out, *needles: str) -> str:
    """Run the CLI; assert exit 2, a single stderr line containing every needle, no output."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    assert not out.exists(), f"{out} was written"
    return err


@pytest.fixture
def zs(tmp_path):
    """Image embeddings (40, 8), integer labels in [0, 4), a (4, 8) classifier."""
    x, _ = gapped_pairs(n=40, d=8)
    np.save(tmp_path / "img.npy", x)
    np.save(tmp_path / "y.npy", np.arange(40) % 4)
    np.save(tmp_path / "cls.npy", np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32))
    return tmp_path


def _zero_shot(d, **over: str) -> list[str]:
    files = {"image": "img.npy", "labels": "y.npy", "classifier": "cls.npy", **over}
    return ["evaluate", "--task", "zero-shot", *[a for k, v in files.items() for a in (f"--{k}", str(d / v))],
            "--out", str(d / "ev.json")]


# 1. list inputs: .npy accepted, binary text refused clearly
def test_fairness_list_inputs_npy_and_binary_text(zs, capsys):
    d = zs
    np.save(d / "prompts.npy", np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32))
    np.save(d / "groups.npy", np.array(["a", "b"] * 20))
    np.save(d / "cats.npy", np.array(["human", "non-human", "crime"]))
    argv = ["evaluate", "--task", "fairness", "--image", str(d / "img.npy"), "--groups", str(d / "groups.npy"),
            "--classifier", str(d / "prompts.npy"), "--prompt-categories", str(d / "cats.npy"), "--out"]
    assert main(argv + [str(d / "ok.json")]) == 0
    rec = json.loads((d / "ok.json").read_text())
    assert {"denigration_a_total", "denigration_b_total"} <= set(rec["metrics"])
    capsys.readouterr()
    (d / "cats.txt").write_bytes(np.load(d / "prompts.npy").tobytes())  # binary data named .txt
    bad = argv[:-3] + ["--prompt-categories", str(d / "cats.txt"), "--out"]
    rejected(bad + [str(d / "ev.json")], capsys, d / "ev.json", "cats.txt", "not UTF-8")


# 2. --set values are checked against TrainConfig's field types
@pytest.mark.parametrize("sets, needle", [(["steps=abc"], "steps must be an integer, got 'abc'"),
                                          (["lr=NaN"], "lr must be a number"),
                                          (["betas=[0.9]"], "betas must be a list of 2 numbers"),
                                          (["progress=3"], "progress must be true or false")])
def test_train_set_type_checked(tmp_path, capsys, sets, needle):
    out = tmp_path / "run"
    rejected(["train", *[a for s in sets for a in ("--set", s)], "--out", str(out)], capsys, out, needle)


def test_train_config_coerces_what_fits():
    from gapkit.train import TrainConfig

    cfg = TrainConfig().with_overrides(["steps=20.0", "lr=1", "betas=[0.8, 0.9]"])
    assert (cfg.steps, cfg.lr, cfg.betas) == (20, 1.0, (0.8, 0.9))
    assert isinstance(cfg.steps, int) and isinstance(cfg.lr, float)


# 3. loss parameters checked against the loss constructor's annotations
def test_train_loss_kwargs_type_checked(tmp_path, capsys):
    out = tmp_path / "run"
    rejected(["train", "--loss", "imsep", "--set", "loss_kwargs.beta=abc", "--out", str(out)], capsys, out,
             "loss 'imsep'", "beta must be a number, got 'abc'")


def test_create_loss_checks_every_loss_generically():
    from gapkit.losses import create_loss

    with pytest.raises(GapkitError, match="lambda_inmodal must be a number"):
        create_loss("cyclip", lambda_inmodal="x")
    with pytest.raises(GapkitError, match="learn_bias must be true or false"):
        create_loss("siglip", learn_bias="no")
    assert create_loss("imsep", beta=1).beta == 1.0  # an int is a fine float


# 4. experiment parameters: typed, and a given value is used or rejected (never `or default`)
@pytest.mark.parametrize("setting, needle", [('scales="abc"', "scales must be a list of numbers or None"),
                                             ("step=0", "step must be in (0, 90]"),
                                             ("scales=[]", "at least one")])
def test_reproduce_liang_mismatch_bad_params(tmp_path, capsys, setting, needle):
    out = tmp_path / "rpy"
    rejected(["reproduce", "liang-mismatch", "--quick", "--set", setting, "--out", str(out)], capsys, out, needle)


@pytest.mark.parametrize("name, setting, needle", [("liang-cone-mlp", "repeats=0", "repeats must be > 0"),
                                                   ("gap-sweep", "lam_step=0", "lam_step must be > 0"),
                                                   ("alignclip", "steps=0", "steps must be > 0"),
                                                   ("shi-temperature", "taus=[]", "at least one")])
def test_reproduce_rejects_non_positive(tmp_path, capsys, name, setting, needle):
    out = tmp_path / "rpy"
    rejected(["reproduce", name, "--quick", "--set", setting, "--out", str(out)], capsys, out, needle)


def test_given_experiment_value_is_used(tmp_path):
    from gapkit.experiments import get_experiment

    rec = get_experiment("liang-mismatch").run(tmp_path, quick=True, step=45, scales=[10])
    assert rec["params"]["step_deg"] == 45.0 and rec["params"]["scales"] == [10.0]
    assert rec["results"]["dtheta"] == [-90.0, -45.0, 0.0, 45.0, 90.0]


# 5. evaluate: non-integer labels, NaN classifier
def test_evaluate_rejects_fractional_labels_accepts_integral_floats(zs, capsys):
    np.save(zs / "yf.npy", (np.arange(40) % 4) + 0.5)
    rejected(_zero_shot(zs, labels="yf.npy"), capsys, zs / "ev.json", "yf.npy", "labels must be integers")
    np.save(zs / "yi.npy", (np.arange(40) % 4).astype(np.float64))
    assert main(_zero_shot(zs, labels="yi.npy")) == 0


def test_evaluate_rejects_nan_classifier_and_image(zs, capsys):
    c = np.load(zs / "cls.npy")
    c[2, 3] = np.nan
    np.save(zs / "cls_nan.npy", c)
    rejected(_zero_shot(zs, classifier="cls_nan.npy"), capsys, zs / "ev.json", "cls_nan.npy", "row 2", "NaN")
    np.save(zs / "cls3.npy", np.zeros((4, 2, 8), np.float32))
    rejected(_zero_shot(zs, classifier="cls3.npy"), capsys, zs / "ev.json", "all zeros")
    x = np.load(zs / "img.npy")
    x[5] = np.inf
    np.save(zs / "img_inf.npy", x)
    rejected(_zero_shot(zs, image="img_inf.npy"), capsys, zs / "ev.json", "row 5")


# 6. measure: logit scale must be a finite number >= 0 (0 = uniform softmax, entropy log M)
@pytest.mark.parametrize("scale", ["nan", "-1", "inf"])
def test_measure_rejects_bad_logit_scale(tmp_path, capsys, scale):
    x, y = gapped_pairs(n=30, d=8)
    np.save(tmp_path / "p.npy", np.stack([x, y]))
    out = tmp_path / "m.json"
    rejected(["measure", "--embeddings", str(tmp_path / "p.npy"), f"--logit-scale={scale}", "--out", str(out)],
             capsys, out, "logit_scale must be >= 0")


# 7. embed: batch size >= 1, workers >= 0 (checked in encoders.extraction, so the API is covered too)
@pytest.mark.parametrize("flag, needle", [("--batch-size=0", "batch size must be > 0"),
                                          ("--workers=-1", "workers must be >= 0")])
def test_embed_rejects_bad_batching(tmp_path, capsys, flag, needle):
    out = tmp_path / "emb"
    rejected(["embed", "--encoder", "towers", "--dataset", "fashion-mnist", "--limit", "4", flag,
              "--cache-dir", str(tmp_path / "cache"), "--quiet", "--out", str(out)], capsys, out, needle)


def test_extract_api_checks_batching():
    from gapkit.encoders.extraction import extract

    with pytest.raises(GapkitError, match="batch size must be an integer"):
        extract(object(), None, batch_size=2.5)


# 8. report: say what is wrong with a record
def test_report_names_the_actual_record_problem(tmp_path, capsys):
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"kind": "measure", "results": [1, 2]}))
    out = tmp_path / "r.html"
    rejected(["report", str(rec), "--html", str(out)], capsys, out, "'results' must be a JSON object, got a list")
    rec.write_text(json.dumps({"results": {}}))
    rejected(["report", str(rec), "--html", str(out)], capsys, out, "missing 'kind'")


# 9. encoders: a missing checkpoint is "file not found"
def test_encoders_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "never"
    rejected(["encoders", "--info", "towers", "--checkpoint", str(tmp_path / "nope.pt")], capsys, out,
             "file not found", "nope.pt")


def test_typecheck_reference_cases():
    """The annotation check against hand-written expectations."""
    def f(a: int, b: float | None = None, c: list[str] | None = None, d: tuple[float, ...] = ()) -> None: ...

    assert check_kwargs(f, {"a": 3.0, "b": 2, "c": ["x"], "d": [1, 2.5]}, "f") == \
        {"a": 3, "b": 2.0, "c": ["x"], "d": (1.0, 2.5)}
    for kw, msg in [({"a": True}, "a must be an integer"), ({"b": "1"}, "b must be a number or None"),
                    ({"c": "xy"}, "c must be a list of strings or None"), ({"d": [1, "z"]}, "d must be a list")]:
        with pytest.raises(GapkitError, match=msg):
            check_kwargs(f, kw, "f")
    assert check_value(None, float | None, "x") is None
    with pytest.raises(GapkitError, match="must be a number"):
        check_value(float("inf"), float, "x")


# found by the scan: config files that are not UTF-8 JSON objects
@pytest.mark.parametrize("content, needle", [(b"\xeb\x80binary", "invalid JSON"),
                                             (b"[1, 2]", "a TrainConfig must be a JSON object, got a list")])
def test_train_config_file_not_a_json_object(tmp_path, capsys, content, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_bytes(content)
    out = tmp_path / "run"
    rejected(["train", "--config", str(cfg), "--out", str(out)], capsys, out, needle)
