"""How far a few paper presets get on the proxy tasks in a short training run (the search's regime).

Run: python -m bench.train_proxy [--tasks motion digits] [--models shufflenet:0.5 mobilenetv2:0.45 ...]
     [--epochs 3] [--train-samples 800] [--lr 0.05] [--seeds 0] [--threads 1]

Each model is trained from scratch with search.train.fit (SGD, momentum 0.9, dampening 0.9, weight decay
1e-3, step schedule) on the proxy task's training split (16x48x48 clips, batch 16) and scored on the
validation split (300 videos, centre window and crop). Chance is 10% on both tasks. The header line says
where and when the numbers were taken; they move by several points between seeds.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import space
from bench import machine_stamp, preset_arg
from e3d.cli import Parser, guarded, non_negative_int, positive_float, positive_int, thread_count
from search.data import PROXY_SCALES, PROXY_TASKS, proxy_dataset
from search.train import TrainConfig, fit


def main(argv: list[str] | None = None) -> int:
    """Print one row per task, model and seed; 2 on bad input (refused before anything trains)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=PROXY_TASKS, default=["motion", "digits"])
    p.add_argument(
        "--models", nargs="+", type=preset_arg, metavar="NAME:WIDTH",
        default=[("shufflenet", 0.5), ("mobilenetv2", 0.45), ("shufflenetv2", 1.0), ("mobilenet", 1.0)],
    )  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--train-samples", type=positive_int, default=800)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0])
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1: faster than 2 on a busy 2-core machine)")
    p.add_argument("--scales", type=positive_float, nargs="+", help="training crop scales (default: the proxy tasks' 1 and 2^-1/4)")
    p.add_argument("--frame-step", type=positive_int, help="frame step (default: the task's, 2 for motion and 1 for digits)")
    p.add_argument("--cache-dir", default=None, help="proxy cache (default: a temporary folder)")
    args = p.parse_args(argv)
    return guarded(lambda: measure(args))


def measure(args: argparse.Namespace) -> int:
    """Train every task, model and seed and print its row."""
    cache = args.cache_dir or tempfile.mkdtemp(prefix="e3d-bench-")
    print(f"# {machine_stamp(threads=args.threads)}")
    print(f"# {args.epochs} epochs of {args.train_samples} clips, batch 16, lr {args.lr:g}, 16x48x48; val: 300 videos")
    print(f"# crop scales {args.scales or 'default'}, frame step {args.frame_step or 'default'}\n")
    print(f"{'task':<7} {'model':<18} {'seed':>4} {'step':>4} {'val top1 per epoch':<24} {'train top1':>10} {'clips/s':>8} {'s':>5}")
    for task in args.tasks:
        kw = {"cache_dir": cache, "progress": False, "frame_step": args.frame_step}
        train = proxy_dataset(task, split="train", num_samples=args.train_samples, scales=tuple(args.scales or PROXY_SCALES), **kw)
        val = proxy_dataset(task, split="val", **kw)
        for name, width in args.models:
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = space.create_model(name, width_mult=width, num_classes=train.num_classes, sample_size=48, sample_duration=16)
                config = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, seed=seed, threads=args.threads)
                t0 = time.perf_counter()
                r = fit(model, train, val, config, progress=False)
                curve = " ".join(f"{h['val_top1']:5.1f}" for h in r.history)
                h = r.history[-1]
                print(
                    f"{task:<7} {f'{name} {width:g}x':<18} {seed:>4} {train.sampling.step:>4} {curve:<24} {h['train_top1']:>10.1f} "
                    f"{h['clips_per_s']:>8.0f} {time.perf_counter() - t0:>5.0f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
