"""int8's accuracy change on a proxy task: train each model briefly, then float vs int8 top-1.

    python -m bench.int8_accuracy                       # the five models of bench/optimize.py, task motion
    python -m bench.int8_accuracy --epochs 5 --max-seconds 600

Each model is trained on the proxy task's train split (search.data / search.train, 16x48x48 clips),
quantized with profiler.quantize_int8 calibrated on train clips, and both are evaluated on the same
validation clips. Short training on a shared CPU gives far-from-converged models: read the change,
not the absolute top-1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import space
from bench import machine_stamp
from bench.optimize import GOAL_MODELS, _model
from e3d.cli import Parser, guarded, positive_float, positive_int
from profiler.quantize import quantize_int8
from search.data import PROXY_TASKS
from space.files import check_writable, write_text


def top1(model: torch.nn.Module, data: object, n: int, batch_size: int = 16) -> float:
    """Clip top-1 in percent over the first ``n`` items of ``data``."""
    correct = total = 0
    items = [data[i] for i in range(min(n, len(data)))]  # type: ignore[arg-type, index]
    items = [it for it in items if it is not None]
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            x = torch.stack([c[0] for c in chunk])
            y = torch.tensor([int(c[1]) for c in chunk])
            correct += int((model(x).argmax(1) == y).sum())
            total += len(chunk)
    return 100.0 * correct / total


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", type=_model, default=list(GOAL_MODELS), metavar="NAME[@W]")
    p.add_argument("--task", choices=PROXY_TASKS, default="motion")
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument(
        "--max-seconds", type=positive_float, default=300, help="training budget per model (stops after the epoch that exceeds it)"
    )
    p.add_argument("--lr", type=positive_float, default=0.1)
    p.add_argument("--calib-clips", type=positive_int, default=64)
    p.add_argument("--eval-clips", type=positive_int, default=300)
    p.add_argument("--train-samples", type=positive_int, default=None, help="training videos (default: the task's full split)")
    p.add_argument("--json", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    if args.json is not None and args.json.is_dir():
        p.error(f"argument --json: {args.json} is a folder, not a file")
    return guarded(lambda: measure(args))


def measure(args: argparse.Namespace) -> int:
    """Train, quantize and evaluate every model; print a row each (and write the JSON)."""
    from search.data import proxy_dataset
    from search.train import TrainConfig, fit

    if args.json is not None:
        check_writable(args.json.parent)
    clip = (16, 48, 48)
    train = proxy_dataset(args.task, split="train", clip=clip, num_samples=args.train_samples)
    val = proxy_dataset(args.task, split="val", clip=clip)
    rows = []
    for name, width in args.models:
        t0 = time.perf_counter()
        model = space.create_model(name, width_mult=width, num_classes=val.num_classes, sample_size=clip[1], sample_duration=clip[0])
        fit(model, train, val, TrainConfig(epochs=args.epochs, max_seconds=args.max_seconds, lr=args.lr), progress=False)
        model.eval()
        calib = [torch.stack([train[i][0] for i in range(j, min(j + 16, args.calib_clips))]) for j in range(0, args.calib_clips, 16)]
        q = quantize_int8(model, calib)
        f, i8 = top1(model, val, args.eval_clips), top1(q, val, args.eval_clips)
        rows.append({"model": name, "width_mult": width, "float_top1": f, "int8_top1": i8, "change": i8 - f})
        took = time.perf_counter() - t0
        print(f"{name:<14}{width:>5g}x  float {f:6.2f}%  int8 {i8:6.2f}%  change {i8 - f:+6.2f} points  ({took:.0f} s)", flush=True)
    stamp = machine_stamp(threads=torch.get_num_threads())
    setting = f"<= {args.epochs} epochs (<= {args.max_seconds:g} s) per model, lr {args.lr:g}, {args.eval_clips} val clips"
    print(f"{stamp}; task {args.task} 16x48x48, {setting}")
    if args.json:
        write_text(args.json, json.dumps({"date": stamp, "task": args.task, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
