"""``e3d convert-checkpoint``: turn one of the paper's published checkpoints into an e3d one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from e3d.cli import positive_float, positive_int

EPILOG = """\
example:
  e3d convert-checkpoint kinetics_shufflenetv2_1.0x_RGB_16_best.pth --model shufflenetv2 --width-mult 1.0 --out sv2.pth

The paper's files hold {"state_dict": ...} with the module names of its code (features.0.banch1.0.weight),
with or without DataParallel's "module." prefix. Every key must map onto the preset: a missing or
unexpected key, or a shape that does not fit, is an error naming it. Files are read with
torch.load(weights_only=True); a pickle that needs more than tensors and plain containers is refused.
The output loads with space.create_model(NAME, width_mult=W, num_classes=N, checkpoint=FILE)."""


def register(sub: Any) -> None:
    """Add the ``convert-checkpoint`` subcommand."""
    p = sub.add_parser(
        "convert-checkpoint",
        help="convert a paper checkpoint (.pth) to e3d's module names",
        description="Load one of the paper's published checkpoints into an e3d preset and save it with e3d's names.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="the paper's .pth checkpoint")
    p.add_argument("--model", required=True, metavar="NAME", help="preset: shufflenet, shufflenetv2, mobilenet, mobilenetv2 or squeezenet")
    p.add_argument("--width-mult", type=positive_float, default=1.0, metavar="W", help="width multiplier of the checkpoint (default 1.0)")
    p.add_argument("--num-classes", type=positive_int, metavar="N", help="classes (default: read off the checkpoint's classifier)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the e3d checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, check by loading into the preset, save."""
    import space
    from space.checkpoints import checkpoint_classes, checkpoint_state, read_checkpoint, save_converted
    from space.files import check_file

    check_file(args.out)
    obj = read_checkpoint(args.path)
    classes = args.num_classes or checkpoint_classes(obj) or 600
    spec = space.paper_spec(args.model, width_mult=args.width_mult, num_classes=classes)
    state = checkpoint_state(
        obj, spec, source=str(args.path), classes_option="--num-classes, or leave it out to read it off the checkpoint"
    )
    model = space.build(spec)
    model.load_state_dict(state, strict=True)
    save_converted(args.out, model.state_dict(), spec, model=args.model, source=args.path.name)
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    print(f"converted {len(state)} tensors ({params:,} parameters) of {spec.summary()}, {classes} classes -> {args.out}")
    return 0
