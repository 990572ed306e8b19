"""gapkit.integrations.hf: a tiny CLIPModel trained a few steps with the HF Trainer gets eval_<gap key>
at every evaluation, equal to gapkit.measure on the same features."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gapkit import measure  # noqa: E402
from gapkit.integrations.hf import GapMetricsTrainerCallback  # noqa: E402

VOCAB, CTX, N_EVAL = 64, 8, 20


def tiny_clip():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         bos_token_id=0, eos_token_id=VOCAB - 1, pad_token_id=0,
                         num_attention_heads=2, max_position_embeddings=CTX),
        vision_config=dict(image_size=16, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16)
    return CLIPModel(cfg)


class Pairs(torch.utils.data.Dataset):
    """Token ids directly (offline CLIPTokenizer.from_pretrained is empty) and images tied to them."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB - 1, (n, CTX), generator=g)
        self.ids[:, -1] = VOCAB - 1  # CLIP pools the text at the highest token id (eos)
        self.pixels = torch.randn(n, 3, 16, 16, generator=g) + self.ids[:, :1, None, None].float() / VOCAB

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "pixel_values": self.pixels[i]}


def collate(rows: list[dict]) -> dict:
    out = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    out["return_loss"] = True  # CLIPModel computes its contrastive loss; there are no labels
    return out


def trainer_for(model, tmp_path, callbacks=None, **extra):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8,
                             max_steps=2, eval_strategy="steps", eval_steps=1, logging_steps=1, save_strategy="no",
                             report_to=[], use_cpu=True, remove_unused_columns=False, dataloader_num_workers=0,
                             learning_rate=1e-3, disable_tqdm=True, **extra)
    return Trainer(model=model, args=args, train_dataset=Pairs(32, 0), eval_dataset=Pairs(N_EVAL, 1),
                   data_collator=collate, callbacks=callbacks)


def eval_features(model) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    batch = collate([Pairs(N_EVAL, 1)[i] for i in range(N_EVAL)])
    with torch.no_grad():
        out = model(**batch)
    return out.image_embeds.numpy(), out.text_embeds.numpy()


def test_trainer_logs_gap_metrics_equal_to_measure(tmp_path):
    model = tiny_clip()
    trainer = trainer_for(model, tmp_path)
    cb = GapMetricsTrainerCallback.attach(trainer)
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_rmg" in h]
    assert [h["step"] for h in evals] == [1, 2]  # logged through trainer.log at each evaluation's step
    x, y = eval_features(model)
    ref = measure(x, y, metrics=["geometry", "uniformity", "logit_entropy"])
    for key in ("centroid_distance", "centroid_cosine", "rmg", "paired_cosine_mean", "uniformity_text",
                "uniformity_cross", "logit_entropy"):
        np.testing.assert_allclose(evals[-1][f"eval_{key}"], ref[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert evals[-1]["eval_n_image"] == N_EVAL  # training forwards (train mode) were not collected
    eval_features(model)  # an eval-mode forward outside the Trainer's loop is not counted
    metrics = trainer.evaluate()  # the returned dict carries them too (metric_for_best_model can use them)
    np.testing.assert_allclose(metrics["eval_rmg"], ref["rmg"], rtol=1e-4)
    assert metrics["eval_n_image"] == N_EVAL
    assert cb.last["eval_rmg"] == metrics["eval_rmg"]


def test_callback_passed_to_the_constructor_fills_log_history(tmp_path):
    model = tiny_clip()
    cb = GapMetricsTrainerCallback(["centroid_distance"])
    trainer = trainer_for(model, tmp_path, callbacks=[cb])
    metrics = trainer.evaluate()
    x, y = eval_features(model)
    np.testing.assert_allclose(metrics["eval_centroid_distance"], measure(x, y, metrics=["centroid_distance"])
                               ["centroid_distance"], rtol=1e-4)
    assert any("eval_centroid_distance" in h for h in trainer.state.log_history)


_DDP_SCRIPT = '''
import json, sys
sys.path[:0] = [{src!r}, {root!r}]
import torch
import torch.distributed as dist
from tests.test_integrations_hf import tiny_clip, trainer_for
from gapkit.integrations.hf import GapMetricsTrainerCallback

out = sys.argv[1]
trainer = trainer_for(tiny_clip(), out, ddp_backend="gloo")  # DDP on CPU: gloo
assert trainer.args.world_size == 2, trainer.args.world_size
GapMetricsTrainerCallback.attach(trainer)
trainer.train()
evals = [h for h in trainer.state.log_history if "eval_rmg" in h]
if dist.get_rank() == 0:
    torch.save(trainer.model.state_dict(), out + "/weights.pt")
    json.dump(evals, open(out + "/evals.json", "w"))
'''


@pytest.mark.timeout(300)
def test_two_gloo_processes_log_the_metrics_of_every_eval_row(tmp_path):
    """torchrun, 2 processes: the Trainer splits the eval set between them, the callback's ModalityGap
    syncs its states, and the logged values equal gapkit.measure on all eval features of the trained
    model in one process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "run.py"
    script.write_text(_DDP_SCRIPT.format(src=str(root / "src"), root=str(root)))
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(script), str(tmp_path)], check=True, env=env, timeout=280)
    import json

    evals = json.loads((tmp_path / "evals.json").read_text())
    assert [h["step"] for h in evals] == [1, 2]
    assert evals[-1]["eval_n_image"] == N_EVAL  # both halves: 10 rows per process, summed by the sync
    model = tiny_clip()
    model.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    x, y = eval_features(model)
    ref = measure(x, y, metrics=["geometry", "uniformity", "logit_entropy"])
    for key in ("centroid_distance", "rmg", "paired_cosine_mean", "uniformity_image", "uniformity_cross",
                "logit_entropy"):
        np.testing.assert_allclose(evals[-1][f"eval_{key}"], ref[key], rtol=1e-4, atol=1e-6, err_msg=key)
