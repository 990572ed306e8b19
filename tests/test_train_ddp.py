"""torch.distributed: a 2-process gloo run (torchrun) equals one process holding the whole batch."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from _synthetic_pairs import single_thread  # noqa: E402
SRC = TESTS.parent / "src"

_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}, {src!r}]
    from _synthetic_pairs import SyntheticPairs
    from gapkit.losses import register_loss
    from gapkit.train import TrainConfig, train
    register_loss("gathering_clip", "_synthetic_pairs:GatheringClipLoss")
    cfg = TrainConfig(**{cfg!r}, loss=sys.argv[2])
    train(cfg, sys.argv[1], dataset=SyntheticPairs(128), eval_dataset=SyntheticPairs(40, seed=1))
""")
_CFG = dict(model="tiny-vit", steps=3, batch_size=32, eval_every=3, ckpt_every=3, eval_size=40,
            warmup_steps=1, lr=1e-3, progress=False, threads=1, seed=5)


def _losses_gather_landed() -> bool:
    return importlib.util.find_spec("gapkit.distributed") is not None


@pytest.mark.parametrize("loss", [
    # The trainer's own gather path (independent of gapkit.distributed); slow: "clip" covers DDP by default.
    pytest.param("gathering_clip", marks=pytest.mark.slow),
    pytest.param("clip", marks=pytest.mark.skipif(not _losses_gather_landed(),
                                                  reason="gapkit.distributed (losses branch) not merged yet")),
])
def test_two_gloo_processes_equal_one_process(tmp_path, loss):
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(tests=str(TESTS), src=str(SRC), cfg=_CFG))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    from gapkit.losses import register_loss
    from gapkit.train import TrainConfig, train

    sys.path.insert(0, str(TESTS))
    from _synthetic_pairs import SyntheticPairs

    register_loss("gathering_clip", "_synthetic_pairs:GatheringClipLoss")
    train(TrainConfig(**_CFG, loss=loss), tmp_path / "one", dataset=SyntheticPairs(128),
          eval_dataset=SyntheticPairs(40, seed=1))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(script), str(tmp_path / "two"), loss], check=True, env=env, timeout=300)

    def rows(d):
        return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]

    one, two = rows(tmp_path / "one")[-1], rows(tmp_path / "two")[-1]
    assert two["contrastive_loss"] == pytest.approx(one["contrastive_loss"], abs=1e-5)
    w1, w2 = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "one", tmp_path / "two"))
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst < 1e-5, f"weights differ by {worst}"
    assert json.loads((tmp_path / "two" / "record.json").read_text())["results"]["world_size"] == 2


@pytest.fixture(autouse=True)
def _one_thread():
    yield from single_thread()
