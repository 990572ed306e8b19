"""gapkit inside other people's training loops: one module per host library.

    gapkit.integrations.torchmetrics     ModalityGap and single-metric `torchmetrics.Metric` classes
    gapkit.integrations.open_clip_train  `python -m gapkit.integrations.open_clip_train ... --gap-metrics`
    gapkit.integrations.lightning        GapMetricsCallback (Lightning)
    gapkit.integrations.hf               GapMetricsTrainerCallback (transformers Trainer)

Importing this package imports nothing heavy; each module imports its host library and says in one
line what to install when it is missing (see `require`).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import GapkitError

# host module -> the pip extra of gapkit that installs it
EXTRAS = {"torchmetrics": "torchmetrics", "lightning": "lightning", "transformers": "hf",
          "open_clip_train": "open_clip_train", "webdataset": "open_clip_train", "braceexpand": "open_clip_train"}


def require(module: str, feature: str) -> ModuleType:
    """Import `module` or raise one GapkitError line naming the package and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], module)
        raise GapkitError(f"{feature} needs the '{module.split('.')[0]}' package ({exc}); "
                          f"install it with: pip install 'gapkit[{extra}]'") from None
