"""gapkit.integrations.lightning: a tiny two-tower model trained for a few steps with Lightning logs
val/<gap key> at every validation epoch, equal to gapkit.measure on the same features."""
from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

from gapkit import measure  # noqa: E402
from gapkit.errors import GapkitError  # noqa: E402
from gapkit.integrations.lightning import GapMetricsCallback  # noqa: E402
from gapkit.losses import create_loss  # noqa: E402

N_VAL, CAPS = 24, 2  # validation: 24 images with 2 captions each (for the hook variant)


def data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g)
    return z @ torch.randn(6, 20, generator=g), z @ torch.randn(6, 12, generator=g)


class TwoTowers(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image_tower, self.text_tower = torch.nn.Linear(20, 8), torch.nn.Linear(12, 8)
        self.loss = create_loss("clip")

    def embed(self, img, txt):
        n = torch.nn.functional.normalize
        return n(self.image_tower(img), dim=1), n(self.text_tower(txt), dim=1)

    def training_step(self, batch, batch_idx):
        x, y = self.embed(*batch)
        return sum(self.loss(x, y, torch.tensor(10.0)).values())

    def validation_step(self, batch, batch_idx):
        x, y = self.embed(*batch)
        return {"image_features": x, "text_features": y}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def loaders():
    ds = torch.utils.data.TensorDataset(*data(64, 0))
    val = torch.utils.data.TensorDataset(*data(N_VAL, 1))
    return torch.utils.data.DataLoader(ds, batch_size=16), torch.utils.data.DataLoader(val, batch_size=10)


def fit(tmp_path, callback, epochs: int = 2):
    from lightning.pytorch.loggers import CSVLogger

    model = TwoTowers()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path),
                        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=1, log_every_n_steps=1)
    train, val = loaders()
    trainer.fit(model, train, val)
    return model, trainer


def logged_rows(trainer) -> list[dict]:
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("val/rmg")]


def test_callback_logs_gap_metrics_equal_to_measure(tmp_path):
    cb = GapMetricsCallback()
    model, trainer = fit(tmp_path, cb)
    rows = logged_rows(trainer)
    assert len(rows) == 2  # one per validation epoch (the sanity check is not measured)
    model.eval()
    with torch.no_grad():
        x, y = model.embed(*data(N_VAL, 1))
    ref = measure(x.numpy(), y.numpy(), metrics=["geometry", "uniformity", "logit_entropy"])
    for key in ("centroid_distance", "centroid_cosine", "rmg", "paired_cosine_mean", "uniformity_image",
                "uniformity_cross", "image_cone_cosine_min", "logit_entropy"):
        np.testing.assert_allclose(float(trainer.callback_metrics[f"val/{key}"]), ref[key], rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(float(rows[-1][f"val/{key}"]), ref[key], rtol=1e-5, err_msg=key)
    assert float(rows[0]["val/centroid_distance"]) != float(rows[1]["val/centroid_distance"])  # a curve


def test_feature_hook_with_several_captions(tmp_path):
    mapping = torch.arange(10).repeat_interleave(CAPS)  # per batch of <= 10 images: 2 captions each

    def features(module, outputs, batch):
        img, txt = batch
        x, y = module.embed(img, txt.repeat_interleave(CAPS, 0) + 0.1 * torch.randn(len(txt) * CAPS, 12))
        return x, y, mapping[: len(y)]

    torch.manual_seed(0)
    cb = GapMetricsCallback(["rmg", "uniformity_text"], features=features)
    model, trainer = fit(tmp_path, cb, epochs=1)
    assert set(cb.last) == {"val/rmg", "val/uniformity_text", "val/n_image", "val/n_text"}
    assert cb.last["val/n_image"] == N_VAL and cb.last["val/n_text"] == N_VAL * CAPS


def test_missing_features_are_one_gapkit_error():
    from gapkit.integrations.features import pick_features

    with pytest.raises(GapkitError, match="image_features"):
        pick_features({"loss": torch.tensor(1.0)})


class DumpPerRank(GapMetricsCallback):
    """Writes what each process logs at each validation end (the parent only sees rank 0's)."""

    def __init__(self, out_dir, **kw) -> None:
        super().__init__(**kw)
        self.out_dir = out_dir

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        if self.last:
            import json

            path = self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
            path.write_text(json.dumps(self.last))


@pytest.mark.timeout(240)
def test_two_process_ddp_logs_the_metrics_of_all_validation_rows(tmp_path):
    """Lightning DDP on CPU (gloo, 2 forked processes): each process sees half of the validation rows,
    the states are synced, and both log gapkit.measure of all rows."""
    import json

    cb = DumpPerRank(tmp_path, keys=["centroid_distance", "rmg", "paired_cosine_mean", "uniformity_image",
                                     "uniformity_cross", "logit_entropy"])
    model = TwoTowers()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp_fork", logger=False,
                        callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    train, val = loaders()  # 24 validation rows: 12 per process, no padding duplicates
    trainer.fit(model, train, val)
    logged = {r: json.loads((tmp_path / f"rank{r}_epoch1.json").read_text()) for r in (0, 1)}
    assert logged[0] == logged[1] and logged[0]["val/n_image"] == N_VAL
    model.eval()  # the parent holds rank 0's trained weights
    with torch.no_grad():
        x, y = model.embed(*data(N_VAL, 1))
    ref = measure(x.numpy(), y.numpy(), metrics=["geometry", "uniformity", "logit_entropy"])
    for key in ("centroid_distance", "rmg", "paired_cosine_mean", "uniformity_image", "uniformity_cross",
                "logit_entropy"):
        np.testing.assert_allclose(logged[0][f"val/{key}"], ref[key], rtol=1e-5, err_msg=key)
