"""gapkit.integrations.open_clip_train: a real open_clip_train run (tiny model, real emoji images and
their CLDR captions, 2 epochs on CPU) with the gap metrics in results.jsonl and a gap loss term."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip_train.main")

from gapkit import measure  # noqa: E402
from gapkit.errors import GapkitError  # noqa: E402
from gapkit.integrations import open_clip_train as goc  # noqa: E402

# A tiny open_clip architecture (open_clip's own CLIP class, BPE tokenizer, 32 px images).
TINY = {"model_cfg": {"embed_dim": 32,
                      "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
                      "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}}
N_TRAIN, N_VAL = 32, 24


def test_both_seams_exist_and_are_used_by_open_clip_train():
    import open_clip_train.main as oc_main
    import open_clip_train.train as oc_train

    for kind in ("metrics", "loss", "model"):
        mod, attr = goc.seam(kind)
        assert callable(getattr(mod, attr))
    # evaluate() calls get_clip_metrics by its module-global name, main() calls create_loss and
    # create_model_and_transforms the same way: patching the module attribute is what reaches them
    assert "get_clip_metrics" in oc_train.evaluate.__code__.co_names
    assert "create_loss" in oc_main.main.__code__.co_names
    assert "create_model_and_transforms" in oc_main.main.__code__.co_names
    # the train loop calls model(images, texts): the token ids are the forward's second argument
    import inspect

    src = inspect.getsource(oc_train.train_one_epoch)
    assert "model(images, texts)" in src and "loss(**model_out, output_dict=True)" in src


def test_gap_metrics_wrapper_adds_measure_values():
    r = np.random.default_rng(0)
    x, y = torch.from_numpy(r.standard_normal((20, 8))).float(), torch.from_numpy(r.standard_normal((20, 8))).float()
    wrapped = goc.with_gap_metrics(lambda a, b, s: {"image_to_text_R@1": 0.5}, ["rmg", "logit_entropy"])
    out = wrapped(x, y, torch.tensor(20.0))
    ref = measure(x.numpy(), y.numpy(), metrics=["rmg", "logit_entropy"], logit_scale=20.0)
    assert out == {"image_to_text_R@1": 0.5, "rmg": ref["rmg"], "logit_entropy": ref["logit_entropy"]}


def test_gap_loss_term_adds_weighted_terms_and_drops_contrastive():
    from gapkit.losses import create_loss

    base = lambda **kw: {"contrastive_loss": torch.tensor(1.0)}  # noqa: E731
    x = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    y = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    term = goc.GapLossTerm(base, create_loss("cyclip"), 0.5)
    out = term(image_features=x, text_features=y, logit_scale=torch.tensor(10.0), output_dict=True)
    ref = create_loss("cyclip")(x, y, torch.tensor(10.0))
    assert set(out) == {"contrastive_loss", "gap_cyclic_inmodal_loss", "gap_cyclic_crossmodal_loss"}
    torch.testing.assert_close(out["gap_cyclic_inmodal_loss"], 0.5 * ref["cyclic_inmodal_loss"])
    total = term(image_features=x, text_features=y, logit_scale=torch.tensor(10.0))
    torch.testing.assert_close(total, sum(out.values()))


@pytest.mark.parametrize("argv, match", [
    (["--gap-metrics", "centroid_distance,bogus"], "unknown metric 'bogus'"),
    (["--gap-loss", "nope"], "unknown loss 'nope'"),
    (["--gap-loss", "clip"], "only repeats a contrastive loss"),
    (["--gap-loss-cache", "emb.npy"], "need --gap-loss imsep"),
    (["--gap-loss", "imsep", "--gap-loss-cache", "e.npy", "--gap-semantic-model", "m"], "drop --gap-semantic-model"),
    (["--gap-loss-param", "t=3"], "needs --gap-loss"),
    (["--gap-loss", "uniformity", "--gap-loss-weight", "abc"], "invalid float value"),
    (["--gap-loss", "uniformity", "--gap-loss-weight", "nan"], "finite"),
    (["--gap-metrics", "--gap-exact-limit", "1"], "at least 2"),
])
def test_bad_gap_options_are_one_line_errors(argv, match, capsys):
    assert goc.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gapkit open_clip_train: error:") and "\n" not in err and re.search(match, err)


@pytest.fixture(scope="module")
def emoji_csv(tmp_path_factory):
    """Real emoji images (Noto Color Emoji) and their CLDR captions in open_clip's CSV layout."""
    from gapkit.data.emoji import build_emoji

    root = tmp_path_factory.mktemp("emoji_csv")
    ds = build_emoji(max_images=N_TRAIN + N_VAL)
    rows = {"train": [], "val": []}
    for i in range(ds.n_images):
        path = root / f"{i:03d}.png"
        ds.image(i).resize((32, 32)).save(path)
        caps = ds.captions_of(i)
        if i < N_TRAIN:  # every caption is a training row (several rows per image, as in COCO)
            rows["train"] += [(path, c) for c in caps]
        else:  # validation is 1:1, as open_clip's retrieval metrics assume
            rows["val"].append((path, caps[0]))
    for split, items in rows.items():
        lines = ["filepath\ttitle"] + [f"{p}\t{c.replace(chr(9), ' ')}" for p, c in items]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    model_dir = root / "tiny-clip"
    model_dir.mkdir()
    (model_dir / "open_clip_config.json").write_text(json.dumps(TINY))
    return root, rows


def _train(root, name: str, extra: list[str]) -> tuple[list[dict], str]:
    argv = ["--train-data", str(root / "train.tsv"), "--val-data", str(root / "val.tsv"), "--dataset-type", "csv",
            "--model", f"local-dir:{root / 'tiny-clip'}", "--batch-size", "16", "--epochs", "2", "--workers", "0",
            "--lr", "1e-3", "--warmup", "1", "--precision", "fp32", "--seed", "0", "--log-every-n-steps", "1",
            "--save-frequency", "1", "--val-frequency", "1", "--logs", str(root / "logs"), "--name", name,
            "--report-to", ""] + extra
    root_logger = logging.getLogger()
    handlers = list(root_logger.handlers)
    levels = {lg: logging.getLogger(lg).level for lg in [""] + list(logging.root.manager.loggerDict)}
    try:  # in process: a subprocess would re-import torch and open_clip (seconds on 2 cores)
        assert goc.main(argv) == 0
    finally:  # open_clip's setup_logging adds root handlers and sets EVERY logger to INFO: undo both
        for h in list(root_logger.handlers):
            if h not in handlers:
                root_logger.removeHandler(h)
                h.close()
        for lg in logging.root.manager.loggerDict:
            logging.getLogger(lg).setLevel(levels.get(lg, logging.NOTSET))
        root_logger.setLevel(levels[""])
    run = root / "logs" / name
    results = [json.loads(line) for line in (run / "checkpoints" / "results.jsonl").read_text().splitlines()]
    return results, (run / "out.log").read_text()


def _val_features(root, rows, checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """Recompute the validation features from the saved checkpoint, independently of the run."""
    import open_clip
    from PIL import Image

    name = f"local-dir:{root / 'tiny-clip'}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    model.eval()
    tok = open_clip.get_tokenizer(name)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.open(p)) for p, _ in rows["val"]]), normalize=True)
        txt = model.encode_text(tok([c for _, c in rows["val"]]), normalize=True)
    return img.numpy(), txt.numpy()


def test_open_clip_train_two_epochs_with_gap_metrics_and_gap_loss(emoji_csv):
    root, rows = emoji_csv
    results, log = _train(root, "gap", ["--gap-metrics", "--gap-loss", "uniformity", "--gap-loss-weight", "0.5"])
    assert [r["epoch"] for r in results] == [1, 2]
    for r in results:  # open_clip's own metrics and gapkit's, side by side
        assert {"image_to_text_R@1", "clip_val_loss", "centroid_distance", "rmg", "uniformity_cross",
                "logit_entropy"} <= set(r)
    # the values are gapkit's on the validation features of the saved epoch-2 model
    ckpt_path = root / "logs" / "gap" / "checkpoints" / "epoch_2.pt"
    img, txt = _val_features(root, rows, ckpt_path)
    scale = float(torch.load(ckpt_path, weights_only=True)["state_dict"]["logit_scale"].exp())
    ref = measure(img, txt, metrics=list(goc.DEFAULT_METRICS), logit_scale=scale)
    for key in ("centroid_distance", "centroid_cosine", "paired_cosine_mean", "rmg", "uniformity_image",
                "uniformity_cross", "logit_entropy"):
        np.testing.assert_allclose(results[-1][key], ref[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert "centroid_distance:" in log  # open_clip's "Eval Epoch" log line carries them too
    # the loss: open_clip logs each term of the loss dict and their sum
    steps = re.findall(r"Contrastive_loss: (\S+) \(\S+\) Gap_uniformity_loss: (\S+) \(\S+\) Loss: (\S+) ", log)
    assert len(steps) >= 4  # 2 epochs x >= 2 logged steps
    for contrastive, gap, total in steps:
        assert float(gap) < 0  # 0.5 x (U(X) + U(Y)) / 2 with U = log mean exp(-2 d^2) <= 0
        assert float(total) == pytest.approx(float(contrastive) + float(gap), rel=1e-3, abs=1e-3)


@pytest.mark.slow
def test_open_clip_train_without_gap_options_is_unchanged(emoji_csv):
    root, _ = emoji_csv
    results, log = _train(root, "plain", [])
    assert "centroid_distance" not in results[-1] and "Gap_" not in log


@pytest.mark.slow  # a fresh interpreter imports torch: ~10 s on 2 cores
def test_module_runs_as_a_script_with_a_usage_error():
    p = subprocess.run([sys.executable, "-m", "gapkit.integrations.open_clip_train", "--gap-loss", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "unknown loss 'nope'" in p.stderr


def test_parse_gap_args_leaves_open_clip_arguments_alone():
    gap, rest = goc.parse_gap_args(["--model", "RN50", "--gap-metrics", "--epochs", "3", "--gap-loss", "cyclip",
                                    "--gap-loss-param", "lambda_inmodal=0.5"])
    assert rest == ["--model", "RN50", "--epochs", "3"]
    assert gap.gap_metrics == list(goc.DEFAULT_METRICS) and gap.gap_loss_param == {"lambda_inmodal": 0.5}
    with pytest.raises(GapkitError):
        goc.parse_gap_args(["--gap-metrics", "nonsense"])


def test_above_the_exact_limit_pairwise_metrics_are_sampled_with_a_ci():
    r = np.random.default_rng(2)
    z = r.standard_normal((600, 16))
    x, y = z + r.standard_normal((600, 16)) + 1.0, z + r.standard_normal((600, 16)) - 1.0
    exact = goc.gap_metrics(x, y, 50.0)  # 600 <= the default limit: exact, no CI keys
    assert "uniformity_cross_ci_low" not in exact
    sampled = goc.gap_metrics(x, y, 50.0, exact_limit=100)
    assert sampled["centroid_distance"] == pytest.approx(exact["centroid_distance"], rel=1e-12)  # always exact
    for key in ("uniformity_image", "uniformity_cross", "logit_entropy"):
        assert sampled[f"{key}_ci_low"] <= exact[key] <= sampled[f"{key}_ci_high"], key


# ----------------------------------------------------------------------------- imsep and TensorBoard

def test_caption_table_finds_each_batch_caption_by_its_token_ids():
    import open_clip

    from gapkit.integrations.caption_table import CaptionTable, token_hash

    captions = ["a red apple", "a green apple", "a red apple", "grinning face", "x" * 500, "x" * 500 + " more"]
    tok = open_clip.get_tokenizer("ViT-B-32")
    tokens = tok(captions)
    emb = np.random.default_rng(0).standard_normal((len(captions), 5)).astype(np.float32)
    table = CaptionTable(tokens.numpy(), emb)
    assert table.hashes.shape[0] == 4  # duplicates and texts equal after the context length are one key
    np.testing.assert_array_equal(token_hash(tokens).numpy(), token_hash(tokens.numpy()))  # torch == NumPy
    batch = torch.tensor([3, 1, 0, 2, 5, 4])
    got = table.lookup(tokens[batch])
    first = {0: 0, 1: 1, 2: 0, 3: 3, 4: 4, 5: 4}  # each caption's first row with equal token ids
    np.testing.assert_array_equal(got.numpy(), emb[[first[int(i)] for i in batch]])
    with pytest.raises(GapkitError, match="not in the caption table"):
        table.lookup(tok(["a caption that was never in the training csv"]))
    with pytest.raises(GapkitError, match="one per training caption"):
        CaptionTable(tokens.numpy(), emb[:3])


def test_open_clip_train_with_imsep_and_tensorboard(emoji_csv, monkeypatch):
    """--gap-loss imsep with its caption embeddings computed before training (SBERT, offline), looked up
    per batch by token ids; --report-to tensorboard: the event file holds the val/ gap scalars."""
    import open_clip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gapkit.integrations import caption_table
    from gapkit.losses.semantic import caption_embeddings

    root, rows = emoji_csv
    seen = []
    original = caption_table.SemanticFromTokens.__call__

    def record(self, image_features):  # what the loss was given, beside the batch's token ids
        out = original(self, image_features)
        seen.append((self.tap.tokens.clone(), out["semantic"].clone()))
        return out

    monkeypatch.setattr(caption_table.SemanticFromTokens, "__call__", record)
    results, log = _train(root, "imsep", ["--gap-metrics", "geometry", "--gap-loss", "imsep",
                                          "--gap-loss-weight", "0.5", "--report-to", "tensorboard"])
    steps = re.findall(r"Contrastive_loss: (\S+) \(\S+\) Gap_imsep_image_loss: (\S+) \(\S+\) Loss: (\S+) ", log)
    assert len(steps) >= 4
    for contrastive, gap, total in steps:
        assert float(gap) > 0  # 0.5 x a cross-entropy
        assert float(total) == pytest.approx(float(contrastive) + float(gap), rel=1e-3, abs=1e-3)
    # each batch got the SBERT embeddings of its own captions (found here by exact token equality)
    train_captions = [c for _, c in rows["train"]]
    tokens = open_clip.get_tokenizer(f"local-dir:{root / 'tiny-clip'}")(train_captions)
    emb = caption_embeddings(train_captions, progress=False)
    assert len(seen) >= 4
    for batch_tokens, semantic in seen:
        match = (batch_tokens[:, None, :] == tokens[None]).all(-1).float().argmax(1)  # first equal row
        torch.testing.assert_close(semantic, emb[match])
    # TensorBoard: open_clip's writer holds gapkit's scalars under val/, equal to results.jsonl
    events = EventAccumulator(str(root / "logs" / "imsep" / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/centroid_distance", "val/rmg", "val/image_to_text_R@1", "train/gap_imsep_image_loss"} <= tags
    for key in ("centroid_distance", "rmg", "paired_cosine_mean"):
        values = [e.value for e in events.Scalars(f"val/{key}")]
        np.testing.assert_allclose(values, [r[key] for r in results], rtol=1e-6, err_msg=key)


def test_imsep_bad_caption_inputs_are_one_line_errors_before_the_run_starts(emoji_csv, tmp_path, capsys):
    root, rows = emoji_csv
    bad = tmp_path / "emb.npy"
    np.save(bad, np.ones((len(rows["train"]) - 1, 8), np.float32))
    common = ["--train-data", str(root / "train.tsv"), "--dataset-type", "csv", "--model",
              f"local-dir:{root / 'tiny-clip'}", "--logs", str(tmp_path / "logs"), "--gap-loss", "imsep"]
    for extra, match in ((["--gap-loss-cache", str(bad)], "one row per --train-data row"),
                         (["--gap-loss-cache", str(tmp_path / "missing.npy")], "cannot read a .npy"),
                         (["--csv-caption-key", "caption"], "no caption column 'caption'")):
        assert goc.main(common + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gapkit open_clip_train: error:") and "\n" not in err and match in err, err
    assert not (tmp_path / "logs").exists()  # open_clip_train never started
