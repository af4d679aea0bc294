"""``e3d sweep``: train every family at the paper's widths on a proxy task, same budget and seeds."""

from __future__ import annotations

import argparse
from typing import Any

from e3d.cli import positive_int
from e3d.commands.search import (
    STUDY_PROXY_OPTIONS,
    add_proxy_args,
    add_storage_args,
    keep_study_defaults,
    proxy_config,
    refuse_on_resume,
    run_study,
)

EPILOG = """\
examples:
  e3d sweep --task motion --seeds 2                   every Table 8 preset of the five families, 2 seeds
  e3d sweep --task digits --seeds 2 --families shufflenet,mobilenetv2
  e3d sweep --task motion --families sevnet,mobilenetv2 --sgs   each preset with and without SGS
  e3d sweep --resume --out runs/sweep-motion          finish an interrupted sweep
  e3d analyze --csv runs/sweep-motion/trials.csv --out runs/sweep-motion/figures

Each preset is trained with the same proxy settings and each seed (the seed sets initialisation and
data order; the proxy data is the same for all). Latency is measured once per preset on this machine
(batch 8, 16x112x112; --eager-latency for the eager model). Rows go to trials.csv in the same
format as e3d search, so e3d analyze reads both."""


def register(sub: Any) -> None:
    """Add the ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep",
        help="train every family at the paper's widths on a proxy task (width-multiplier study)",
        description="The paper's width-multiplier study on a proxy task: every Table 8 preset of the chosen "
        "families (four widths each, SqueezeNet once), trained with the same budget and seeds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_argument_group("sweep")
    s.add_argument("--families", metavar="F,F", help="comma-separated families: the paper's five (default: all five) and sevnet")
    s.add_argument("--sgs", action="store_true", help="run each preset twice: as it is and with SGS after its first stage")
    s.add_argument("--seeds", type=positive_int, default=2, metavar="N", help="seeds 0..N-1 per preset (default 2)")
    s.add_argument("--no-latency", action="store_true", help="do not measure latency")
    s.add_argument("--eager-latency", action="store_true", help="time the eager model (default: the optimized path)")
    add_proxy_args(p, epochs=4, train_samples=1200, val_samples=300)
    add_storage_args(p, name="e3d-sweep")
    p.set_defaults(func=run)
    keep_study_defaults(p, ("families", "sgs", "seeds", "no_latency", "eager_latency", *STUDY_PROXY_OPTIONS))


def run(args: argparse.Namespace) -> int:
    """Create or join the sweep study and run its presets."""
    from search import study as st
    from search.budget import Budget
    from search.searchspace import parse_families

    refuse_on_resume(args)
    config = None
    if not args.resume:
        config = st.SearchConfig(
            budget=Budget(),
            families=parse_families(args.families),
            proxy=proxy_config(args),
            pruner="none",
            baselines=False,
            latency_mode="eager" if args.eager_latency else "optimized",
            kind="sweep",
            measure_latency=not args.no_latency,
            sgs=args.sgs,
        )
    seeds = tuple(range(args.seeds))

    def enqueue(study: Any, config: Any) -> str:
        n = st.enqueue_sweep(study, config.families, seeds, sgs=config.sgs)
        variants = " (with and without SGS)" if config.sgs else ""
        return f"sweep: {n} runs ({n // len(seeds)} presets{variants} x {len(seeds)} seeds)"

    return run_study(args, config, enqueue=enqueue, n_trials=0, settings={"seeds": args.seeds, "heartbeat": args.heartbeat})
