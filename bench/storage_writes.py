"""What a search's bookkeeping costs on a SQLite storage, under the settings before and after, side by side.

Run: python -m bench.storage_writes [--writes 200] [--rounds 2] [--search-trials 3] [--out runs/storage-writes]

Every trial of a search records dozens of attributes (its spec, cost, screen verdict, progress, result),
each one a commit to the study's storage, and most trials of a search under a tight budget are screened
and rejected without training: their time is mostly these commits. Two settings of every SQLite
connection (``search.study.SQLITE_PRAGMAS``):

* ``before``: SQLite's defaults, a rollback journal and ``synchronous=FULL``: each commit waits for the
  disk several times;
* ``after``: write-ahead logging and ``synchronous=NORMAL``: a commit is durable against the process
  being killed without waiting for the disk (a power loss can undo the last few).

Each round times, under both settings one right after the other on fresh files: ``--writes`` trial
attribute writes (``Trial.set_user_attr``), then, unless ``--search-trials 0``, a small real search
(``e3d search`` on the built-in motion task, tiny clips, no finalization) to ``--search-trials`` trained
trials. Printed: milliseconds per write and seconds per trial of the search (every trial, trained or
rejected), mean +- sample sd over the rounds (``search.stats.summarize``), and the ratios of the means.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna

from bench import load_average, machine_stamp
from e3d.cli import Parser, guarded, non_negative_int, positive_int
from e3d.cli import main as e3d_main
from search import study as st
from search.stats import summarize
from space.files import WriteError, check_writable

SETTINGS: dict[str, tuple[str, ...]] = {"before": ("journal_mode=DELETE", "synchronous=FULL"), "after": st.SQLITE_PRAGMAS}
"""The connection settings compared."""

SEARCH = [
    "--families", "mobilenet,mobilenetv2", "--budget-mflops", "60", "--proxy-clip", "8x32x32", "--train-samples", "32",
    "--val-samples", "16", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--no-finalize", "--seed", "0", "--quiet",
]  # fmt: skip
"""A search whose trials train in about a second, so that screening and bookkeeping show."""


@contextlib.contextmanager
def pragmas(values: Sequence[str]) -> Iterator[None]:
    """Within: new SQLite connections of e3d's storages get ``values``."""
    old = st.SQLITE_PRAGMAS
    st.SQLITE_PRAGMAS = tuple(values)
    try:
        yield
    finally:
        st.SQLITE_PRAGMAS = old


def write_ms(folder: Path, writes: int) -> float:
    """Milliseconds per ``set_user_attr`` of one trial in a fresh study in ``folder``."""
    study = optuna.create_study(storage=st.open_storage(st.sqlite_url(folder / "writes.db")), study_name="writes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats outside Study.optimize
        trial = study.ask()
    start = time.perf_counter()
    for i in range(writes):
        trial.set_user_attr(f"attr{i % 20}", i)
    return (time.perf_counter() - start) / writes * 1e3


def search_s_per_trial(folder: Path, trials: int) -> tuple[float, int]:
    """Wall seconds per trial (every state) of a small search in ``folder``, and its number of trials."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):
        code = e3d_main(["search", *SEARCH, "--trials", str(trials), "--out", str(folder)])
    if code != 0:
        raise RuntimeError(f"the search exited with {code}")
    seconds = time.perf_counter() - start
    n = len(optuna.load_study(study_name="e3d-search", storage=st.open_storage(st.sqlite_url(folder / "study.db"))).trials)
    return seconds / n, n


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = Parser(prog="python -m bench.storage_writes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=positive_int, default=200, help="attribute writes timed per setting and round (default 200)")
    p.add_argument("--rounds", type=positive_int, default=2, help="rounds, each timing both settings (default 2)")
    p.add_argument(
        "--search-trials", type=non_negative_int, default=3, metavar="N", help="trained trials per small search; 0: none (default 3)"
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the databases (default: a temporary folder, removed)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Time both settings ``--rounds`` times and print the report; 2 on bad input (an ``--out`` that cannot be
    written: refused before anything is timed), 130 after Ctrl-C."""
    args = parse(argv)
    return guarded(lambda: measure(args))


def measure(args: argparse.Namespace) -> int:
    """The rounds and the report."""
    if args.out is not None:
        check_writable(args.out)
        earlier = [args.out / f"round{r + 1}-{name}" for r in range(args.rounds) for name in SETTINGS]
        if any(f.exists() for f in earlier):
            raise WriteError(f"{args.out} already holds rounds of an earlier run: choose another --out")
    out = args.out or Path(tempfile.mkdtemp(prefix="e3d-storage-"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"# {machine_stamp()}, databases in {out}")
    results: dict[str, dict[str, list[float]]] = {name: {"write": [], "trial": []} for name in SETTINGS}
    try:
        for r in range(args.rounds):
            for name, values in SETTINGS.items():
                folder = out / f"round{r + 1}-{name}"
                folder.mkdir(parents=True, exist_ok=False)
                with pragmas(values):
                    ms = write_ms(folder, args.writes)
                    line = f"round {r + 1} {name:<6} ({', '.join(values)}): {ms:6.2f} ms per attribute write"
                    results[name]["write"].append(ms)
                    if args.search_trials > 0:
                        s, n = search_s_per_trial(folder, args.search_trials)
                        results[name]["trial"].append(s)
                        line += f"; search: {n} trials, {s:.2f} s per trial"
                print(line, flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print()
    for key, unit in (("write", "ms per attribute write"), ("trial", "s per search trial")):
        if not results["before"][key]:
            continue
        before, after = summarize(results["before"][key]), summarize(results["after"][key])
        print(f"{unit}: before {before.format(2)}, after {after.format(2)} (mean ± sample sd): {before.mean / after.mean:.1f}x")
    print(f"load average {load_average()} on {os.cpu_count()} CPUs at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
