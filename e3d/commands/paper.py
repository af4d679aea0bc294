"""``e3d paper``: the paper's findings, recomputed from its Table 8 alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """\
What it computes (the same functions e3d analyze applies to your results):
  (iv)   per family, the accuracy lost from each width multiplier to the next narrower one, and
         the loss per 0.1 of width on steps that end below 0.5x against the others
  (i)    deeper (shufflenet, shufflenetv2, mobilenetv2) vs shallower (squeezenet, mobilenet)
         families: for each shallower model, the most accurate deeper model with no more MFLOPs
  (vi)   Spearman's rank correlation (scipy.stats.spearmanr) of MFLOPs with time per clip on the
         Titan Xp and the Jetson TX2, and the share of model pairs where more FLOPs run faster
  (viii) speed ranks on the two platforms; (iii) Kinetics-600 against UCF-101 accuracy ranks

Inputs are the table's printed numbers (space/data/table8.csv); nothing is measured or trained."""


def register(sub: Any) -> None:
    """Add the ``paper`` subcommand."""
    p = sub.add_parser(
        "paper",
        help="the paper's findings recomputed from its Table 8",
        description="Recompute the paper's findings on width multipliers, depth and FLOPs vs speed from Table 8 alone, "
        "for Kinetics-600, Jester and UCF-101 and both platforms.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write paper_findings.md and the figures paper_accuracy, paper_width, paper_speed (PNG and SVG) there",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the findings; with ``--out`` also write them and the figures."""
    from analysis.paper import paper_findings
    from analysis.report import paper_text
    from space.files import check_writable

    if args.out is not None:
        check_writable(args.out)  # a file, or a folder under one, is one line before anything is computed
    text = paper_text(paper_findings())
    print(text)
    if args.out is not None:
        _write(args.out, text)
    return 0


def _write(out: Path, text: str) -> None:
    """``paper_findings.md`` and the figures in ``out``, each written atomically."""
    from analysis.plots import plot_paper, plot_paper_speed, save_figure
    from space.files import write_text

    findings = write_text(out / "paper_findings.md", f"# The paper's findings from Table 8 (`e3d paper`)\n\n{text}\n")
    files = save_figure(plot_paper(cost="paper_mflops"), out, "paper_accuracy")
    files += save_figure(plot_paper(kind="width"), out, "paper_width")
    files += save_figure(plot_paper_speed(), out, "paper_speed")
    print(f"\nwrote {findings} and {len(files)} figure files in {out}")
