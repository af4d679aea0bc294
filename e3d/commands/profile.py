"""``e3d profile``: multiply-adds, parameters, memory and measured latency of any 3D model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from e3d.cli import non_negative_int, positive_float, positive_int

EPILOG = """\
TARGET is one of:
  a preset name          e3d profile mobilenetv2 --width-mult 0.45
  a spec JSON file       e3d profile runs/search/best.json
  an import path         e3d profile mypkg.models:make_net     (a callable returning an nn.Module)
  a TorchScript file     e3d profile model.pt

Units: macs = multiply-adds of conv and linear layers per clip (e3d's main unit);
paper_mflops = the paper's Table 8 convention (macs plus BatchNorm, activations, pooling and conv
biases, in millions). Latency is the median per batch (default 8 clips, as in the paper)."""


def register(sub: Any) -> None:
    """Add the ``profile`` subcommand."""
    p = sub.add_parser(
        "profile",
        help="count multiply-adds and params, measure memory and latency of a model",
        description="Profile a 3D model: multiply-adds (macs), parameters, the paper's MFLOPs convention, "
        "activation memory, measured peak memory and latency.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help="preset name, spec JSON file, package.module:callable, or TorchScript file")
    p.add_argument("--paper-table", action="store_true", help="print Table 8 side by side with e3d's counts and clips/s measured here")
    p.add_argument("--width-mult", type=positive_float, metavar="W", help="width multiplier (presets only; default 1.0)")
    p.add_argument("--num-classes", type=positive_int, metavar="N", help="classes of the head (presets: 600)")
    p.add_argument("--frames", type=positive_int, metavar="T", help="clip length (default 16, or the spec's)")
    p.add_argument("--size", type=positive_int, metavar="S", help="clip height and width (default 112, or the spec's)")
    p.add_argument(
        "--batch-size", type=positive_int, default=8, metavar="B", help="clips per batch for latency and memory (default 8, the paper's)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for the latency measurement (default: torch's)")
    p.add_argument("--warmup", type=non_negative_int, metavar="N", help="untimed passes first (default 3; 1 for --paper-table)")
    p.add_argument("--repeats", type=positive_int, metavar="N", help="timed passes (default 10; 3 for --paper-table)")
    p.add_argument("--no-latency", action="store_true", help="count only: skip the memory and latency measurements")
    p.add_argument(
        "--optimize",
        action="store_true",
        help="time the optimized inference path (BN folded, channels-last-3d, frozen, oneDNN fused; CPU) instead of eager",
    )
    p.add_argument("--per-layer", action="store_true", help="also list every layer's macs, params and paper MFLOPs")
    p.add_argument(
        "--backend", choices=("e3d", "fvcore", "ptflops"), default="e3d", help="also count with fvcore or ptflops and show the differences"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (a list of rows with --paper-table)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Profile one target, or print the paper table."""
    from profiler.latency import resolve_device
    from profiler.targets import TargetError

    resolve_device(args.device)
    if args.paper_table:
        return _paper_table(args)
    if args.target is None:
        raise TargetError("give a TARGET (preset, spec file, package.module:callable or TorchScript file), or --paper-table")
    from profiler.report import profile, render
    from profiler.targets import resolve_target

    target = resolve_target(args.target, width_mult=args.width_mult, num_classes=args.num_classes, frames=args.frames, size=args.size)
    result = profile(
        target,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        latency=not args.no_latency,
        memory=not args.no_latency,
        backend=args.backend,
        warmup=3 if args.warmup is None else args.warmup,
        repeats=args.repeats or 10,
        optimize=args.optimize,
    )
    print(json.dumps(result.as_dict(), indent=2) if args.json else render(result, per_layer=args.per_layer))
    return 0


def _paper_table(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from profiler.paper_table import render_header, render_row, table_rows
    from space.paper import table8

    rows = table_rows(
        latency=not args.no_latency,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        warmup=1 if args.warmup is None else args.warmup,
        repeats=args.repeats or 3,
        optimized=args.device == "cpu",
    )
    bar = tqdm(rows, total=len(table8()), desc="Table 8", unit="model", file=sys.stderr, disable=args.no_latency or None, leave=False)
    if args.json:
        print(json.dumps([r.as_dict() for r in bar], indent=2))
        return 0
    print(render_header())
    for row in bar:
        bar.clear()
        print(render_row(row), flush=True)
    warmup = 1 if args.warmup is None else args.warmup
    print(
        "\nparams and paper_mflops: e3d's count of each preset vs Table 8; macs = conv + linear multiply-adds per clip; "
        f"clips/s here: batch {args.batch_size}, 16x112x112, {args.device}, median of {args.repeats or 3} after {warmup} warm-up. "
        "optimized: the same model on e3d's inference path (BN folded, channels-last-3d, frozen TorchScript, oneDNN Graph fusion), "
        "timed right after it."
    )
    return 0
