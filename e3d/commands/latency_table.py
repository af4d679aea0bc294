"""``e3d latency-table``: measure a per-block latency table on this device, for the predictor."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

from e3d.cli import MAX_THREADS, clip_arg, device_arg, int_in, non_negative_int, positive_int, thread_count

EPILOG = """\
examples:
  e3d latency-table --out runs/table-cpu.json                        this CPU, 16x112x112, batch 8
  e3d latency-table --device cuda:0 --clip 16x112x112 --batch-size 8 --out table-gpu.json
  e3d search --budget-latency-ms 300 --latency-table runs/table-cpu.json --trials 20
  e3d profile mobilenetv2 --width-mult 0.45 --latency-table runs/table-cpu.json
  e3d latency-table --recalibrate runs/table-cpu.json                the same table, at the device's speed now

The table times every distinct block (the stem, each block of a stage at its channels, stride and
other arguments and at its input size, the head) of the Table 8 presets and of --samples random
candidates, each as one module on every path; with more than --max-entries of them, a designed sample
of the rest (each class's extremes, then points spread over its cost). By default that is all of them
(3,619 at 16x112x112 with the calibration networks': 7-14 minutes on this project's 2-core CPUs, about 4 GiB of
memory at peak, in a child process that a fresh one replaces after about 500 blocks). Other blocks
are priced by a per-class regression within the measured ranges, never outside them. Whole networks of
every family calibrate the per-network overhead; at the end, 10 of them are timed a second time, and how
far those timings moved from the first is printed and stored: this device's own variation, which no
prediction from the table can beat. Run it again with the same options to resume an interrupted build.

--recalibrate times a table's calibration networks again (well under a minute on the machine that built
it) and keeps their new times, so that its predictions follow the device's speed of that moment: for a
device whose speed changed for good (a power mode, a driver, thermal limits). It cannot follow speed that
moves from minute to minute. A study screened with the table before refuses it after (its fingerprint
changed)."""


MAX_SAMPLES = 100_000
"""The most ``--samples``: collecting their blocks alone takes a few minutes (about 1.5 ms each)."""


def samples(text: str) -> int:
    """argparse type of ``--samples``: an integer from 0 to :data:`MAX_SAMPLES`."""
    return int_in(text, 0, MAX_SAMPLES, "a non-negative integer")


def register(sub: Any) -> None:
    """Add the ``latency-table`` subcommand."""
    p = sub.add_parser(
        "latency-table",
        help="measure a per-block latency table on this device (for predicted latency in profile and search)",
        description="Measure the latency of every distinct block the search space and the presets produce at a clip, "
        "on this device, into a table that predicts any network's latency without running it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="FILE", help="the table (JSON); resumed when it exists")
    target.add_argument(
        "--recalibrate",
        type=Path,
        metavar="FILE",
        help="time the calibration networks of the table FILE again and keep their new times (see below); the table's settings apply",
    )
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="default fp32")
    p.add_argument("--clip", type=clip_arg, default=(16, 112, 112), metavar="TxHxW", help="clip size (default 16x112x112)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="clips per batch (default 8, what the search bounds)")
    p.add_argument("--paths", metavar="P,P", help="eager and/or optimized (default both on CPU fp32, eager otherwise)")
    p.add_argument(
        "--threads", type=thread_count, metavar="N", help=f"torch CPU threads while timing, at most {MAX_THREADS} (default: torch's)"
    )
    p.add_argument("--families", metavar="F,F", help="families of the space (default: the paper's five)")
    p.add_argument(
        "--samples",
        type=samples,
        default=300,
        metavar="N",
        help=f"random candidates to collect blocks from (default 300: enough for entries of every kind of block; at most {MAX_SAMPLES:,})",
    )
    p.add_argument(
        "--max-entries",
        type=positive_int,
        default=4000,
        metavar="N",
        help="blocks to time at most, besides Table 8's and each class's extremes (default 4000: "
        "every block of the default space and calibration networks at the default clip, 3,619; fewer take less time and price "
        "more blocks by regression)",
    )
    p.add_argument(
        "--calibration",
        type=non_negative_int,
        default=40,
        metavar="N",
        help="whole networks timed to fit the overhead, taken in turn from every family (default 40: 8 per family)",
    )
    p.add_argument("--warmup", type=non_negative_int, default=2, metavar="N", help="untimed runs per entry (default 2)")
    p.add_argument("--repeats", type=positive_int, default=5, metavar="N", help="timed runs per entry; the median is kept (default 5)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random candidates (calibration uses seed + 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def plan(args: argparse.Namespace) -> tuple[list[Any], list[Any], int]:
    """(blocks to time, calibration networks, distinct blocks collected) for these options."""
    from profiler.latency_table import collect_blocks, design_sample
    from search.latency import at_clip, calibration_specs, space_specs, table8_specs
    from search.searchspace import paper_presets, parse_families, preset_params

    families = parse_families(args.families)
    calibration = calibration_specs(families, args.clip, n=args.calibration, seed=args.seed + 1)
    blocks = collect_blocks([*space_specs(families, args.clip, samples=args.samples, seed=args.seed), *calibration])
    presets = [*table8_specs(args.clip), *(at_clip(preset_params(f, w), args.clip) for f, w in paper_presets(families))]
    # The calibration networks' blocks are sampled like any others: the overhead is fitted on networks priced
    # as a prediction prices them (entries and regressions), so that it corrects the regressions' bias too.
    keep = collect_blocks(s for s in presets if s is not None)
    return design_sample(blocks, args.max_entries, keep=keep), calibration, len(blocks)


def _overheads(table: Any, mode: str) -> str:
    """``all: 0.949 x sum (12 networks); mobilenet: ...`` for ``mode``; a family with too few calibration networks
    of its own is priced with all of them, and says so."""
    from profiler.latency_table import MIN_CALIBRATION

    shared = table.overhead(mode)
    parts = [f"all: {shared.scale:.3f} x sum ({shared.networks} networks)"]
    for family in sorted({s.family for s, _ in table.networks}):
        own = table.overhead(mode, family)
        if own is shared:
            n = sum(s.family == family for s, _ in table.networks)
            parts.append(f"{family}: as all ({n} of its own, fewer than {MIN_CALIBRATION})")
        else:
            parts.append(f"{family}: {own.scale:.3f} x sum ({own.networks} networks)")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Plan, then measure (resuming), then summarise; or recalibrate a table."""
    from profiler import latency_table as lt
    from profiler.latency_table import LatencyTableError, TableSettings, build_table
    from profiler.measuring import MeasuringProcess
    from profiler.memory import lifetime_peaks_gib
    from profiler.precision import check_supported
    from space.files import check_file

    if args.recalibrate:
        return recalibrate(args.recalibrate, progress=not args.quiet)
    check_file(args.out)  # a parent that is a file, or a read-only folder: one line before planning and timing

    paths = tuple(p.strip() for p in args.paths.split(",")) if args.paths else None
    settings = TableSettings.here(
        device=args.device,
        precision=args.precision,
        clip=args.clip,
        batch_size=args.batch_size,
        modes=paths,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    check_supported(args.precision, args.device)  # fp16 on a CPU, bf16 without it: before any block is timed
    if args.out.exists():  # resuming: the settings must match, checked before planning
        lt.open_for_build(args.out, settings)
    blocks, calibration, collected = plan(args)
    if not blocks:
        raise LatencyTableError(f"no network of these families can run at clip {'x'.join(map(str, args.clip))}")
    what = f"{len(blocks)} of {collected} distinct blocks, {len(calibration)} networks"
    print(f"latency table on {settings.describe()}: {what}", file=sys.stderr)
    start = time.perf_counter()
    try:
        with MeasuringProcess() as proc:  # this process traces nothing: its memory stays flat (profiler.measuring)
            table = build_table(
                blocks,
                settings,
                args.out,
                calibration=calibration,
                measure=functools.partial(proc, lt.measure_block),
                measure_network=functools.partial(proc, lt.measure_spec),
                measure_empty=functools.partial(proc, lt.measure_call),
                progress=not args.quiet,
            )
    except KeyboardInterrupt:
        done = len(lt.LatencyTable.load(args.out, complete=False).entries) if args.out.exists() else 0
        print(f"\ninterrupted; {done} blocks timed so far are saved in {args.out}: the same command goes on from there", file=sys.stderr)
        return 130
    if table.rechecked:
        print(f"timed again {table.rechecked} blocks that read over {lt.RECHECK_RATIO:g}x their kind's fit (a stall, most likely)")
    for mode in settings.modes:
        print(f"{mode}: per-network overhead, {_overheads(table, mode)}; empty call {table.call_ms[mode] * 1000:.1f} us")
        if mode in table.repeat:
            print(f"{mode}: {table.repeat[mode].describe()}: no prediction from this table is surer than that")
    print(f"wrote {args.out}: {len(table.entries)} blocks in {(time.perf_counter() - start) / 60:.1f} min (this run)")
    own, child = lifetime_peaks_gib()
    print(f"peak resident memory: {own:.1f} GiB in this process, {child:.1f} GiB in the largest measuring process")
    return 0


def recalibrate(path: Path, *, progress: bool) -> int:
    """Time the calibration networks of the table at ``path`` again, save it, and say how far the device moved."""
    from profiler import latency_table as lt
    from profiler.measuring import NETWORKS_EVERY, MeasuringProcess

    table = lt.LatencyTable.load(path)
    since = table.recalibrated or table.created
    try:
        with MeasuringProcess(every=NETWORKS_EVERY) as proc:
            drift = lt.recalibrate(table, measure_network=functools.partial(proc, lt.measure_spec), progress=progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {path} is unchanged", file=sys.stderr)
        return 130
    table.save(path)
    for mode, ratio in drift.items():
        print(
            f"{mode}: the {len(table.networks)} calibration networks took {ratio:.3f}x their time of {since}; "
            f"per-network overhead now {table.overhead(mode).scale:.3f} x sum"
        )
    print(f"wrote {path}")
    return 0
