"""`gapkit simulate sphere`: watch the modality gap form and close on a sphere (Shi et al.).

    gapkit simulate sphere --loss clip --init polar --tau 0.1 --epochs 20000 --seed 0 --out run.json
    gapkit simulate sphere --loss slip --init nearby --angle 30 --epochs 5000 --out slip.json --figures figs/

Free points on S^(d-1) (two modalities, n pairs) are optimised by SGD; one JSON record holds the
parameters, the traces (centroid distance, paired and all-pairs distances, uniformity, loss every
few epochs), snapshots of 30 sampled pairs and the engine's steps per second.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GapkitError

from ._common import seed_arg  # noqa: E402

HELP = "simulate contrastive learning of free points on a sphere (the gap forming and closing)"
OUTPUT_ARGS = ("out", "figures")
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..sim.config import INITS, LOSSES, TRACE_SPACINGS, SphereConfig

    dflt = SphereConfig()
    p.add_argument("system", choices=["sphere"], help="what to simulate (only 'sphere' so far)")
    g = p.add_argument_group("model")
    g.add_argument("--loss", default=dflt.loss, help=f"one of {', '.join(LOSSES)} (default {dflt.loss}); "
                   "with --engine torch any name of gapkit.losses")
    g.add_argument("--init", default=dflt.init, help=f"one of {', '.join(INITS)} (default {dflt.init})")
    g.add_argument("--tau", type=float, default=dflt.tau, help=f"fixed temperature (default {dflt.tau})")
    g.add_argument("--n", type=int, default=dflt.n, help=f"pairs (default {dflt.n})")
    g.add_argument("--d", type=int, default=dflt.d, help=f"dimension of the ambient space (default {dflt.d}: S^2)")
    g.add_argument("--spread", type=float, default=dflt.spread, help=f"cap jitter (default {dflt.spread})")
    g.add_argument("--angle", type=float, default=dflt.angle,
                   help=f"degrees between the cap centres of --init nearby (default {dflt.angle:g})")
    g.add_argument("--siglip-bias", type=float, default=dflt.siglip_bias)
    g.add_argument("--slip-sigma", type=float, default=dflt.slip_sigma,
                   help=f"jitter of SLIP's two image views (default {dflt.slip_sigma})")
    g.add_argument("--ssl-weight", type=float, default=dflt.ssl_weight)
    g.add_argument("--unif-weight", type=float, default=dflt.unif_weight)
    o = p.add_argument_group("optimisation")
    o.add_argument("--lr", type=float, default=dflt.lr, help=f"SGD learning rate (default {dflt.lr})")
    o.add_argument("--batch", type=int, default=dflt.batch, help=f"batch size (default {dflt.batch})")
    o.add_argument("--epochs", type=int, default=dflt.epochs,
                   help=f"epochs of n // batch steps each (default {dflt.epochs})")
    o.add_argument("--seed", type=seed_arg, default=dflt.seed)
    o.add_argument("--no-reproject", action="store_true",
                   help="ablation: rows are free Euclidean parameters (the loss sees them normalised) "
                        "instead of being put back on the sphere after every step")
    o.add_argument("--engine", choices=["numba", "torch"], default="numba",
                   help="compiled engine (default) or the slow generic autograd path")
    t = p.add_argument_group("output")
    t.add_argument("--traces", type=int, default=dflt.traces, help="number of trace points (default 200)")
    t.add_argument("--trace-spacing", choices=TRACE_SPACINGS, default=dflt.trace_spacing)
    t.add_argument("--trace-every", type=int, default=None, help="trace every K epochs (overrides --traces)")
    t.add_argument("--snapshots", default=None, metavar="E1,E2,...",
                   help="epochs of the position snapshots (default: 6 log-spaced)")
    t.add_argument("--out", required=True, metavar="FILE", help="JSON record to write (atomically)")
    t.add_argument("--figures", metavar="DIR", help="also write snapshot and distance PNGs here")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _config(args: argparse.Namespace):
    from ..sim.config import SphereConfig

    snaps = None
    if args.snapshots:
        try:
            snaps = tuple(int(x) for x in args.snapshots.split(","))
        except ValueError:
            raise GapkitError(f"--snapshots expects comma-separated epochs, got '{args.snapshots}'") from None
    # The torch engine takes any registry loss, which SphereConfig (the compiled engine's list)
    # would reject: the config then carries a placeholder and the real name goes to the engine.
    return SphereConfig(
        loss=args.loss if args.engine == "numba" else "clip", init=args.init, tau=args.tau, n=args.n,
        d=args.d, lr=args.lr, batch=args.batch, epochs=args.epochs, seed=args.seed, spread=args.spread,
        angle=args.angle, traces=args.traces, trace_spacing=args.trace_spacing, trace_every=args.trace_every,
        snapshots=snaps, siglip_bias=args.siglip_bias, slip_sigma=args.slip_sigma,
        ssl_weight=args.ssl_weight, unif_weight=args.unif_weight, reproject=not args.no_reproject)


def run(args: argparse.Namespace) -> int:
    from ..records import new_record, save_record

    config = _config(args)
    if args.figures:  # before any work: never a user's own non-empty folder
        from ..atomic import check_replaceable_dir, check_output_file

        check_replaceable_dir(args.figures)
        check_output_file(args.out)
    if args.engine == "torch":
        from ..sim.torch_engine import simulate_torch

        result = simulate_torch(config, loss=args.loss, progress=not args.no_progress)
    else:
        from ..sim import simulate

        result = simulate(config, progress=not args.no_progress)
    params = config.to_dict()
    params.update(loss=args.loss, engine=args.engine)
    record = new_record("simulate", params=params, results=result.results_dict(), seed=config.seed,
                        inputs={"system": args.system})
    out = save_record(record, args.out)
    print(f"record -> {out}  ({result.steps_per_second:,.0f} steps/s; final centroid distance "
          f"{result.final('centroid_distance'):.3f})")
    if args.figures:
        from ..report.figures.sphere import sphere_run_figures

        title = f"{args.loss}, {config.init} init, tau = {config.tau:g}"
        from ..outputs import prepare_run_directory

        figures, _ = prepare_run_directory(args.figures)
        for path in sphere_run_figures(record["results"], figures, prefix=Path(args.out).stem,
                                       title=title):
            print(f"figure -> {path}")
    return 0
