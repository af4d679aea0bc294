"""``e3d models``: list the presets, or print one preset's spec."""

from __future__ import annotations

import argparse
from typing import Any

from e3d.cli import positive_float


def register(sub: Any) -> None:
    """Add the ``models`` subcommand."""
    p = sub.add_parser(
        "models",
        help="list the paper's presets, or print one preset's spec",
        description="Without NAME: every registered preset with its parameter count at width 1.0 "
        "(600 classes, 16x112x112) and the widths the paper used. With NAME: that preset's spec.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="a preset name (see the list)")
    p.add_argument(
        "--width-mult", type=positive_float, metavar="W", help="with NAME: global width multiplier, any number > 0 (default 1.0)"
    )
    p.add_argument("--num-classes", type=int, metavar="N", help="with NAME: classes of the head (default 600, Kinetics-600)")
    p.add_argument("--json", action="store_true", help="with NAME: print the spec as JSON (a file e3d train/profile accept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """List presets or show one."""
    import space
    from profiler import count_spec

    if args.name is None:
        options = (("--width-mult", args.width_mult), ("--num-classes", args.num_classes), ("--json", args.json or None))
        given = [o for o, v in options if v is not None]
        if given:
            raise space.E3DError(f"{', '.join(given)}: for one preset (e3d models NAME {given[0]} ...); the list shows all at 1.0x")
        rows = []
        for name in space.list_models():
            info = space.model_info(name)
            spec = space.paper_spec(name)
            params = count_spec(spec).params
            rows.append((name, f"{params / 1e6:.2f}M", ", ".join(f"{w:g}x" for w in info.paper_widths), info.description))
        header = ("model", "params@1.0x", "paper widths", "description")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
        for r in [header, *rows]:
            print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
        return 0
    spec = space.paper_spec(args.name, width_mult=args.width_mult or 1.0, num_classes=600 if args.num_classes is None else args.num_classes)
    if args.json:
        print(spec.to_json())
        return 0
    counts = count_spec(spec)
    print(spec.summary())
    print(
        f"params {counts.params:,}   macs {counts.macs / 1e6:.2f} M (multiply-adds per clip)   paper_mflops {counts.paper_flops / 1e6:.2f}"
    )
    for i, s in enumerate(spec.stages):
        print(f"  stage {i}: {s.block:<18} channels {s.channels:<5} repeats {s.repeats:<3} stride {s.stride}")
    return 0
