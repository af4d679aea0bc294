"""``e3d analyze``: figures, Pareto tables and findings of any study or ``trials.csv``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from e3d.cli import positive_float

EPILOG = """\
examples:
  e3d analyze --csv runs/e3d-search --out runs/e3d-search/analysis        a run folder of e3d search
  e3d analyze --csv trials.csv --out out --budget-mflops 200                any trials.csv
  e3d analyze --study s200 --storage postgresql://user:pw@host/db --out out
  e3d analyze --scale runs/scale-a runs/scale-b --out out                   scaling studies side by side

Writes to --out: accuracy_vs_macs, width_curves, latency_vs_macs (when latency was measured),
paper_accuracy, paper_width and paper_speed (your results next to the paper's Table 8), each as PNG
and SVG, and summary.md with the Pareto fronts (accuracy vs multiply-adds, params, latency), the
width-multiplier curves and drops, deeper vs shallower families at equal multiply-adds, and the rank
correlation of multiply-adds with latency. Prints the accuracy-vs-multiply-adds Pareto table.

Only trials trained to the end count; rejected (over budget), pruned and failed trials are counted
but not plotted. Repeated trials of one architecture (seeds) are averaged, their spread shown.

With --scale (run folders of e3d scale): summary.md compares the studies (each expansion path against one
axis alone at equal cost, and each axis's gain per doubling of multiply-adds in the early and the late
steps) and gains.png draws the gains, one panel per study."""


def register(sub: Any) -> None:
    """Add the ``analyze`` subcommand."""
    p = sub.add_parser(
        "analyze",
        help="figures, Pareto tables and findings of a study or a trials.csv",
        description="Analyse the results of e3d search (or any rows of its trials.csv schema): Pareto fronts, "
        "width-multiplier curves, FLOPs against measured latency, and the same views of the paper's Table 8 beside them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", metavar="NAME", help="an Optuna study name (with --storage)")
    src.add_argument("--csv", type=Path, metavar="PATH", help="a trials.csv, or a run folder of e3d search that holds one")
    src.add_argument("--scale", type=Path, nargs="+", metavar="DIR", help="run folders of e3d scale, compared side by side")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL of --study, e.g. sqlite:///runs/x/study.db or postgresql://...")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the figures and summary.md (created)")
    p.add_argument(
        "--budget-mflops",
        type=positive_float,
        metavar="M",
        help="multiply-add budget per clip in millions, for the budget line (default: the study's own, when stored)",
    )
    p.add_argument(
        "--measure-latency",
        action="store_true",
        help="time every trained architecture without a latency on this machine (eager, batch 8, its own clip)",
    )
    p.add_argument("--no-paper", action="store_true", help="leave out the figures and summary section of the paper's Table 8")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse corrupt rows (duplicated trials, unparsable specs, negative costs, accuracies outside 0-100) instead of dropping them",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Load, compute, draw, write, print."""
    from analysis.report import summary_markdown
    from space.files import write_text

    _check_source(args)
    if args.scale:
        return _compare_scaling(args)
    results, note = _load(args)
    figures = _figures(results, args.out, paper=not args.no_paper)
    summary = summary_markdown(results, figures=figures, command=_command(args), latency_note=note, paper=not args.no_paper)
    write_text(args.out / "summary.md", summary + "\n")
    _print_pareto(results, args.out, n_figures=len(figures), note=note)
    return 0


def _check_source(args: argparse.Namespace) -> None:
    """``--study`` and ``--storage`` go together (a usage error, exit 2, otherwise)."""
    if args.study is not None and not args.storage:
        args.parser.error("--study needs --storage URL (the storage e3d search used)")
    if args.storage and args.study is None:
        args.parser.error("--storage goes with --study NAME")


SEARCH_ONLY = ("budget_mflops", "measure_latency", "no_paper", "strict")
"""Options of a search's analysis, refused with ``--scale``."""


def _compare_scaling(args: argparse.Namespace) -> int:
    """Write and print the comparison of the ``--scale`` run folders."""
    from analysis.scaling import write_comparison
    from space.files import check_writable

    given = [f"--{o.replace('_', '-')}" for o in SEARCH_ONLY if getattr(args, o) not in (None, False)]
    if given:
        args.parser.error(f"{', '.join(given)} analyse a search, not --scale runs")
    check_writable(args.out)
    paths = write_comparison(args.scale, args.out, command=f"e3d analyze --scale {' '.join(map(str, args.scale))} --out {args.out}")
    print(paths["summary"].read_text(), end="")
    print(f"\nwrote {paths['summary']} and {paths['gains']}")
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The results of ``--study`` or ``--csv`` (with ``--budget-mflops`` and ``--measure-latency`` applied) and
    the latency note; an error when ``--out`` is not writable or no trial finished."""
    import dataclasses

    from analysis import load_csv, load_study
    from analysis.load import AnalysisError
    from search.results import finished, trial_counts
    from space.files import check_writable

    check_writable(args.out)  # a read-only or full --out is one line before any work
    results = load_study(args.study, storage=args.storage) if args.study is not None else load_csv(args.csv, strict=args.strict)
    if results.dropped:
        print(f"warning: dropped corrupt rows of {results.name}: {'; '.join(results.dropped)} (--strict refuses them)", file=sys.stderr)
    if args.budget_mflops is not None:
        results = dataclasses.replace(results, budget_mflops=args.budget_mflops)
    df = results.trials
    if not len(finished(df)):
        raise AnalysisError(f"{results.name}: none of its trials finished training with an accuracy ({trial_counts(df)})")
    note = None
    if args.measure_latency:
        from analysis.measure import measure_latencies

        df, note = measure_latencies(df, progress=not args.quiet)
        results = dataclasses.replace(results, trials=df)
    return results, note


def _figures(results: Any, out: Path, *, paper: bool) -> list[Path]:
    """Draw and save the figures of ``results`` in ``out`` (the paper's beside them when ``paper``); the files written."""
    from analysis.load import trained_on
    from analysis.plots import plot_accuracy_vs_cost, plot_latency_vs_cost, plot_width_curves, save_figure

    df, budget, label = results.trials, results.budget_mflops, _short(results.name)
    where = trained_on(df)
    has_latency = bool(df["latency_ms"].notna().any())
    figures: list[Path] = []
    accuracy = plot_accuracy_vs_cost(df, budget=budget, title=f"{label}: accuracy vs multiply-adds\n{where}")
    figures += save_figure(accuracy, out, "accuracy_vs_macs")
    figures += save_figure(plot_width_curves(df, title=f"{label}: accuracy vs width\n{where}"), out, "width_curves")
    if has_latency:
        figures += save_figure(plot_latency_vs_cost(df, title=f"{label}: latency vs multiply-adds\n{where}"), out, "latency_vs_macs")
    if paper:
        figures += _paper_figures(results, out, has_latency=has_latency)
    return figures


def _paper_figures(results: Any, out: Path, *, has_latency: bool) -> list[Path]:
    """Save the paper's Table 8 figures with ``results`` beside them; the files written."""
    from analysis.paper import PAPER_CLIP
    from analysis.plots import plot_paper, plot_paper_speed, save_figure

    df, budget, label = results.trials, results.budget_mflops, _short(results.name)
    paper_budget = budget if results.budget_clip in (None, PAPER_CLIP) else None
    figures: list[Path] = []
    figures += save_figure(plot_paper(results=df, results_title=label, budget=budget, paper_budget=paper_budget), out, "paper_accuracy")
    figures += save_figure(plot_paper(kind="width", results=df, results_title=label), out, "paper_width")
    speed = plot_paper_speed(results=df if has_latency else None, results_title=label, cost="macs")
    figures += save_figure(speed, out, "paper_speed")
    return figures


def _print_pareto(results: Any, out: Path, *, n_figures: int, note: str | None) -> None:
    """Print the accuracy-vs-multiply-adds Pareto table, the latency note (stderr) and the files written."""
    from analysis import architectures
    from analysis.report import pareto_text

    df = results.trials
    n_arch = len(architectures(df))
    print(f"Pareto front of {results.name}: accuracy vs multiply-adds per clip ({n_arch} trained architecture(s))")
    print(pareto_text(df, cost="macs"))
    if note:
        print(note, file=sys.stderr)
    print(f"\nwrote {out / 'summary.md'} and {n_figures} figure files in {out}")


def _short(name: str) -> str:
    """A short label of a results name: a trials.csv's folder, else the name itself."""
    path = Path(name)
    return (path.parent.name or name) if path.name in ("trials.csv", "trials_full.csv") else name


def _command(args: argparse.Namespace) -> str:
    """The ``e3d analyze`` command that reproduces this analysis (storage credentials redacted)."""
    parts = ["e3d analyze"]
    if args.study is not None:
        from search.study import redact

        parts += [f"--study {args.study}", f"--storage {redact(args.storage)}"]
    else:
        parts.append(f"--csv {args.csv}")
    parts.append(f"--out {args.out}")
    if args.budget_mflops is not None:
        parts.append(f"--budget-mflops {args.budget_mflops:g}")
    if args.measure_latency:
        parts.append("--measure-latency")
    if args.no_paper:
        parts.append("--no-paper")
    if args.strict:
        parts.append("--strict")
    return " ".join(parts)
