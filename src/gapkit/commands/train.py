"""`gapkit train`: train a contrastive model and log the modality gap as it trains."""
from __future__ import annotations

import argparse
import contextlib
import os
import json
from pathlib import Path

HELP = "train CLIP / SharedCLIP / AlignCLIP from scratch with gap telemetry (resumable, DDP via torchrun)"
DESCRIPTION = """Train a contrastive image-text model and log the gap every eval interval.

  gapkit train --config tiny-vit --dataset fashion-mnist --out runs/clip
  gapkit train --config tiny-shared --loss imsep --set steps=2000 --set loss_kwargs.beta=0.5 --out runs/align
  gapkit train --out runs/clip --resume                  # continue after a crash, exactly
  torchrun --nproc_per_node 2 -m gapkit train --config tiny-vit --out runs/ddp

--config takes a model preset name (gapkit.models.available_models()), a model JSON (open_clip
schema), or a TrainConfig JSON; --set key=value overrides any TrainConfig field (JSON values,
dotted keys reach into dicts). See docs/training.md."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="NAME|PATH", help="model preset, model JSON, or TrainConfig JSON")
    p.add_argument("--dataset", help="dataset name or path (gapkit.data.load_dataset)")
    p.add_argument("--loss", help="loss name (gapkit.losses.create_loss)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a TrainConfig field")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")


def build_config(args: argparse.Namespace):
    """The TrainConfig named by --config plus --dataset / --loss / --set."""
    from ..atomic import read_json_object
    from ..train import TrainConfig

    base = TrainConfig()
    if args.config:
        path = Path(args.config)
        if path.suffix == ".json" and path.is_file():
            d = read_json_object(path, "TrainConfig")  # a TrainConfig or a model config (it has vision_cfg)
            base = TrainConfig(model=str(path)) if "vision_cfg" in d else TrainConfig.from_dict(d)
        else:
            from ..models import get_model_config

            get_model_config(args.config)  # fail now, with the list of presets, if unknown
            base = TrainConfig(model=args.config)
    sets = list(args.set)
    if args.dataset:
        sets.insert(0, f"dataset={json.dumps(args.dataset)}")
    if args.loss:
        sets.insert(0, f"loss={json.dumps(args.loss)}")
    return base.with_overrides(sets)


def run(args: argparse.Namespace) -> int:
    from ..errors import GapkitError
    from ..outputs import run_directory
    from ..train import TrainConfig, train

    out = Path(args.out)
    if args.resume:
        if args.config or args.dataset or args.loss or args.set:
            raise GapkitError("--resume continues the saved config of RUN_DIR; drop --config/--dataset/--loss/--set")
        config = TrainConfig.load(out / "config.json") if (out / "config.json").is_file() else None
        if config is None:
            raise GapkitError(f"{out}: no config.json to resume")
    else:
        config = build_config(args)
    if args.resume:  # a damaged checkpoint is reported now, before the data and model are built
        from ..train.checkpoint import read_checkpoint

        read_checkpoint(out)
    # torchrun starts one `gapkit train` per rank: rank 0 owns (creates, locks) the run folder
    rank0 = os.environ.get("RANK", "0") == "0"
    with run_directory(out, must_exist=args.resume) if rank0 else contextlib.nullcontext(out):
        record = train(config, out, resume=args.resume)
    final = record["results"]["final"]
    shown = {k: round(v, 4) for k, v in final.items() if isinstance(v, float)}
    print(json.dumps({"run_dir": str(out), "steps": record["results"]["steps"], "final": shown}))
    return 0
