"""HF transformers: `GapMetricsTrainerCallback` adds gapkit's gap metrics to every `Trainer` evaluation.

    from gapkit.integrations.hf import GapMetricsTrainerCallback
    trainer = Trainer(model=clip_model, args=args, train_dataset=train, eval_dataset=val)
    GapMetricsTrainerCallback.attach(trainer)          # then trainer.train() / trainer.evaluate()

How: the Trainer's callbacks never see model outputs, so the callback puts a forward hook on the
model that keeps the features of the latest eval-mode forward (CLIPModel / SiglipModel:
`image_embeds`, `text_embeds`; or a `features(output, inputs)` hook), and `on_prediction_step`,
which the Trainer calls after each evaluation batch, feeds them into a
`gapkit.integrations.torchmetrics.ModalityGap`. Forwards outside the evaluation loop (the user's
own inference, training steps) are never counted. No extra forward pass is run. At `on_evaluate`
the metrics are computed (synced across processes) and
  - logged with `trainer.log` as `eval_<key>` (e.g. `eval_centroid_distance`, `eval_rmg`): every
    reporting integration (TensorBoard, W&B, ...) and `trainer.state.log_history` get them, at the
    step of that evaluation;
  - added to the metrics dict that `trainer.evaluate()` returns, so `metric_for_best_model=
    "eval_rmg"` can pick checkpoints by the gap.
Several processes (torchrun / accelerate launch, DDP): each process collects the rows of its own
share of the eval set and the metrics are synced at `on_evaluate`. To give every process a batch
at every step, accelerate pads the last global batch with rows from the start of the eval set; the
Trainer's `gather_for_metrics` drops them, keeping the first `remainder` (= len(eval set) mod the
global batch) rows of the gathered last step, which is process 0's rows, then process 1's, ...
The callback drops the same rows: at the last step process r keeps its first
clip(remainder - r * B, 0, B) of its B rows, so every eval row is counted exactly once.
Added with `callbacks=[GapMetricsTrainerCallback()]` instead of `attach`, the callback cannot reach
`trainer.log` (Trainer callbacks are not given the trainer): the metrics then go to the returned dict
and `state.log_history` only.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from . import require
from .features import GapCollector, pick_features

_tf = require("transformers", "gapkit.integrations.hf")


class GapMetricsTrainerCallback(_tf.TrainerCallback):
    """Gap metrics of the eval features at every evaluation (module doc).

    keys: metric keys (default all of gapkit.integrations.torchmetrics.ALL_KEYS);
    prefix: "eval_" (the Trainer's own eval namespace);
    features: optional hook (model output, forward kwargs) -> (image, text[, text_to_image]);
    further keyword arguments go to ModalityGap (reservoir, logit_scale, seed, dim).
    """

    def __init__(self, keys: Sequence[str] | None = None, *, prefix: str = "eval_",
                 features: Callable[[Any, dict], Any] | None = None, **metric_kw: Any) -> None:
        self.collector = GapCollector(keys, **metric_kw)
        self.prefix, self.features = prefix, features
        self.trainer: Any = None
        self._hooked: Any = None
        self._handle: Any = None
        self._pending: tuple | None = None  # features of the latest eval-mode forward
        self.last: dict[str, float] = {}

    @classmethod
    def attach(cls, trainer: Any, *args: Any, **kwargs: Any) -> "GapMetricsTrainerCallback":
        """Create the callback, add it to `trainer` and hook its model; returns the callback."""
        cb = cls(*args, **kwargs)
        cb.trainer = trainer
        trainer.add_callback(cb)
        cb._hook(trainer.model)
        return cb

    # -- the forward hook ---------------------------------------------------------------------
    def _hook(self, model: Any) -> None:
        if model is None or model is self._hooked:
            return
        if self._handle is not None:
            self._handle.remove()
        self._handle = model.register_forward_hook(self._collect, with_kwargs=True)
        self._hooked = model

    def _collect(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        if module.training:  # training steps are not evaluation features
            return
        found = self.features(output, kwargs) if self.features else output
        self._pending = pick_features(found)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._pending is not None:  # the forward of the evaluation batch that just ended
            self.collector.update(*_without_padding(*self._pending))
            self._pending = None

    def on_predict(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.collector.reset()  # trainer.predict() steps are not an evaluation

    def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self._hook(model)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self._hook(model)  # the Trainer may have replaced the model (e.g. model_init)
        self.collector.reset()

    # -- evaluation end -----------------------------------------------------------------------
    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kw: Any) -> None:
        self._pending = None
        gap = self.collector.result(self.prefix)
        if not gap:
            return
        self.last = gap
        if metrics is not None:
            metrics.update(gap)
        if self.trainer is not None:
            self.trainer.log(dict(gap))
        else:
            state.log_history.append({**gap, "step": state.global_step})


def _without_padding(image: Any, text: Any, text_to_image: Any) -> tuple[Any, Any, Any]:
    """The batch minus accelerate's padding rows at the eval loop's last step (module doc)."""
    from accelerate.state import GradientState, PartialState

    gs = GradientState()
    if not gs.end_of_dataloader or gs.remainder <= 0:
        return image, text, text_to_image
    n = image.shape[0]
    keep = max(0, min(n, gs.remainder - PartialState().process_index * n))
    if keep == n:
        return image, text, text_to_image
    if text_to_image is None:  # 1:1 rows
        return image[:keep], text[:keep], None
    sel = text_to_image < keep  # the captions of the kept images
    return image[:keep], text[sel], text_to_image[sel]
