"""Screening speed: how many candidate specs per second analytic counting prices, on one core.

Run: python -m bench.counting [--specs N] [--families F ...] [--models]

Candidates come from the search space's own sampler, ``search.searchspace.sample_params``, driven by
:class:`RandomTrial` (Optuna's ``RandomSampler`` distributions: log-uniform widths, uniform integers
and choices, without Optuna's storage, which costs more than the counting; its ask/tell time is
printed apart). Screening one candidate = ``spec_from_params`` (the family factory builds and
validates the NetSpec, tracing it) + ``spec_totals`` (its macs, params, paper FLOPs and activations):
what the search does with every candidate before training, here through
``search.searchspace.price_candidates``, which prices candidates in chunks with Python's cyclic garbage
collector paused.

Reported side by side in one run, as specs per second of this process's CPU time (one core; the
wall-clock rate and the machine's load average are printed too, since other processes slow a shared
machine down):

* ``uncached``: every cache (unit and segment traces and costs, the factories' shared spec parts)
  cleared before every candidate, so each one is built, validated and traced from scratch;
* ``cold``: the first ``--cold`` candidates of a fresh process (empty caches);
* ``steady``: the last quarter of ``--specs`` candidates, when the caches hold the units that recur
  (a search prices hundreds of thousands; an evolutionary one mostly mutates units it has seen);
* ``repeat``: that last quarter screened again, every segment cached: re-pricing candidates seen before
  (latency tables, scaling studies, an evolutionary search's survivors).

The target is >= 10,000 specs/s on one core. ``--models`` adds the time to count six presets
analytically, by running the module, and with fvcore.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import torch

import space
from bench import load_average, machine_stamp
from e3d.cli import Parser, positive_int
from profiler.counting import clear_caches, count_module, count_spec
from search.searchspace import FAMILIES, check_families, price_candidates, sample_params
from space.spec import SpecError

TARGET = 10_000
"""Specs per second the screening must reach on one core."""


class RandomTrial:
    """The part of ``optuna.Trial`` that ``sample_params`` calls, drawing like Optuna's RandomSampler."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """A uniform choice."""
        return choices[self.rng.randrange(len(choices))]

    def suggest_int(self, name: str, low: int, high: int) -> int:
        """A uniform integer in [low, high]."""
        return self.rng.randint(low, high)

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        """Uniform in [low, high], or log-uniform with ``log``."""
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        return self.rng.uniform(low, high)


def sample_candidates(n: int, families: Sequence[str], rng: random.Random) -> list[dict[str, Any]]:
    """``n`` candidates' params from the search space's sampler."""
    trial = RandomTrial(rng)
    return [sample_params(trial, families) for _ in range(n)]  # type: ignore[arg-type]


def optuna_overhead(families: Sequence[str], n: int = 200) -> float:
    """Seconds per candidate of Optuna's own ask + sample_params + tell (in-memory storage)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        sample_params(trial, families)
        study.tell(trial, 0.0)
    return (time.perf_counter() - t) / n


def screen(params: Sequence[dict[str, Any]], *, uncached: bool = False) -> tuple[float, float]:
    """Screen every candidate once as a search does (``price_candidates``), or one at a time from
    empty caches with ``uncached``: (CPU seconds, wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    if uncached:
        for p in params:
            clear_caches()
            price_candidates([p])
    else:
        price_candidates(params)
    return time.process_time() - cpu, time.perf_counter() - wall


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def load() -> str:
    """The 1-minute load average and the CPU count, in words."""
    return f"load average {load_average()} on {os.cpu_count()} CPUs"


def screening(families: Sequence[str], total: int, cold: int) -> None:
    """Print the uncached / cold / steady rates of screening ``total`` candidates of ``families``."""
    rng = random.Random(0)
    print(f"candidates of {', '.join(families)} from search.searchspace.sample_params")
    print(f"  Optuna ask + sample_params + tell: {optuna_overhead(families) * 1e6:,.0f} us per candidate (not counting)\n")
    params = sample_candidates(cold, families, rng)
    clear_caches()
    cpu, wall = screen(params, uncached=True)
    unc = cold / cpu
    print(f"  {'uncached':<8} {unc:>9,.0f} specs/s CPU  {cold / wall:>9,.0f} specs/s wall   ({cold} specs, {load()})")
    clear_caches()
    cpu, wall = screen(params)
    cold_rate = cold / cpu
    print(f"  {'cold':<8} {cold_rate:>9,.0f} specs/s CPU  {cold / wall:>9,.0f} specs/s wall   (the first {cold} of a fresh process)")
    warm = max(total * 3 // 4 - cold, 0)
    for start in range(0, warm, 5000):
        screen(sample_candidates(min(5000, warm - start), families, rng))
    last = sample_candidates(total - cold - warm, families, rng)
    cpu, wall = screen(last)
    steady = len(last) / cpu
    verdict = "meets" if steady >= TARGET else "MISSES"
    print(
        f"  {'steady':<8} {steady:>9,.0f} specs/s CPU  {len(last) / wall:>9,.0f} specs/s wall   (last {len(last):,} of {total:,}; {load()})"
    )
    cpu, wall = screen(last)
    print(f"  {'repeat':<8} {len(last) / cpu:>9,.0f} specs/s CPU  {len(last) / wall:>9,.0f} specs/s wall   (the same {len(last):,} again)")
    print(f"  steady / uncached: {steady / unc:.1f}x, cold / uncached: {cold_rate / unc:.1f}x; {verdict} the {TARGET:,} specs/s target\n")


def models() -> None:
    """Time counting six presets: analytic, module and fvcore."""
    from profiler.backends import count_fvcore

    print("count one model (16x112x112, batch 1), best of 3:")
    print(f"  {'model':<20}{'analytic ms':>12}{'module ms':>11}{'fvcore ms':>11}{'module/analytic':>17}{'fvcore/analytic':>17}")
    for name, w in [
        ("shufflenet", 1.0),
        ("shufflenetv2", 1.0),
        ("mobilenet", 1.0),
        ("mobilenetv2", 0.45),
        ("squeezenet", 1.0),
        ("resnet18", 1.0),
    ]:
        spec = space.paper_spec(name, width_mult=w)
        model = space.build(spec).eval()
        ta = best_of(lambda spec=spec: count_spec(spec), 3)  # type: ignore[misc]
        tm = best_of(lambda model=model, spec=spec: count_module(model, spec.input_shape), 3)  # type: ignore[misc]
        tf = best_of(lambda model=model, spec=spec: count_fvcore(model, spec.input_shape), 3)  # type: ignore[misc]
        label = f"{name} {w:g}x"
        print(f"  {label:<20}{ta * 1e3:12.2f}{tm * 1e3:11.1f}{tf * 1e3:11.1f}{tm / ta:16.0f}x{tf / ta:16.0f}x")


def main(argv: list[str] | None = None) -> None:
    """Print the screening rates (and the per-model table with ``--models``)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", type=positive_int, default=40_000, help="candidates screened in all (default 40,000)")
    p.add_argument("--cold", type=positive_int, default=1000, help="candidates timed with a fresh cache, and uncached (default 1000)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), help="families to sample (default: the paper's five)")
    p.add_argument("--models", action="store_true", help="also time counting six presets (analytic, module, fvcore)")
    args = p.parse_args(argv)
    try:
        args.families = list(check_families(args.families))
    except SpecError as e:
        p.error(f"argument --families: {e.reason}")
    if args.specs <= args.cold:
        p.error(f"--specs ({args.specs}) must exceed --cold ({args.cold}): the steady rate is timed on the candidates after the cold ones")
    torch.set_num_threads(1)
    print(f"# {machine_stamp(threads=1)}\n")
    screening(args.families, args.specs, args.cold)
    if args.models:
        models()


if __name__ == "__main__":
    main()
