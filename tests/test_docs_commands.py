"""Every `gapkit ...` command line shown in README.md and docs/*.md parses with the real CLI, and
every one is EXECUTED on small inputs (in doc order, one workspace per document, so a command can
use what an earlier one of the same page wrote), except the ones in SKIP (each with its reason)
and the slower ones in SLOW (run with `-m slow`). Long-running commands run with --quick where
they have it."""
from __future__ import annotations

import json
import shutil
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from gapkit.cli import _command_modules, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# command prefix -> why it is not executed here
SKIP = {
    "demo": "minutes on 2 cores; `gapkit demo --quick` runs end to end in tests/test_demo.py",
    "train ": "trains a model for minutes; the trainer runs on tiny inputs in tests/test_train.py",
    "reproduce NAME": "a template (NAME, DIR), not a command",
    "reproduce fashion-zero-shot-sweep": "LiT heads on pretrained towers over Fashion-MNIST: minutes",
    "reproduce isoclip": "LiT heads on the pretrained towers over emoji + openclipart (minutes with a cold "
                         "cache); the fixer is tested in tests/test_fixers_methods.py",
    "embed --encoder open_clip:ViT-B-32": "a full-size ViT-B-32 on real images (minutes on 2 cores); open_clip "
                                          "embedding runs with a tiny config in tests/test_own_data.py",
    "embed --encoder hf:": "needs a Hugging Face CLIP directory of the user's",
    "embed --encoder towers": "the pretrained towers on real images (~1 min with a cold cache); tested in "
                              "tests/test_encoders_towers.py; the outputs later commands read are provided here",
    "embed --merge": "merges the shards of the skipped command above",
    "study --encoder": "embeds real images with a pretrained model (minutes); `gapkit study` runs on an "
                       "openclipart subset with a tiny open_clip in tests/test_study.py",
    "index build --embeddings runs/emoji-emb --encoder towers": "needs the real towers embeddings of emoji "
                                                                "(the embed command that makes them is skipped above)",
    "index info runs/emoji-idx": "describes the index of the command above",
    "measure --embeddings runs/emoji-shards --engine ray": "reads the shards of the skipped towers embed above, "
        "on Ray (README: a running cluster, --address auto); the same flows run on a local Ray instance in "
        "tests/test_engines_ray.py",
    "fix --method center --fit runs/emoji-shards": "the shards of the skipped embed above, on Ray; see "
                                                   "tests/test_engines_ray.py",
    "measure --embeddings runs/emoji-fixed --engine ray": "the output of the skipped fix above",
    "measure --embeddings /shared/laion-emb": "a cluster's shared storage (a template of a real deployment)",
    **{f"reproduce {name} --data emoji+openclipart": "LiT heads on the pretrained towers' features of emoji + "
       "openclipart (a cold cache extracts them: minutes); the setting runs on synthetic features in "
       "tests/test_diverse_experiments.py"
       for name in ("alignclip", "jina-false-negatives", "jina-high-temperature", "liang-temperature",
                    "liang-init-amendment", "information-imbalance")},
    "serve ": "starts a web server that runs until stopped; the app is tested in tests/test_serve.py "
              "(TestClient and a live server in headless Chromium)",
}
# run only with -m slow (seconds to a minute each on 2 loaded cores)
SLOW = ("reproduce shi-", "reproduce liang-shift-landscape", "reproduce gap-sweep", "simulate sphere",
        "index build --dataset emoji --encoder towers", "search runs/emoji-idx")  # the towers on real images
# placeholders in the docs -> files made by the workspace
PLACEHOLDERS = {"STACK.npy": "stack.npy", "IMG": "img.npy", "TXT": "txt.npy", "MAP": "map.npy"}
QUICK = ("reproduce ",)  # executed with --quick appended when absent


def _commands() -> list[tuple[str, str]]:
    out = []
    subcommands = set(_command_modules())
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\s*(?:\$\s*)?(?:\.venv/bin/)?(?:torchrun [^-]*?(?:--\S+ \S+ )*-m )?gapkit (.+)$", line)
            if not m or line.strip().startswith(("#", ">")) or "..." in line or "[" in line:
                continue
            cmd = m.group(1).split("  #")[0].strip().rstrip("\\").strip()
            if cmd.split()[0] not in subcommands or "|" in cmd or "<" in cmd:
                continue
            out.append((doc.name, cmd))
    return out


COMMANDS = _commands()
IDS = [f"{d}:{i}:{c[:50]}" for i, (d, c) in enumerate(COMMANDS)]


def test_docs_show_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("doc,cmd", COMMANDS, ids=IDS)
def test_documented_command_parses(doc, cmd):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(cmd))
    except SystemExit as exc:
        pytest.fail(f"{doc}: `gapkit {cmd}` does not parse (exit {exc.code})")


# ----------------------------------------------------------------------------- execution
def _pairs(n: int = 60, d: int = 16, seed: int = 0):
    from gapkit.embeddings import PairedEmbeddings

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    gap = np.zeros(d)
    gap[0] = 2.0
    return PairedEmbeddings((z + gap + 0.5 * rng.normal(size=z.shape)).astype(np.float32),
                            (z - gap + 0.5 * rng.normal(size=z.shape)).astype(np.float32),
                            metadata={"model": "synthetic", "dataset": "docs workspace"})


def _make_workspace(root: Path) -> Path:
    """The files the documented commands name, small: stacks, single matrices, embed dirs, records."""
    from gapkit.embeddings import save_embeddings
    from gapkit.encoders.extraction import save_embed_dir

    root.mkdir(parents=True)
    for k, name in enumerate(("stack.npy", "calib.npy", "data.npy", "test.npy")):
        pe = _pairs(seed=k)
        np.save(root / name, np.stack([pe.image, pe.text]))
    pe = _pairs(seed=9)
    np.save(root / "img.npy", pe.image)
    np.save(root / "txt.npy", pe.text)
    np.save(root / "map.npy", np.arange(pe.n_text))
    save_embeddings(pe, root / "clip_retrieval_output", layout="clip-retrieval")
    for d, seed in (("run/emb", 1), ("run/calib", 2), ("runs/emoji-towers", 3), ("runs/emoji-emb", 4)):
        save_embed_dir(_pairs(seed=seed), root / d)
    for d in ("runs/rings", "runs/clip"):  # outputs of commands skipped above, for `gapkit report`
        assert main(["measure", "--embeddings", str(root / "stack.npy"), "--metrics", "geometry",
                     "--out", str(root / d / "record.json")]) == 0
    assert main(["evaluate", "--task", "retrieval", "--embeddings", str(root / "test.npy"),
                 "--out", str(root / "runs" / "eval.json")]) == 0
    (root / "metrics.json").write_text((root / "runs" / "clip" / "record.json").read_text())
    stack = _pairs(seed=0)  # the pairs of stack.npy: labelled queries for `evaluate --index` (docs/search.md)
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"vector": stack.text[i].tolist(), "relevant_items": [str(i)]}) + "\n" for i in range(10)))
    from gapkit.samples import load_sample

    np.save(root / "query.npy", load_sample("clip").text[0])  # a query of the clip-sample index (README)
    np.save(root / "q.npy", load_sample("clip").text[1])      # ... and of docs/search.md
    cal = _pairs(seed=5)  # calibration data with two captions per image (calibrated needs text-text matches)
    np.savez(root / "calib.npz", image=cal.image[:30], text=np.concatenate([cal.text[:30], cal.text[30:]]),
             text_to_image=np.concatenate([np.arange(30), np.arange(30)]))
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(im).ellipse([16, 16, 80, 80], fill=(210, 30, 30))
    im.save(root / "apple.png")
    # the saved records behind docs/fidelity.md (`gapkit reproduce --summary` reads docs/results)
    shutil.copytree(Path(__file__).resolve().parents[1] / "docs" / "results", root / "docs" / "results")
    # what the skipped `embed --encoder towers --texts/--images` of docs/encoders.md would write
    # (one-side embed directories, row i of each describing the same thing), and a several-array file
    from gapkit.encoders.embed_dir import save_side_dir

    side = _pairs(n=5, seed=6)
    save_side_dir(side.text, "text", root / "runs" / "q", {"model": "synthetic"}, captions=[f"query {k}" for k in range(5)])
    save_side_dir(side.image, "image", root / "runs" / "photos", {"model": "synthetic"},
                  image_ids=[f"photo{k}.jpg" for k in range(5)])
    feats = _pairs(seed=7)
    np.savez(root / "features.npz", img_feats=feats.image, txt_feats=feats.text, labels=np.arange(feats.n_image))
    return root


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    base = tmp_path_factory.mktemp("docs")
    made: dict[str, Path] = {}

    def get(doc: str) -> Path:
        if doc not in made:
            made[doc] = _make_workspace(base / doc.replace(".", "_"))
        return made[doc]

    return get


def _argv(cmd: str) -> list[str]:
    argv = [PLACEHOLDERS.get(a, a) for a in shlex.split(cmd)]
    if cmd.startswith(QUICK) and "--quick" not in argv and "--list" not in argv:
        argv.append("--quick")
    return argv


def _marks(cmd: str) -> list:
    return [pytest.mark.slow] if cmd.startswith(SLOW) else []


@pytest.mark.parametrize("doc,cmd", [pytest.param(d, c, marks=_marks(c)) for d, c in COMMANDS], ids=IDS)
def test_documented_command_runs(doc, cmd, workspaces, monkeypatch, capsys):
    reason = next((why for prefix, why in SKIP.items() if cmd.startswith(prefix)), None)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(workspaces(doc))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(_argv(cmd))
    err = capsys.readouterr().err
    assert code == 0, f"{doc}: `gapkit {cmd}` exited {code}: {err.strip()[-500:]}"
