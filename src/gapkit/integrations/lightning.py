"""Lightning: `GapMetricsCallback` logs gapkit's gap metrics at the end of every validation epoch.

    from gapkit.integrations.lightning import GapMetricsCallback
    trainer = L.Trainer(callbacks=[GapMetricsCallback()])     # validation_step returns
    trainer.fit(model)                                         #   {"image_features": x, "text_features": y}

Features come from what `validation_step` returns (a dict with image_features/text_features or
image_embeds/text_embeds, optionally text_to_image, or an (image, text[, text_to_image]) tuple), or
from a hook `features(pl_module, outputs, batch) -> (image, text[, text_to_image])` when the step
returns something else. They feed a `gapkit.integrations.torchmetrics.ModalityGap` batch by batch
(on the features' device; in DDP every process feeds its own batches and torchmetrics syncs the
states), and at validation end `pl_module.log_dict` logs `val/<key>` (e.g. `val/centroid_distance`,
`val/rmg`) to every logger the Trainer has, per epoch. Only dataloader 0 is measured unless
`dataloader_idx` says otherwise.
"""
from __future__ import annotations

from typing import Any, Sequence

from . import require
from .features import FeatureHook, GapCollector, pick_features

_pl = require("lightning.pytorch", "gapkit.integrations.lightning")


class GapMetricsCallback(_pl.Callback):
    """Collect validation features and log the gap metrics at validation epoch end (module doc).

    keys: metric keys (default all of gapkit.integrations.torchmetrics.ALL_KEYS); prefix: "val/";
    features: optional hook; dataloader_idx: which validation dataloader to measure;
    further keyword arguments go to ModalityGap (reservoir, logit_scale, seed, dim).
    """

    def __init__(self, keys: Sequence[str] | None = None, *, prefix: str = "val/", features: FeatureHook | None = None,
                 dataloader_idx: int = 0, **metric_kw: Any) -> None:
        super().__init__()
        self.collector = GapCollector(keys, **metric_kw)
        self.prefix, self.features, self.dataloader_idx = prefix, features, dataloader_idx
        self.last: dict[str, float] = {}

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.collector.reset()

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if dataloader_idx != self.dataloader_idx or trainer.sanity_checking:
            return
        found = self.features(pl_module, outputs, batch) if self.features else outputs
        self.collector.update(*pick_features(found))

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        # ModalityGap.compute already syncs across processes: every rank logs the same global values
        self.last = self.collector.result(self.prefix)
        if self.last:
            pl_module.log_dict(self.last, sync_dist=False, rank_zero_only=False)
