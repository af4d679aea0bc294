"""What the CPU's cores share: one single-thread process alone against one on every core at once.

Run: python -m bench.core_sharing [--sizes-mib 2 15 40 120] [--seconds 2] [--rounds 3] [--processes N]

``e3d search --jobs N`` runs one single-thread trial per core, which pays only where the cores do not slow each
other down. Each workload runs first in one process alone, then in ``--processes`` (default: one per core)
started together, every process with one torch thread:

* ``matmul``: a 128x128 float32 matrix product in a loop, which stays in each core's own caches (compute only);
* ``add <n> MiB``: ``torch.add`` of two float32 tensors of ``n`` MiB into a third (memory bandwidth at a working
  set of three times ``n``: a size between one and two processes' share of the last-level cache shows whether
  they share it).

Each round measures alone, then together. Prints each workload's rate per process (GFLOP/s or GB/s moved) alone
and together (medians over the rounds), and the share kept together in each round (the mean over the processes of
the rate together over the rate alone) and its median. A share near 1 means the cores do not share that resource;
shares that move from round to round mean the sharing itself changes (another tenant, or where a virtual machine's
cores are placed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import machine_stamp
from e3d.cli import Parser, positive_int

MIB = 2**20


def _matmul(seconds: float) -> float:
    """GFLOP/s of 128x128 float32 matrix products for about ``seconds``."""
    a, b = torch.randn(128, 128), torch.randn(128, 128)
    return _rate(lambda: torch.mm(a, b), 2 * 128**3 / 1e9, seconds)


def _add(mib: float, seconds: float) -> float:
    """GB/s moved by ``torch.add`` of two float32 tensors of ``mib`` MiB into a third, for about ``seconds``."""
    n = max(1, int(mib * MIB / 4))
    a, b, c = torch.randn(n), torch.randn(n), torch.empty(n)
    return _rate(lambda: torch.add(a, b, out=c), 12 * n / 1e9, seconds)


def _rate(step: Callable[[], object], work: float, seconds: float) -> float:
    """``work`` units per call of ``step`` over the calls that fit in ``seconds`` (after one untimed call)."""
    step()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls == 0:
        step()
        calls += 1
    return work * calls / elapsed


def _workload(name: str, seconds: float) -> float:
    """The rate of workload ``name`` (``matmul`` or ``add <n> MiB``), one torch thread."""
    torch.set_num_threads(1)
    return _matmul(seconds) if name == "matmul" else _add(float(name.split()[1]), seconds)


def _child(name: str, seconds: float, barrier: Any, out: Any) -> None:
    """One process's measurement, started together with the others."""
    barrier.wait()
    out.put(_workload(name, seconds))


def together(name: str, seconds: float, processes: int) -> list[float]:
    """The rate of ``name`` in each of ``processes`` processes started at once."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(name, seconds, barrier, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


def kept(alone: float, shared: list[float]) -> float:
    """The mean share of its rate alone that a process kept when all ran together."""
    return statistics.mean(shared) / alone


def l3_mib() -> float | None:
    """The last-level cache of CPU 0 in MiB, from Linux's sysfs (None where it is not there)."""
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"))
    if not caches:
        return None
    size = caches[-1].read_text().strip()
    scale = {"K": 1 / 1024, "M": 1.0}.get(size[-1], 1 / MIB)
    return float(size.rstrip("KM")) * scale


def measure(name: str, seconds: float, processes: int, rounds: int) -> str:
    """A table row for workload ``name``: its rates alone and together (medians over ``rounds``, each round
    alone then together) and the share kept in each round."""
    alone, each, shares = [], [], []
    for _ in range(rounds):
        a, shared = together(name, seconds, 1)[0], together(name, seconds, processes)
        alone.append(a)
        each += shared
        shares.append(kept(a, shared))
    unit = "GFLOP/s" if name == "matmul" else "GB/s"
    cells = [name, unit, f"{statistics.median(alone):.1f}", f"{statistics.median(each):.1f}"]
    cells += [", ".join(f"{k:.2f}" for k in shares), f"{statistics.median(shares):.2f}"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    """Measure every workload alone and together; print the table."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes-mib", nargs="+", type=float, default=[2.0, 15.0, 40.0, 120.0], help="tensor sizes of the add (default 2 15 40 120)"
    )
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (default 2)")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds of alone-then-together per workload (default 3)")
    p.add_argument("--processes", type=positive_int, default=os.cpu_count() or 1, help="processes together (default: one per core)")
    args = p.parse_args(argv)
    if args.seconds <= 0 or min(args.sizes_mib) <= 0:
        print("error: --seconds and --sizes-mib must be positive", file=sys.stderr)
        return 2
    l3 = l3_mib()
    print(f"# {machine_stamp()}, last-level cache {f'{l3:g} MiB' if l3 else 'unknown'}")
    print(f"# python -m bench.core_sharing {' '.join(sys.argv[1:] if argv is None else argv)}\n")
    print(f"| workload | unit | alone | {args.processes} together (each) | share kept, per round | median |")
    print("|---|---|---:|---:|---|---:|")
    for name in ["matmul", *[f"add {s:g} MiB" for s in args.sizes_mib]]:
        print(measure(name, args.seconds, args.processes, args.rounds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
