"""Does the loader keep up with the fastest training configuration? Loader clips/s next to training clips/s.

Run: python -m bench.loader_throughput [--sources motion digits DIR ...] [--models shufflenet:0.5 mobilenetv2:0.45]
     [--batches 30] [--threads 1]

A source is a proxy task (16x48x48 clips) or a folder of videos (``class/video`` files, 16x112x112 clips,
the paper's input), each read as the trainer reads its training split at the default settings: the
random window and multi-scale crop, batch 16, decoding in the training process (``num_workers`` 0, the
trainer's default). For each source it measures, one after the other on this machine:

- loader: clips/s of the DataLoader alone (no model), in the training process and with 2 worker processes.
  A folder of videos is read through the frame cache (the default, :mod:`search.data.framecache`) in a
  fresh cache folder: its *first pass* (every video once, each decoded and stored) is timed on its own,
  then the cached reading; and, for comparison, reading every clip from its file (``--no-frame-cache``);
- train step: clips/s of forward + backward + SGD step on a batch already in memory, in fp32 eager and
  in the fastest configuration ``--precision auto`` picks here (its calibration, :func:`search.train.resolve_exec`);
- fit loop: clips/s of the trainer's own epoch loop under ``auto`` (:func:`search.train.fit`), loading
  in the training process: both together.

The target (issue 15): the loader in the training process, at the default settings, delivers at least
:data:`TARGET` x the clips/s that the fastest configuration consumes. Numbers depend on the load of the
machine; the header line says where and when they were taken.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

import space
from bench import load_average, machine_stamp, preset_arg
from e3d.cli import Parser, guarded, positive_int, thread_count
from profiler.precision import ExecConfig, train_step_seconds
from search.data import PROXY_TASKS, collate, open_dataset
from search.train import TrainConfig, fit, resolve_exec

TARGET = 2.0
"""Loader clips/s over the fastest configuration's training clips/s that the loader must reach."""

BATCH = 16


@dataclass(frozen=True)
class Row:
    """One model trained from one source."""

    source: str
    clip: tuple[int, int, int]
    loader: float
    """Clips/s of the loader in the training process."""
    loader_workers: float
    """Clips/s of the loader with 2 worker processes."""
    model: str
    fastest: str
    """The configuration ``auto`` chose, such as ``fp32 channels-last+dw``."""
    step_fp32: float
    step_fastest: float
    fit_loop: float
    first_pass: float | None = None
    """Folders of videos: clips/s of the first pass, which fills the frame cache."""
    direct: float | None = None
    """Folders of videos: clips/s of the loader decoding every clip from its file (no frame cache)."""

    @property
    def ratio(self) -> float:
        """Loader (training process) clips/s over the fastest configuration's step clips/s."""
        return self.loader / self.step_fastest

    @property
    def keeps_up(self) -> bool:
        """Whether the loader reaches :data:`TARGET` x what training consumes."""
        return self.ratio >= TARGET


def _repeated(data: Dataset[Any], clips: int) -> Subset[Any]:
    """``clips`` clips of ``data``, its videos repeated as often as needed (a small folder holds fewer
    than one measurement reads, and a new epoch would start the loader's workers again)."""
    n = len(data)  # type: ignore[arg-type]
    return Subset(data, [i % n for i in range(clips)])


def loader_rate(data: Dataset[Any], batches: int, workers: int) -> float:
    """Clips/s of reading ``batches`` batches of :data:`BATCH` (after one warm-up batch)."""
    loader = DataLoader(
        _repeated(data, BATCH * (batches + 1)),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    it = iter(loader)
    next(it)
    return _clips_per_s(it)


def first_pass_rate(data: Dataset[Any]) -> float:
    """Clips/s of reading every video of ``data`` once, in batches of :data:`BATCH`, everything timed."""
    return _clips_per_s(iter(DataLoader(data, batch_size=BATCH, shuffle=False, collate_fn=collate)))


def _clips_per_s(batches: Iterator[tuple[Any, Any] | None]) -> float:
    """Clips/s of reading the rest of ``batches`` (collated by :func:`search.data.collate`)."""
    n, t0 = 0, time.perf_counter()
    for b in batches:
        n += len(b[1]) if b is not None else 0
    return n / (time.perf_counter() - t0)


def step_rate(model: torch.nn.Module, config: ExecConfig, clip: tuple[int, int, int], classes: int, batches: int) -> float:
    """Clips/s of training steps of ``model`` under ``config`` on an in-memory batch of :data:`BATCH`."""
    seconds = train_step_seconds(model, config, input_shape=(3, *clip), batch_size=BATCH, num_classes=classes, repeats=batches)
    return BATCH / seconds


def measure_source(source: str, models: Sequence[tuple[str, float]], *, batches: int, threads: int, cache_dir: str) -> list[Row]:
    """One :class:`Row` per model for ``source`` (a proxy task name or a folder of videos)."""
    train = open_dataset(source, split="train", cache_dir=cache_dir, progress=False)
    clip = (train.sampling.frames, *train.transform.size)
    videos = source not in PROXY_TASKS
    first = first_pass_rate(train) if videos else None  # before anything else reads: the cache is empty
    loader, workers = loader_rate(train, batches, 0), loader_rate(train, batches, 2)
    direct = None
    if videos:
        uncached = open_dataset(source, split="train", frame_cache=False, progress=False)
        direct = loader_rate(uncached, batches, 0)
    part = _repeated(train, BATCH * batches)
    part.num_classes = train.num_classes  # type: ignore[attr-defined]
    val = Subset(train, range(min(BATCH, len(train))))  # small: the fit loop's clips/s is its training's
    config = TrainConfig(epochs=1, batch_size=BATCH, threads=threads, precision="auto")
    classes = train.num_classes
    rows = []
    for name, width in models:
        model = space.create_model(name, width_mult=width, num_classes=classes, sample_size=clip[1], sample_duration=clip[0])
        fastest = resolve_exec(model, train, config)
        fp32 = step_rate(model, ExecConfig(threads=threads), clip, classes, batches)
        best = step_rate(model, fastest, clip, classes, batches)
        loop = fit(model, part, val, config, progress=False).history[-1]["clips_per_s"]
        rows.append(Row(_name(source), clip, loader, workers, f"{name} {width:g}x", fastest.label, fp32, best, loop, first, direct))
    return rows


def _name(source: str) -> str:
    return source if source in PROXY_TASKS else f"folder {Path(source).name}"


def table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table, with the ratio to the target."""
    lines = [
        "| source | clip | loader clips/s | loader, 2 workers | model | fastest config "
        "| step fp32 eager | step fastest | fit loop | loader / fastest step | first pass (fills the cache) | no frame cache |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        clip = "x".join(map(str, r.clip))
        verdict = "keeps up" if r.keeps_up else f"below {TARGET:g}x"
        lines.append(
            f"| {r.source} | {clip} | {r.loader:.1f} | {r.loader_workers:.1f} | {r.model} | {r.fastest} | {r.step_fp32:.1f} "
            f"| {r.step_fastest:.1f} | {r.fit_loop:.1f} | {r.ratio:.2f}x ({verdict}) | {_cell(r.first_pass)} | {_cell(r.direct)} |"
        )
    return "\n".join(lines)


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table for every source and the verdict; 2 on bad input (refused before anything is timed)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", default=["motion", "digits"], help="proxy task names or folders of videos")
    p.add_argument("--models", nargs="+", type=preset_arg, default=[("shufflenet", 0.5), ("mobilenetv2", 0.45)], metavar="NAME:WIDTH")
    p.add_argument("--batches", type=positive_int, default=30, help="batches of 16 per measurement (default 30)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads for the model (default 1: a --jobs trial's)")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="proxy and frame cache (default: a new temporary folder, so that the first pass starts from an empty cache)",
    )
    args = p.parse_args(argv)
    for source in args.sources:
        if source not in PROXY_TASKS and not Path(source).is_dir():
            p.error(f"argument --sources: {source!r} is neither a proxy task ({', '.join(PROXY_TASKS)}) nor a folder of videos")
    return guarded(lambda: measure(args))


def measure(args: argparse.Namespace) -> int:
    """Measure every source and print the table and the verdict."""
    cache = args.cache_dir or tempfile.mkdtemp(prefix="e3d-bench-")
    started = time.perf_counter()
    print(f"# {machine_stamp(threads=args.threads)}; batch {BATCH}")
    rows: list[Row] = []
    for source in args.sources:
        rows += measure_source(source, args.models, batches=args.batches, threads=args.threads, cache_dir=cache)
    print(table(rows))
    kept = sum(r.keeps_up for r in rows)
    print(f"\nthe loader keeps up ({TARGET:g}x the fastest step) in {kept} of {len(rows)} rows")
    print(f"# took {(time.perf_counter() - started) / 60:.1f} min; load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
