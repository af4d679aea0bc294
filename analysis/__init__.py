"""What was LEARNED: results as data first (tables, Pareto fronts, the paper's findings), pictures second.

Public API::

    load_study(name, *, storage) -> Results          # any Optuna study (SQLite, PostgreSQL)
    load_csv(path) -> Results                        # a trials.csv, or a run folder holding one
    from_study(study) -> Results                     # an open optuna.Study
    Results.trials                                   # one row per trial, spec fields as spec.<path>

    architectures(df) / pareto_points(df, *, cost) / pareto_table(df, *, cost)
    width_curves(df) / width_drops(df) / width_summary(drops)
    depth_comparison(df, *, cost) / speed_rank_correlation(df, *, cost, latency) / rank_correlation(df, x, y)
    paper_frame(dataset) / paper_findings()          # Table 8 in the same schema, and its findings

    plot_accuracy_vs_cost / plot_width_curves / plot_latency_vs_cost / plot_paper / plot_paper_speed
    save_figure(fig, out, stem)                      # PNG and SVG
"""

from analysis.findings import (
    DEEPER,
    SHALLOWER,
    WIDTH_THRESHOLD,
    RankCorrelation,
    WidthSummary,
    depth_comparison,
    rank_correlation,
    speed_rank_correlation,
    width_curves,
    width_drops,
    width_summary,
)
from analysis.load import REQUIRED, AnalysisError, Results, from_study, load_csv, load_study, normalize
from analysis.paper import DATASETS, PLATFORMS, PaperFindings, paper_findings, paper_frame
from analysis.pareto import COSTS, architectures, pareto_points, pareto_table
from analysis.plots import plot_accuracy_vs_cost, plot_latency_vs_cost, plot_paper, plot_paper_speed, plot_width_curves, save_figure

__all__ = [
    "COSTS",
    "DATASETS",
    "DEEPER",
    "PLATFORMS",
    "REQUIRED",
    "SHALLOWER",
    "WIDTH_THRESHOLD",
    "AnalysisError",
    "PaperFindings",
    "RankCorrelation",
    "Results",
    "WidthSummary",
    "architectures",
    "depth_comparison",
    "from_study",
    "load_csv",
    "load_study",
    "normalize",
    "paper_findings",
    "paper_frame",
    "pareto_points",
    "pareto_table",
    "plot_accuracy_vs_cost",
    "plot_latency_vs_cost",
    "plot_paper",
    "plot_paper_speed",
    "plot_width_curves",
    "rank_correlation",
    "save_figure",
    "speed_rank_correlation",
    "width_curves",
    "width_drops",
    "width_summary",
]
