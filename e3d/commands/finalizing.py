"""The finalization step of ``e3d search``: at the end of a search, or ``e3d search --finalize`` on a
finished run. See :mod:`search.finalize`."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

FINAL_SEEDS = 3
"""Default new seeds per finalist."""
TOP_K = 3
"""Default searched architectures to finalize."""


def add_finalize_args(p: argparse.ArgumentParser) -> None:
    """``--finalize``, ``--final-seeds``, ``--top-k`` and ``--no-finalize``."""
    from e3d.cli import positive_int

    f = p.add_argument_group("finalization (scores on the test split, which the search never reads)")
    either = f.add_mutually_exclusive_group()
    either.add_argument(
        "--finalize",
        action="store_true",
        help="only finalize the finished search in --out (or --storage/--study-name); continues an interrupted finalization",
    )
    seeds_help = f"new seeds per finalist (default {FINAL_SEEDS})"
    f.add_argument("--final-seeds", type=positive_int, default=FINAL_SEEDS, metavar="N", help=seeds_help)
    f.add_argument("--top-k", type=positive_int, default=TOP_K, metavar="K", help=f"searched architectures to finalize (default {TOP_K})")
    either.add_argument("--no-finalize", action="store_true", help="end without finalizing (the winner is then chosen on validation only)")


def finalize_options(args: argparse.Namespace) -> str:
    """The finalization options of ``args`` that differ from the defaults, as command-line text (for a resume hint)."""
    if args.no_finalize:
        return " --no-finalize"
    return (f" --final-seeds {args.final_seeds}" if args.final_seeds != FINAL_SEEDS else "") + (
        f" --top-k {args.top_k}" if args.top_k != TOP_K else ""
    )


def finalize_existing(args: argparse.Namespace) -> int:
    """``e3d search --finalize``: open the run's study (it must exist) and finalize it."""
    from e3d.commands.search import refuse_on_resume, run_folder
    from search import study as st

    args.resume = True
    refuse_on_resume(args, what="a finalization")
    out, url = run_folder(args)
    storage = st.open_storage(url, heartbeat=args.heartbeat)
    study, config, _ = st.open_study(args.study_name, storage, None, resume=True, kind="search")
    return finalize(args, study, config, out)


def finalize(args: argparse.Namespace, study: Any, config: Any, out: Path) -> int:
    """Retrain the study's finalists with new seeds (``--jobs`` N side by side), score them on the test
    split, write ``final.csv`` and ``final.md`` in ``out`` and print the table; 130 after Ctrl-C
    (finished runs are kept)."""
    from e3d.cli import echo
    from e3d.commands.search import interrupted, job_threads, progress_bar, run_folder, run_workers
    from search import finalize as fin
    from search import study as st
    from space.files import write_text

    seeds = fin.final_seeds(config, args.final_seeds)
    chosen = fin.finalists(study, config, top_k=args.top_k, latency=preset_latency(args, config))
    final = fin.open_final(study, config, chosen, seeds)
    local = {"device": args.device, "num_workers": args.loader_workers, "threads": job_threads(args)}
    fconfig = fin.final_config(dataclasses.replace(config, proxy=dataclasses.replace(config.proxy, **local)))
    print(f"finalizing {', '.join(f.label for f in chosen)} with seeds {', '.join(map(str, seeds))} on the test split", file=sys.stderr)
    data = st.load_proxy(fconfig.proxy, progress=not args.quiet, test=True)
    total = len(chosen) * len(seeds)
    bar = progress_bar(args, total=total, desc="final runs", unit="run")
    bar.update(total - len(final.get_trials(deepcopy=False, states=(st.TrialState.WAITING,))))

    def on_trial(t: Any) -> None:
        echo(st.trial_line(t), bar.write)  # a closed stdout (| head) stops the lines, not the runs
        bar.update(1)

    try:
        run_workers(args, final, run_folder(args)[1], fconfig, data, n_trials=0, timeout=None, latency=None, on_trial=on_trial)
    except KeyboardInterrupt:
        bar.close()
        return interrupted("finished final runs are kept", finalize_command(args, out))
    bar.close()
    table = fin.final_table(final, chosen, seeds, chance=100.0 / data.num_classes)
    text = fin.format_table(table, seeds=seeds, test_videos=getattr(data.test, "num_videos", len(data.test)))
    write_text(out / "final.csv", table.to_csv(index=False))
    write_text(out / "final.md", text + "\n")
    echo("\n" + text + f"\n\nwrote {out / 'final.csv'}, {out / 'final.md'}")
    return 0


def preset_latency(args: argparse.Namespace, config: Any) -> Any:
    """What prices the latency bound of the preset to beat when the study trained none: the search's
    own table or meter (:func:`e3d.commands.search.study_latency_of`), made on first use only; None
    without a latency bound."""
    from e3d.commands.search import study_latency_of

    if config.budget.latency_ms is None:
        return None
    made = functools.cache(lambda: study_latency_of(args, config))
    return lambda spec: made()(spec)


def finalize_command(args: argparse.Namespace, out: Path) -> str:
    """The command that continues (or repeats) this finalization."""
    from e3d.commands.search import resume_command

    return resume_command(args, "search", out, 0).replace(" --resume", " --finalize").replace(" --trials 0", "")  # keeps its options
