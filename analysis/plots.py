"""Thin matplotlib renderers over the computations of :mod:`analysis.pareto` and :mod:`analysis.findings`.

Every function takes trial rows (a study's, or the paper's from :func:`analysis.paper.paper_frame`),
draws on ``ax`` when given (else on a new figure) and returns the figure. Figures are plain
``matplotlib.figure.Figure`` objects, independent of pyplot and of any interactive backend; save one
with :func:`save_figure`. Each series (a family, the Pareto front, the budget, the 0.5x threshold)
carries a legend label, so a test can count them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.findings import WIDTH_THRESHOLD, speed_rank_correlation, width_curves
from analysis.paper import DATASETS, PLATFORMS, paper_frame
from analysis.pareto import architectures, cost_info, pareto_points

FAMILY_COLORS = {
    "mobilenet": "tab:blue",
    "mobilenetv2": "tab:orange",
    "shufflenet": "tab:green",
    "shufflenetv2": "tab:red",
    "squeezenet": "tab:purple",
    "resnet18": "tab:brown",
    "resnet50": "tab:pink",
    "resnet101": "tab:gray",
    "resnext101": "tab:olive",
}
"""One colour per family, the same on every figure."""

ACCURACY_LABEL = "top-1 accuracy (%)"


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.2)) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure(root=True)
        assert isinstance(fig, Figure)
        return fig, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _color(family: Any) -> str:
    return FAMILY_COLORS.get(str(family), "black")


def _log_if_wide(ax: Axes, values: pd.Series, logx: bool | None) -> None:
    ax.margins(x=0.08)
    positive = values[values > 0]
    if logx is None:
        logx = len(positive) > 1 and positive.max() / positive.min() > 8
    if logx:
        ax.set_xscale("log")


def _accuracy_label(df: pd.DataFrame) -> str:
    tasks: list[str] = sorted(df["task"].dropna().astype(str).unique()) if "task" in df else []
    return f"{ACCURACY_LABEL}, {tasks[0]}" if len(tasks) == 1 else ACCURACY_LABEL


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def plot_accuracy_vs_cost(
    df: pd.DataFrame,
    *,
    cost: str = "macs",
    budget: float | None = None,
    front: bool = True,
    annotate: bool = False,
    logx: bool | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Accuracy against ``cost`` per family, with the Pareto front and the budget line.

    One point per finished architecture (:func:`analysis.pareto.pareto_points`; error bars show the
    standard deviation over repeated trials); ``front`` draws the front as a staircase (the best
    accuracy reachable at each cost); ``budget`` (in the shown unit, e.g. millions of multiply-adds)
    draws a dashed vertical line; ``annotate`` writes each point's width. ``logx=None`` picks a log
    axis when costs span more than 8x.
    """
    fig, ax = _axes(ax)
    info = cost_info(cost)
    points = pareto_points(df, cost=cost)
    x = points[cost] * info.scale
    repeated = bool((points["n"] > 1).any())
    for family, g in points.groupby("family", sort=True):
        gx = g[cost] * info.scale
        yerr = g["accuracy_std"].fillna(0.0) if repeated else None
        ax.errorbar(gx, g["accuracy"], yerr=yerr, fmt="o", color=_color(family), label=str(family), capsize=2, alpha=0.85)
        if annotate:
            for xi, yi, w in zip(gx, g["accuracy"], g["width_mult"], strict=True):
                ax.annotate(f"{w:g}x", (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7, color=_color(family))
    if front and len(points):
        f = points[points["on_front"]]
        ax.step(f[cost] * info.scale, f["accuracy"], where="post", color="black", lw=1.2, label="Pareto front")
    if budget is not None:
        ax.axvline(budget, color="black", ls="--", lw=1, label=f"budget {budget:g} {info.unit}".rstrip())
    if not len(points):
        _empty(ax, "no finished trials")
    _log_if_wide(ax, x, logx)
    ax.set_xlabel(info.label)
    ax.set_ylabel(_accuracy_label(df))
    ax.set_title(title or f"accuracy vs {info.label.split(' (')[0]}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_width_curves(df: pd.DataFrame, *, threshold: float = WIDTH_THRESHOLD, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Accuracy against width multiplier, one curve per family (:func:`analysis.findings.width_curves`):
    the mean over repeated trials with their standard deviation as error bars, and the ``threshold``
    (0.5x) below which the paper saw accuracy collapse marked by a vertical line and shading."""
    fig, ax = _axes(ax)
    curves = width_curves(df)
    for family, g in curves.groupby("family", sort=True):
        n = int(g["n"].max())
        label = f"{family} (mean ± sd, up to {n} runs)" if n > 1 else str(family)
        ax.errorbar(
            g["width_mult"], g["accuracy_mean"], yerr=g["accuracy_std"].fillna(0.0), fmt="o-", capsize=3, color=_color(family), label=label
        )
    lo = min(float(curves["width_mult"].min()), threshold) if len(curves) else threshold
    ax.axvspan(lo * 0.9, threshold, color="0.85", alpha=0.5, lw=0, label="_below threshold")
    ax.axvline(threshold, color="black", ls=":", lw=1.2, label=f"width {threshold:g}x")
    if not len(curves):
        _empty(ax, "no finished trials")
    ax.set_xlabel("width multiplier")
    ax.set_ylabel(_accuracy_label(df))
    ax.set_title(title or "accuracy vs width multiplier")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_latency_vs_cost(
    df: pd.DataFrame,
    *,
    cost: str = "macs",
    latency: str = "latency_ms",
    logx: bool | None = None,
    annotate: bool = False,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Measured ``latency`` against ``cost`` per family, one point per architecture whose latency was
    measured (trained or not), with Spearman's rank correlation written on the axes: FLOPs do not
    predict speed when it is far from 1."""
    fig, ax = _axes(ax)
    info, linfo = cost_info(cost), cost_info(latency)
    arch = architectures(df, keep=(cost, latency), trained=False)
    arch = arch[arch[cost].notna() & arch[latency].notna()]
    for family, g in arch.groupby("family", sort=True):
        ax.scatter(g[cost] * info.scale, g[latency] * linfo.scale, color=_color(family), label=str(family), alpha=0.85)
        if annotate:
            for xi, yi, w in zip(g[cost] * info.scale, g[latency] * linfo.scale, g["width_mult"], strict=True):
                ax.annotate(f"{w:g}x", (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7, color=_color(family))
    corr = speed_rank_correlation(df, cost=cost, latency=latency)
    if len(arch):
        rho = "undefined" if math.isnan(corr.rho) else f"{corr.rho:.2f}"
        ax.text(0.03, 0.96, f"Spearman ρ = {rho} (n = {corr.n})", transform=ax.transAxes, va="top", fontsize=9)
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no latency measured")
    _log_if_wide(ax, arch[cost] * info.scale, logx)
    ax.set_xlabel(info.label)
    ax.set_ylabel(linfo.label)
    ax.set_title(title or f"latency vs {info.label.split(' (')[0]}")
    ax.grid(True, alpha=0.3)
    return fig


def plot_paper(
    *,
    kind: str = "accuracy",
    results: pd.DataFrame | None = None,
    results_title: str = "your results",
    datasets: Sequence[str] = tuple(DATASETS),
    cost: str = "macs",
    budget: float | None = None,
    paper_budget: float | None = None,
) -> Figure:
    """Table 8 drawn with the same renderer for each of ``datasets``, after a panel of ``results``
    (a user's trials) when given, side by side on one figure.

    ``kind`` is ``accuracy`` (:func:`plot_accuracy_vs_cost` against ``cost``; e3d's ``macs`` of the
    presets at 16x112x112, or the table's ``paper_mflops``) or ``width`` (:func:`plot_width_curves`).
    ``budget`` is drawn on the results panel, ``paper_budget`` on the paper's (pass it only when the
    results are counted on the paper's 16x112x112 clip).
    """
    if kind not in ("accuracy", "width"):
        raise ValueError(f"kind must be 'accuracy' or 'width', got {kind!r}")
    panels: list[tuple[str, pd.DataFrame, float | None, bool]] = []  # title, rows, budget, label widths
    if results is not None:
        panels.append((results_title, results, budget, False))
    panels += [(f"Table 8: {DATASETS[d]}", paper_frame(d), paper_budget, True) for d in datasets]
    fig = Figure(figsize=(4.6 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, df, line, annotate) in zip(axes, panels, strict=True):
        if kind == "accuracy":
            plot_accuracy_vs_cost(df, cost=cost, budget=line, annotate=annotate, title=title, ax=ax)
        else:
            plot_width_curves(df, title=title, ax=ax)
    return fig


def plot_paper_speed(*, results: pd.DataFrame | None = None, results_title: str = "your results", cost: str = "paper_mflops") -> Figure:
    """Table 8's speeds as time per batch of 8 against ``cost`` on each platform, after a panel of
    ``results`` (measured ``latency_ms`` against ``macs``) when given."""
    panels: list[tuple[str, pd.DataFrame, str, str, bool]] = []  # title, rows, cost, latency, label widths
    if results is not None:
        panels.append((results_title, results, "macs", "latency_ms", False))
    paper = paper_frame("kinetics600")
    panels += [(f"Table 8: {name}", paper, cost, f"{key}_latency_ms", True) for key, name in PLATFORMS.items()]
    fig = Figure(figsize=(4.6 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, df, c, lat, annotate) in zip(axes, panels, strict=True):
        plot_latency_vs_cost(df, cost=c, latency=lat, annotate=annotate, title=title, ax=ax)
    return fig


def save_figure(fig: Figure, out: Path, stem: str, *, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``out/stem.<format>`` for each format; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150 if fmt == "png" else None, metadata=_metadata(fmt))
        paths.append(path)
    return paths


def _metadata(fmt: str) -> dict[str, Any] | None:
    # no timestamps in the files, so that the same results write the same figures
    return {"Date": None} if fmt == "svg" else None
