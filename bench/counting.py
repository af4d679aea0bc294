"""Counting speed: analytic (spec) vs module-based vs fvcore, per model, and the screening rate.

Run: python -m bench.counting [--screen-seconds S]
Screening = sample random family knobs, build and validate the NetSpec, sum its costs: what the
search does for every candidate before training. The target is >= 1,000 specs/s on one core.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import time
from collections.abc import Callable

import torch

import space
from profiler.counting import count_module, count_spec, spec_totals
from profiler.latency import cpu_name

STAGES = {"mobilenet": 5, "mobilenetv2": 7, "shufflenet": 3, "shufflenetv2": 3, "squeezenet": 4}


def random_knobs(rng: random.Random, family: str) -> dict[str, object]:
    """Knobs like the search samples them."""
    n = STAGES[family]
    kw: dict[str, object] = {
        "width_mult": rng.uniform(0.2, 2.0),
        "depths": [rng.randint(1, 4) for _ in range(n)],
        "stage_mults": [rng.choice([0.75, 1.0, 1.25]) for _ in range(n)],
    }
    if family == "mobilenetv2":
        kw["expansions"] = [1.0] + [float(rng.choice([3, 4, 6])) for _ in range(n - 1)]
    if family == "shufflenet":
        kw["groups"] = rng.choice([1, 2, 3, 4, 8])
    return kw


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """Print both tables."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--screen-seconds", type=float, default=3.0, help="seconds of screening per family")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"# {datetime.date.today()} on {cpu_name()} ({platform.machine()}), 1 thread, torch {torch.__version__}\n")
    print("screening (sample knobs + build/validate NetSpec + totals), one core:")
    rng = random.Random(0)
    for family in STAGES:
        factory = space.model_info(family).factory
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.screen_seconds:
            spec_totals(factory(**random_knobs(rng, family)))
            n += 1
        print(f"  {family:<13} {n / (time.perf_counter() - t0):8.0f} specs/s")

    print("\ncount one model (16x112x112, batch 1), best of 3:")
    print(f"  {'model':<20}{'analytic ms':>12}{'module ms':>11}{'fvcore ms':>11}{'module/analytic':>17}{'fvcore/analytic':>17}")
    from profiler.backends import count_fvcore

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


if __name__ == "__main__":
    main()
