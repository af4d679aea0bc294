"""Loader clips/s next to training clips/s on the proxy tasks: is the loader the bottleneck?

Run: python -m bench.loader_throughput [--tasks motion digits] [--models shufflenet:0.5 mobilenetv2:0.45] [--batches 30]

For each proxy task (16x48x48 clips, batch 16, the training split's random window and multi-scale crop)
it measures, one after the other on this machine:

- loader: clips/s of the DataLoader alone (no model), in this process (workers 0) and with 2 workers;
- train step: clips/s of forward + backward + SGD step on batches already in memory (no loader);
- fit loop: clips/s of the trainer's own epoch loop (search.train.fit, loading in this process), i.e. both.

The loader keeps up when its clips/s is well above the train step's and the fit loop is close to the
train step. Numbers depend on the load of the machine; the header line says where and when they were taken.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

import space
from profiler.latency import cpu_name
from search.data import collate, proxy_dataset
from search.train import TrainConfig, fit


def loader_rate(data: torch.utils.data.Dataset, batches: int, workers: int) -> float:
    """Clips/s of iterating ``batches`` batches of 16 (after one warm-up batch)."""
    loader = DataLoader(
        data, batch_size=16, shuffle=True, num_workers=workers, collate_fn=collate, generator=torch.Generator().manual_seed(0)
    )
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        b = next(it)
        n += len(b[1]) if b is not None else 0
    return n / (time.perf_counter() - t0)


def step_rate(model: torch.nn.Module, batches: int, classes: int) -> float:
    """Clips/s of SGD steps on a fixed in-memory batch of 16 (after two warm-up steps)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, dampening=0.9, weight_decay=1e-3)
    x, y = torch.randn(16, 3, 16, 48, 48), torch.randint(0, classes, (16,))
    model.train()
    for i in range(batches + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 16 * batches / (time.perf_counter() - t0)


def main() -> None:
    """Print one table per task."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["motion", "digits"])
    p.add_argument("--models", nargs="+", default=["shufflenet:0.5", "mobilenetv2:0.45"], metavar="NAME:WIDTH")
    p.add_argument("--batches", type=int, default=30, help="batches of 16 per measurement (default 30)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for the model (default: torch's)")
    p.add_argument("--cache-dir", default=None, help="proxy cache (default: a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="e3d-bench-")
    load = os.getloadavg()[0]
    where = f"{cpu_name()}, {os.cpu_count()} cores, load {load:.1f}, torch {torch.__version__}, {args.threads} threads"
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M} on {where}; batch 16, clips 16x48x48")
    for task in args.tasks:
        train = proxy_dataset(task, split="train", cache_dir=cache, progress=False)
        val = proxy_dataset(task, split="val", num_samples=16, cache_dir=cache, progress=False)
        print(f"\n{task}: {train!r}")
        print(f"  loader, in this process     {loader_rate(train, args.batches, 0):7.0f} clips/s")
        print(f"  loader, 2 worker processes  {loader_rate(train, args.batches, 2):7.0f} clips/s")
        part = Subset(train, range(16 * args.batches))
        part.num_classes = train.num_classes  # type: ignore[attr-defined]
        for item in args.models:
            name, width = item.split(":")
            model = space.create_model(name, width_mult=float(width), num_classes=train.num_classes, sample_size=48, sample_duration=16)
            steps = step_rate(model, args.batches, train.num_classes)
            r = fit(model, part, val, TrainConfig(epochs=1, batch_size=16, threads=args.threads), progress=False)
            loop = r.history[-1]["clips_per_s"]
            print(
                f"  {name} {width}x: train step {steps:6.0f} clips/s   fit loop with loader {loop:6.0f} clips/s ({100 * loop / steps:.0f}%)"
            )


if __name__ == "__main__":
    main()
