"""Trained search trials per hour: one worker in fp32 against N one-thread workers that pick their precision.

Run: python -m bench.search_throughput [--architectures 6] [--jobs auto] [--order abba] [--out runs/search-throughput] [--tiny]

Takes ``--architectures`` of the fixed stratified set of :func:`search.fidelity.architecture_set`
(spread over its range of multiply-adds, queued dearest first: :func:`spread`) and trains all of them, with the default proxy protocol
(``search.study.ProxyConfig()``) and seed 0, twice, one configuration right after the other:

* ``before``: one worker with torch's default threads, ``--precision fp32``: what ``e3d search`` did
  before ``--jobs`` and ``--precision auto``;
* ``after``: ``--jobs`` workers (:func:`search.jobs.run_jobs`) of one thread each, ``--precision auto``,
  each trial calibrating anew (an empty calibration cache: :func:`fresh_cache`).

With ``--order abba`` (the default) the two run in the order before, after, after, before, and each
configuration's trials per hour counts both of its rounds: a machine whose speed drifts steadily over
the run then favours neither (``ab``: one round each, half the time). Each round is a fresh sweep study in
``<out>/throughput.db`` run by the search's own workers in an empty cache, so all train the same networks on
the same videos and every ``after`` round calibrates anew; the report gives each round's wall time and
trained trials per hour, each configuration's over its rounds, the ratio (issue 15's target: >= 2x), each
architecture's accuracy under both (they must agree within the seed spread) and what ``auto`` chose.
Ctrl-C stops; a rerun starts over (wall times of an interrupted round mean nothing). ``--tiny`` is a smoke
run (tiny clips, seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from bench import machine_stamp
from bench.proxy_fidelity import TINY, macs_of, protocol_config, runs_at
from e3d.cli import Parser, guarded
from e3d.commands.search import jobs_arg
from search import fidelity as fid
from search.jobs import JobSpec, run_jobs
from search.study import HEARTBEAT_S, ProxyConfig, load_proxy, open_storage, open_study, run_worker, sqlite_url
from space.files import check_writable, write_text
from space.spec import E3DError


@dataclasses.dataclass(frozen=True)
class Result:
    """One configuration's run: its name, settings, wall seconds and the trained trials."""

    name: str
    describe: str
    seconds: float
    trials: list[optuna.trial.FrozenTrial]

    @property
    def per_hour(self) -> float:
        """Trained trials per hour of wall time."""
        return len(self.trials) * 3600.0 / self.seconds

    @property
    def outside_trials(self) -> float:
        """Wall seconds not spanned by the trials (first start to last end): starting and stopping workers,
        and waiting."""
        starts = [t.datetime_start for t in self.trials if t.datetime_start is not None]
        ends = [t.datetime_complete for t in self.trials if t.datetime_complete is not None]
        return self.seconds - ((max(ends) - min(starts)).total_seconds() if starts and ends else 0.0)


ORDERS = {"ab": ("before", "after"), "abba": ("before", "after", "after", "before")}
"""The order of the rounds, by ``--order``."""


def combined(rounds: list[Result], name: str) -> Result:
    """Configuration ``name`` over all its rounds: their wall times summed, their trials together."""
    mine = [r for r in rounds if r.name == name]
    return Result(name, mine[0].describe, sum(r.seconds for r in mine), [t for r in mine for t in r.trials])


def spread(archs: list[tuple[str, dict[str, Any]]], n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` of ``archs`` (sorted by cost) at evenly spaced ranks, cheapest and dearest included, dearest
    first: the order they are queued in, so that the workers' last trials are the shortest and the run's
    tail (one worker done, the other still training) is as short as in a long search."""
    if not 1 <= n <= len(archs):
        raise E3DError(f"--architectures must be between 1 and {len(archs)}, got {n}")
    if n == 1:
        return archs[:1]
    return [archs[round(i * (len(archs) - 1) / (n - 1))] for i in reversed(range(n))]


@contextlib.contextmanager
def fresh_cache(out: Path, base: ProxyConfig) -> Iterator[Path]:
    """``$E3D_CACHE`` pointed at a new folder under ``out`` while the round lasts (removed after it), with ``base``'s proxy task
    generated there before anything is timed: every ``after`` trial then calibrates its precision, as a
    search's new networks do (calibrations cached by an earlier run would make ``auto`` look free)."""
    folder = Path(tempfile.mkdtemp(prefix="cache-", dir=out))
    old = os.environ.get("E3D_CACHE")
    os.environ["E3D_CACHE"] = str(folder)
    try:
        load_proxy(base, progress=False)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if old is None:
            os.environ.pop("E3D_CACHE", None)
        else:
            os.environ["E3D_CACHE"] = old


def run_config(name: str, proxy: ProxyConfig, archs: list[tuple[str, dict[str, Any]]], out: Path, *, jobs: int) -> Result:
    """Train every architecture once under ``proxy`` with ``jobs`` workers (0: in this process); time it."""
    url = sqlite_url(out / "throughput.db")
    storage = open_storage(url)
    config = protocol_config(proxy)
    study_name = f"throughput.{name}.{datetime.datetime.now():%Y%m%d-%H%M%S}"
    study, _, _ = open_study(study_name, storage, config)
    for label, params in archs:
        study.enqueue_trial(params, user_attrs={"source": "sweep", "seed": 0, "label": label})
    print(f"{name}: {len(archs)} trials, {proxy.describe()}, {jobs or 1} worker(s)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    if jobs:
        run_jobs(study, JobSpec(url, study_name, config, n_trials=0, timeout=None, heartbeat=HEARTBEAT_S, latency=None), jobs=jobs)
    else:
        run_worker(study, config, load_proxy(proxy, progress=False), n_trials=0)
    seconds = time.perf_counter() - start
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    return Result(name, proxy.describe(), seconds, done)


def report(rounds: list[Result], *, command: str, jobs: int) -> str:
    """The markdown report: each round's wall time and trials per hour, each configuration's over its
    rounds and their ratio, accuracies side by side (the last round of each)."""
    before, after = combined(rounds, "before"), combined(rounds, "after")
    lines = [
        f"# Search throughput (at the end of the run: {machine_stamp()})",
        "",
        f"`{command}`",
        "",
        "| round | configuration | settings | trained | wall min | trials per hour | outside trials s |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rounds, 1):
        cells = f"{len(r.trials)} | {r.seconds / 60:.1f} | {r.per_hour:.1f} | {r.outside_trials:.1f}"
        lines.append(f"| {i} | {r.name} | {r.describe} | {cells} |")
    for r in (before, after):
        lines.append(f"| all | {r.name} | | {len(r.trials)} | {r.seconds / 60:.1f} | {r.per_hour:.1f} | |")
    lines += ["", f"after / before: **{after.per_hour / before.per_hour:.2f}x** trained trials per hour ({jobs} jobs; target >= 2x)", ""]
    lines += ["| architecture | before: fp32 % | after % | after ran as |", "|---|---:|---:|---|"]
    acc = {r.name: {t.user_attrs.get("label"): t for t in r.trials} for r in (before, after)}
    for label, t in acc["before"].items():
        a = acc["after"].get(label)
        after_cells = f"{a.user_attrs.get('accuracy', float('nan')):.1f} | {a.user_attrs.get('precision', '?')}" if a else "- | -"
        lines.append(f"| {label} | {t.user_attrs.get('accuracy', float('nan')):.1f} | {after_cells} |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/search-throughput"))
    p.add_argument("--architectures", type=int, default=6, help="how many of the fixed set to train (default 6)")
    p.add_argument("--jobs", type=jobs_arg, default="auto", help="workers of the 'after' configuration (default auto: one per core)")
    p.add_argument(
        "--order", choices=ORDERS, default="abba",
        help="abba (default): before, after, after, before, so that a steady drift of the machine's speed cancels; ab: one round each",
    )  # fmt: skip
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny clips and sets")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train both configurations and print the report; 2 on bad input, 130 after Ctrl-C."""
    args = parse(argv)
    command = "python -m bench.search_throughput " + shlex.join(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: measure(args, command), interrupted="interrupted; rerun the command to measure again")


def measure(args: argparse.Namespace, command: str) -> int:
    """Run the rounds in ``args.order``, then write ``<out>/throughput.md`` and print it."""
    check_writable(args.out)
    base = TINY if args.tiny else ProxyConfig()
    archs = [a for a in fid.architecture_set(seed=0) if runs_at(a[1], base.clip)]
    chosen = spread(sorted(archs, key=lambda a: macs_of(a[1])), args.architectures)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = {
        "before": (dataclasses.replace(base, precision="fp32", threads=None), 0),
        "after": (dataclasses.replace(base, precision="auto", threads=1), args.jobs),
    }
    rounds = []
    for name in ORDERS[args.order]:
        proxy, jobs = configs[name]
        with fresh_cache(args.out, base):
            rounds.append(run_config(name, proxy, chosen, args.out, jobs=jobs))
    text = report(rounds, command=command, jobs=args.jobs)
    write_text(args.out / "throughput.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
