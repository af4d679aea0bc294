"""Training clips/s of every Table 8 preset under each precision and memory format, side by side in one run.

Run: python -m bench.train_speed [--clips 16x48x48 [16x112x112]] [--presets mobilenet:1.0 ...] [--steps 3]
     [--threads 1] [--compile]

For each preset (10 classes) and clip it times training steps (forward, cross-entropy, backward, SGD
update on a batch already in memory: ``profiler.precision.train_step_seconds``) under fp32 eager,
fp32 channels-last-3d (with PyTorch's backward, and ``+dw``: with e3d's convolution backward,
``profiler.convgrad``), bf16 autocast (contiguous and channels-last; only on a CPU with native bf16) and,
with ``--compile``, ``torch.compile`` of fp32 eager. ``auto`` is the configuration that
``profiler.precision.choose`` (the rule of ``--precision auto``) picks from this run's timings of its training
candidates (bf16 channels-last is timed, not a candidate: it is not reproducible; nor is bf16 eager where its
gradients do not repeat on this CPU: ``trainable``); as the best of
several noisy timings its ratio is biased upwards, so fp32 eager and the pick are then timed once more, one
right after the other, and ``auto re-timed (x)`` (the unbiased gain of ``--precision auto``) is theirs. Achieved
GFLOP/s count 3 x forward multiply-adds x 2 FLOP per clip (``train_step_gflop``); the share is of this
CPU's measured 1024^2 matmul rate at the same precision (``matmul_gflops``). The machine may be shared:
compare the ratios in a row (measured one right after the other), not absolute clips/s across runs.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bench import load_average, machine_stamp, preset_arg
from e3d.cli import Parser, clip_arg, non_negative_int, positive_int, thread_count
from profiler.counting import spec_totals
from profiler.precision import (
    ExecConfig,
    candidates,
    choose,
    detect_cpu,
    matmul_gflops,
    train_step_gflop,
    train_step_seconds,
    trainable,
)
from search.stats import geomean
from space.paper import table8
from space.registry import paper_spec

CLASSES = 10


@dataclass
class Row:
    """One preset at one clip: seconds per step of each configuration."""

    model: str
    width: float
    clip: tuple[int, int, int]
    macs: float
    seconds: dict[str, float] = field(default_factory=dict)
    auto: str = ""
    retimed: float = 1.0
    """fp32 eager seconds over the pick's, both timed again after the choice (1.0 when the pick is fp32 eager)."""


def compiled_step_seconds(model: nn.Module, *, input_shape: tuple[int, ...], batch_size: int, warmup: int, repeats: int) -> float:
    """Median seconds of a training step of ``torch.compile(model)`` in fp32 eager layout (after compiling)."""
    m = torch.compile(model.train())
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch_size, *input_shape, generator=gen), torch.randint(0, CLASSES, (batch_size,), generator=gen)
    samples = []
    for i in range(warmup + 1 + repeats):
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i > warmup:
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def configurations(threads: int) -> list[ExecConfig]:
    """Every configuration timed, fp32 eager first: the inference candidates of ``auto`` (bf16 ones where the CPU
    has native bf16) and its training ones (fp32 channels-last+dw: e3d's convolution backward)."""
    found = {c.label: c for c in candidates(threads=threads) + candidates(threads=threads, training=True)}
    return sorted(found.values(), key=lambda c: (c.precision != "fp32", c.channels_last, c.depthwise_grad))


def measure(name: str, width: float, clip: tuple[int, int, int], args: argparse.Namespace) -> Row:
    """Every configuration of one preset, one after the other."""
    spec = paper_spec(name, width_mult=width, num_classes=CLASSES, sample_duration=clip[0], sample_size=clip[1])
    from space.modules import build

    torch.manual_seed(0)
    model = build(spec)
    row = Row(name, width, clip, spec_totals(spec).macs)
    kw = {"input_shape": spec.input_shape, "batch_size": args.batch_size, "num_classes": CLASSES, "warmup": args.warmup}
    for c in configurations(args.threads):
        row.seconds[c.label] = train_step_seconds(model, c, repeats=args.steps, **kw)
    shapes = {k: kw[k] for k in ("input_shape", "batch_size", "num_classes")}
    # auto's own rule on this run's timings: bf16 channels-last is timed, not a candidate; nor is a half
    # precision whose gradients do not repeat here (checked only if it is the pick)
    training = candidates(threads=args.threads, training=True)
    pick = choose([(c, row.seconds[c.label]) for c in training], admissible=lambda c: trainable(model, c, **shapes))
    row.auto = pick.label
    if pick.label != "fp32 eager":
        eager = training[0]  # fp32 eager
        again = [train_step_seconds(model, c, repeats=args.steps, **kw) for c in (eager, pick)]
        row.retimed = again[0] / again[1]
    if args.compile:
        torch.set_num_threads(args.threads)
        row.seconds["compile"] = compiled_step_seconds(
            model, input_shape=spec.input_shape, batch_size=args.batch_size, warmup=args.warmup, repeats=args.steps
        )
    return row


def render(rows: list[Row], labels: list[str], peaks: dict[str, float], batch: int) -> list[str]:
    """A markdown table: clips/s of fp32 eager, the others as ratios to it, auto's pick, GFLOP/s and % of peak."""
    head = ["preset", "clip", "macs M", "fp32 eager clips/s", *[f"{lab} (x)" for lab in labels[1:]]]
    head += ["auto", "auto (x)", "auto re-timed (x)"]
    head += ["GFLOP/s fp32 eager", "% fp32 peak", "GFLOP/s auto", "% peak"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        base = r.seconds["fp32 eager"]
        gflop = train_step_gflop(r.macs, batch)
        auto_s = r.seconds[r.auto]
        auto_peak = peaks[r.auto.split()[0]]
        cells = [f"{r.model} {r.width:g}x", "x".join(map(str, r.clip)), f"{r.macs / 1e6:.1f}", f"{batch / base:.1f}"]
        cells += [f"{base / r.seconds[lab]:.2f}" if lab in r.seconds else "-" for lab in labels[1:]]
        cells += [r.auto, f"{base / auto_s:.2f}", f"{r.retimed:.2f}", f"{gflop / base:.1f}", f"{100 * gflop / base / peaks['fp32']:.0f}%"]
        cells += [f"{gflop / auto_s:.1f}", f"{100 * gflop / auto_s / auto_peak:.0f}%"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", nargs="+", type=clip_arg, default=[(16, 48, 48)], metavar="TxHxW", help="default 16x48x48 (the proxy clip)")
    p.add_argument("--presets", nargs="+", type=preset_arg, metavar="NAME:WIDTH", help="default: every Table 8 preset")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--steps", type=positive_int, default=3, help="timed steps per configuration (median; default 3)")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1, as a --jobs trial)")
    p.add_argument("--compile", action="store_true", help="also torch.compile (fp32; compiling takes minutes per preset)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    presets = args.presets or [(r.model, r.width_mult) for r in table8()]
    cpu = detect_cpu()
    peaks = {"fp32": matmul_gflops("fp32", threads=args.threads)}
    if cpu.bf16:
        peaks["bf16"] = matmul_gflops("bf16", threads=args.threads)
    labels = [c.label for c in configurations(args.threads)] + (["compile"] if args.compile else [])
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# {machine_stamp()}")
    command = "python -m bench.train_speed " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {args.threads} thread(s), batch {args.batch_size}, median of {args.steps} steps after {args.warmup}; command: {command}")
    print("# matmul 1024^2: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()) + "\n")
    rows: list[Row] = []
    for clip in args.clips:
        for name, width in presets:
            try:
                rows.append(measure(name, width, clip, args))
            except Exception as e:  # a preset that cannot run at this clip is reported, the others go on
                print(f"# {name} {width:g}x at {'x'.join(map(str, clip))}: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
                continue
            print(f"# measured {name} {width:g}x {'x'.join(map(str, clip))}: auto {rows[-1].auto}", file=sys.stderr, flush=True)
    print("\n".join(render(rows, labels, peaks, args.batch_size)))
    for clip in args.clips:
        at = [r for r in rows if r.clip == clip]
        ratio = geomean([r.seconds["fp32 eager"] / r.seconds[r.auto] for r in at])
        retimed = geomean([r.retimed for r in at])
        best = {lab: geomean([r.seconds["fp32 eager"] / r.seconds[lab] for r in at if lab in r.seconds]) for lab in labels[1:]}
        others = ", ".join(f"{lab} {v:.2f}x" for lab, v in best.items())
        where = f"{len(at)} presets at {'x'.join(map(str, clip))}"
        print(f"\ngeometric mean over {where}: auto re-timed {retimed:.2f}x fp32 eager (best of the first timings {ratio:.2f}x); {others}")
    took = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    print(f"# took {took:.0f} min; load average at the end {load_average()}")


if __name__ == "__main__":
    main()
