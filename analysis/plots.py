"""Thin matplotlib renderers over the computations of :mod:`analysis.pareto` and :mod:`analysis.findings`.

Every function takes trial rows (a study's, or the paper's from :func:`analysis.paper.paper_frame`),
draws on ``ax`` when given (else on a new figure) and returns the figure. Figures are plain
``matplotlib.figure.Figure`` objects, independent of pyplot and of any interactive backend; save one
with :func:`save_figure`. Each series (a family, the Pareto front, the budget, the 0.5x threshold)
carries a legend label, so a test can count them. Legends sit below the axes, searched candidates
are diamonds and paper presets circles, points on the Pareto front are ringed, and point labels
(``annotate``) are placed where they overlap neither another label nor a point.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import LogFormatter

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


TITLE_EM = 0.55
"""Average width of a title character in ems (DejaVu Sans, matplotlib's font), for wrapping titles."""


def wrap_title(text: str, *, chars: int) -> str:
    """``text`` with each of its lines wrapped at ``chars`` characters, between words only (a date, a name
    with hyphens stays whole)."""
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False, break_long_words=False) for line in text.split("\n"))


def title_points(fontsize: float | str) -> float:
    """A font size (points, or a name such as ``large``) in points."""
    return float(FontProperties(size=fontsize).get_size_in_points())


def title_chars(inches: float, points: float) -> int:
    """How many title characters of ``points`` size fit in ``inches`` (at least 20)."""
    return max(20, int(inches * 72 / (TITLE_EM * points)))


def set_title(ax: Axes, text: str, *, fontsize: float | None = None) -> None:
    """Give ``ax`` the title ``text`` (default size: matplotlib's), wrapped to the axes' width (:func:`wrap_title`):
    a long CPU name from :func:`analysis.load.trained_on` cut the date off at the figure's edge."""
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    points = title_points(fontsize if fontsize is not None else rcParams["axes.titlesize"])
    ax.set_title(wrap_title(text, chars=title_chars(ax.get_position().width * fig.get_figwidth(), points)), fontsize=points)


def set_suptitle(fig: Figure, text: str, *, fontsize: float | None = None) -> None:
    """Give ``fig`` the title ``text`` (default size: matplotlib's), wrapped to the figure's width (:func:`wrap_title`)."""
    points = title_points(fontsize if fontsize is not None else rcParams["figure.titlesize"])
    fig.suptitle(wrap_title(text, chars=title_chars(0.95 * fig.get_figwidth(), points)), fontsize=points)


def _color(family: Any) -> str:
    return FAMILY_COLORS.get(str(family), "black")


SEARCHED = ("search", "retry")
"""Sources of searched candidates; every other source (baseline, sweep, paper) is a paper preset."""
_MARKERS = {True: "D", False: "o"}
"""Searched candidates are diamonds, paper presets circles."""
_LABEL_SIZE = 7
_BOX = {"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.75}
"""A light background behind point labels, so that a line crossing one does not hide it."""
_OFFSETS = ((6, -11, "left"), (6, 4, "left"), (-6, -11, "right"), (-6, 4, "right"), (0, 7, "center"), (0, -18, "center"))
"""Where a point's label may go (points right, points up, alignment), tried in this order."""


def _legend(ax: Axes, *, title: str | None = None) -> None:
    """The legend below the axes, where it never hides a point."""
    n = len(ax.get_legend_handles_labels()[1])
    if n:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=min(3, n), fontsize=8, title=title, title_fontsize=8, frameon=False)


def _source_key(ax: Axes, kinds: set[bool]) -> None:
    """Legend entries for the marker shapes, when the axes show both searched and preset points."""
    if len(kinds) == 2:
        ax.plot([], [], ls="none", marker=_MARKERS[True], color="0.3", label="searched")
        ax.plot([], [], ls="none", marker=_MARKERS[False], color="0.3", label="paper preset")


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_points(ax: Axes, labels: Sequence[tuple[float, float, str, str]]) -> None:
    """Write each (x, y, text, colour) label next to its point, at the first of :data:`_OFFSETS`
    where it stays inside the axes and covers no point and no label placed before it (sizes are
    estimated in points from the font size, so call this after the axis scales are set)."""
    if not labels:
        return
    ax.autoscale_view()
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    box = ax.get_position()
    width, height = box.width * fig.get_figwidth() * 72, box.height * fig.get_figheight() * 72
    to_axes = ax.transScale + ax.transLimits
    where = [to_axes.transform((x, y)) * (width, height) for x, y, _, _ in labels]
    taken = [(px - 6, py - 6, px + 6, py + 6) for px, py in where]  # the markers and their front rings
    for (x, y, text, color), (px, py) in zip(labels, where, strict=True):
        w, h = 0.6 * _LABEL_SIZE * len(text), _LABEL_SIZE
        choice = None
        for dx, dy, ha in _OFFSETS:
            left = px + dx - {"left": 0.0, "right": w, "center": w / 2}[ha]
            rect = (left, py + dy, left + w, py + dy + h)
            inside = rect[0] >= 0 and rect[2] <= width and rect[1] >= 0 and rect[3] <= height
            if inside and not any(_overlaps(rect, t) for t in taken):
                choice = (dx, dy, ha, rect)
                break
        if choice is None:  # crowded: the first place that stays inside, else the default
            dx, dy, ha = next((o for o in _OFFSETS if 0 <= px + o[0] - (w if o[2] == "right" else 0) <= width - w), _OFFSETS[0])
            choice = (dx, dy, ha, (px + dx, py + dy, px + dx + w, py + dy + h))
        dx, dy, ha, rect = choice
        taken.append(rect)
        ax.annotate(
            text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va="bottom", fontsize=_LABEL_SIZE, color=color, bbox=_BOX
        )


def _log_if_wide(ax: Axes, values: pd.Series, logx: bool | None) -> None:
    ax.margins(x=0.08)
    positive = values[values > 0]
    if logx is None:
        logx = len(positive) > 1 and positive.max() / positive.min() > 8
    if logx:
        ax.set_xscale("log")
        # plain numbers (200, not 2 x 10^2); minor ticks are labelled only when few decades show
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


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
    searched = points["source"].isin(SEARCHED)
    labels = _plot_families(ax, points, searched, cost=cost, scale=info.scale, annotate=annotate)
    _source_key(ax, set(searched))
    if front and len(points):
        _plot_front(ax, points[points["on_front"]], cost=cost, scale=info.scale)
    if budget is not None:
        ax.axvline(budget, color="black", ls="--", lw=1, label=f"budget {budget:g} {info.unit}".rstrip())
    if not len(points):
        _empty(ax, "no finished trials")
    _log_if_wide(ax, x, logx)
    _label_points(ax, labels)
    ax.set_xlabel(info.label)
    ax.set_ylabel(_accuracy_label(df))
    set_title(ax, title or f"accuracy vs {info.label.split(' (')[0]}")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return fig


def _plot_families(
    ax: Axes, points: pd.DataFrame, searched: pd.Series, *, cost: str, scale: float, annotate: bool
) -> list[tuple[float, float, str, str]]:
    """Each family's points (:func:`_plot_family`); returns their width labels when ``annotate``, else none."""
    repeated = bool((points["n"] > 1).any())
    labels: list[tuple[float, float, str, str]] = []
    for family, g in points.groupby("family", sort=True):
        _plot_family(ax, family, g, searched[g.index], cost=cost, scale=scale, repeated=repeated)
        if annotate:
            labels += _width_labels(g[cost] * scale, g["accuracy"], g["width_mult"], family)
    return labels


def _plot_family(ax: Axes, family: Any, g: pd.DataFrame, searched: pd.Series, *, cost: str, scale: float, repeated: bool) -> None:
    """One family's presets, then its searched candidates, in their markers, under one legend entry
    (error bars of the sd over repeated trials when any architecture was ``repeated``)."""
    named = False
    for kind in (False, True):
        part = g[searched == kind]
        if not len(part):
            continue
        gx = part[cost] * scale
        yerr = part["accuracy_std"].fillna(0.0) if repeated else None
        label = str(family) if not named else "_" + str(family)
        ax.errorbar(gx, part["accuracy"], yerr=yerr, fmt=_MARKERS[kind], color=_color(family), label=label, capsize=2, alpha=0.85)
        named = True


def _plot_front(ax: Axes, f: pd.DataFrame, *, cost: str, scale: float) -> None:
    """The Pareto front ``f`` as a staircase (the best accuracy reachable at each cost) through ringed points."""
    ax.step(
        f[cost] * scale,
        f["accuracy"],
        where="post",
        color="black",
        lw=1.2,
        label="Pareto front",
        marker="o",
        ms=10,
        mfc="none",
        zorder=3,
    )


def _width_labels(xs: pd.Series, ys: pd.Series, widths: pd.Series, family: Any) -> list[tuple[float, float, str, str]]:
    """Each point's width multiplier as a label (x, y, text, colour) for :func:`_label_points`."""
    return [(xi, yi, f"{w:g}x", _color(family)) for xi, yi, w in zip(xs, ys, widths, strict=True)]


def plot_width_curves(df: pd.DataFrame, *, threshold: float = WIDTH_THRESHOLD, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Accuracy against width multiplier, one curve per family (:func:`analysis.findings.width_curves`):
    the mean over repeated trials with their standard deviation as error bars, and the ``threshold``
    (0.5x) below which the paper saw accuracy collapse marked by a vertical line and shading."""
    fig, ax = _axes(ax)
    curves = width_curves(df)
    for family, g in curves.groupby("family", sort=True):
        ax.errorbar(
            g["width_mult"],
            g["accuracy_mean"],
            yerr=g["accuracy_std"].fillna(0.0),
            fmt="o-",
            capsize=3,
            color=_color(family),
            label=str(family),
        )
    lo = min(float(curves["width_mult"].min()), threshold) if len(curves) else threshold
    ax.axvspan(lo * 0.9, threshold, color="0.85", alpha=0.5, lw=0, label=f"below {threshold:g}x")
    ax.axvline(threshold, color="black", ls=":", lw=1.2, label=f"width {threshold:g}x")
    if not len(curves):
        _empty(ax, "no finished trials")
    ax.set_xlabel("width multiplier")
    ax.set_ylabel(_accuracy_label(df))
    set_title(ax, title or "accuracy vs width multiplier")
    ax.grid(True, alpha=0.3)
    n = int(curves["n"].max()) if len(curves) else 1
    _legend(ax, title=f"mean ± sd over up to {n} runs" if n > 1 else None)
    return fig


def timed_on(df: pd.DataFrame, latency: str = "latency_ms") -> str | None:
    """``timed on: <CPU>`` for the measured latencies of ``df`` (its ``cpu`` column, which the search's workers and
    ``e3d analyze --measure-latency`` fill); None for another latency column (the paper's, of its own platforms)."""
    if latency != "latency_ms":
        return None
    cpus = sorted({str(c) for c in df.loc[df[latency].notna(), "cpu"].dropna()}) if "cpu" in df else []
    if not cpus:
        return "timed on: a CPU not recorded"
    return "timed on: " + "; ".join(cpus[:2]) + (f" and {len(cpus) - 2} more" if len(cpus) > 2 else "")


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
    labels: list[tuple[float, float, str, str]] = []
    for family, g in arch.groupby("family", sort=True):
        gx, gy = g[cost] * info.scale, g[latency] * linfo.scale
        ax.scatter(gx, gy, color=_color(family), label=str(family), alpha=0.85)
        if annotate:
            labels += _width_labels(gx, gy, g["width_mult"], family)
    corr = speed_rank_correlation(df, cost=cost, latency=latency)
    if len(arch):
        rho = "undefined" if math.isnan(corr.rho) else f"{corr.rho:.2f}"
        where = timed_on(df, latency)
        text = f"Spearman ρ = {rho} (n = {corr.n})" + (f"\n{where}" if where else "")
        ax.text(0.03, 0.96, text, transform=ax.transAxes, va="top", fontsize=9 if where is None else 7)
        _legend(ax)
    else:
        _empty(ax, "no latency measured")
    _log_if_wide(ax, arch[cost] * info.scale, logx)
    _label_points(ax, labels)
    ax.set_xlabel(info.label)
    ax.set_ylabel(linfo.label)
    set_title(ax, title or f"latency vs {info.label.split(' (')[0]}")
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
    fig = Figure(figsize=(4.6 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, df, line, annotate) in zip(axes, panels, strict=True):
        if kind == "accuracy":  # log x on every panel, so that the results read like Table 8's
            plot_accuracy_vs_cost(df, cost=cost, budget=line, annotate=annotate, title=title, logx=True, ax=ax)
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
    fig = Figure(figsize=(4.6 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, df, c, lat, annotate) in zip(axes, panels, strict=True):
        plot_latency_vs_cost(df, cost=c, latency=lat, annotate=annotate, title=title, logx=True, ax=ax)
    return fig


def plot_front_vs_presets(runs: pd.DataFrame, *, chance: float, title: str | None = None, ax: Axes | None = None) -> Figure:
    """The decisive benchmark's final runs (``bench.search_vs_presets``: ``label``, ``role`` candidate or
    preset, ``seed``, ``test_accuracy``, ``macs_m``): each network's test accuracy as mean ± sample sd
    over its seeds (:func:`search.stats.summarize`) against its multiply-adds, searched networks as black
    diamonds and presets as circles in their family's colour, each group's front of means as a step line
    (the staircase whose area to the reference point is the hypervolume), and that reference point."""
    from search.front import REF_MACS, pareto_front
    from search.stats import summarize

    fig, ax = _axes(ax, figsize=(7.0, 4.6))
    if runs.empty:
        _empty(ax, "no final runs yet")
        return fig
    labels = []
    for role, name, style in (("candidate", "searched", "-"), ("preset", "presets", "--")):
        means = []
        for label, g in runs[runs["role"] == role].groupby("label", sort=False):
            s, macs = summarize(g["test_accuracy"]), float(g["macs_m"].iloc[0])
            family = "searched" if role == "candidate" else str(label).split()[1]
            color = "black" if role == "candidate" else _color(family)
            yerr = s.sd if s.n > 1 else None
            ax.errorbar(macs, s.mean, yerr=yerr, fmt=_MARKERS[role == "candidate"], color=color, ms=5, capsize=2, label=family)
            means.append((s.mean, macs))
            labels.append((macs, s.mean, str(label).removeprefix("preset ").removeprefix("search "), color))
        front = pareto_front(means)
        if front:
            xs = [m for _, m in front] + [REF_MACS]
            ys = [a for a, _ in front] + [front[-1][0]]
            ax.step(xs, ys, where="post", ls=style, color="0.2" if role == "candidate" else "0.55", lw=1, label=f"front of {name} (means)")
    ax.plot([REF_MACS], [chance], marker="x", color="0.3", ls="none", label=f"reference ({chance:.0f}%, {REF_MACS:g} M)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))  # one entry per family
    _log_if_wide(ax, runs["macs_m"], None)
    _label_points(ax, labels)
    ax.set_xlabel("multiply-adds per 16x112x112 clip (M)")
    ax.set_ylabel("test top-1 (%), mean ± sample sd")
    ax.legend(unique.values(), unique.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3, fontsize=8, frameon=False)
    if title:
        set_title(ax, title, fontsize=9)
    return fig


def save_figure(fig: Figure, out: Path, stem: str, *, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``fig`` as ``out/stem.<format>`` for each format; returns the paths."""
    import io

    from space.files import write_bytes

    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        buffer = io.BytesIO()  # drawn in memory, then written to a temporary name and renamed into place
        fig.savefig(buffer, format=fmt, dpi=150 if fmt == "png" else None, metadata=_metadata(fmt))
        paths.append(write_bytes(path, buffer.getvalue()))
    return paths


def _metadata(fmt: str) -> dict[str, Any] | None:
    # no timestamps in the files, so that the same results write the same figures
    return {"Date": None} if fmt == "svg" else None
