"""The latency predictor's accuracy as a figure: predicted vs measured, one panel per inference path.

A thin renderer over :func:`profiler.latency_table.compare` rows (the numbers come from
:func:`profiler.latency_table.accuracy`); save it with :func:`analysis.plots.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from analysis.plots import FAMILY_COLORS, set_suptitle, set_title
from profiler.latency_table import Comparison, accuracy

MARKERS = {"random": "o", "table8": "^"}
"""Random candidates of the space are circles, the Table 8 presets triangles."""


def plot_predicted_vs_measured(rows: Sequence[Comparison], *, title: str | None = None) -> Figure:
    """Log-log scatter of predicted vs measured ms per batch, a panel per path, with the identity line,
    a +-10% band and each panel's Spearman / MAPE / share within 10% in its title. Unpriced rows are
    left out (their count is in the title)."""
    modes = list(dict.fromkeys(r.mode for r in rows))
    fig = Figure(figsize=(5.2 * max(len(modes), 1), 5.0), layout="constrained")
    axes = fig.subplots(1, max(len(modes), 1), squeeze=False)[0]
    for ax, mode in zip(axes, modes, strict=False):
        panel = [r for r in rows if r.mode == mode and r.predicted_ms is not None and r.measured_ms is not None]
        for family in dict.fromkeys(r.family for r in panel):
            for group, marker in MARKERS.items():
                pts = [r for r in panel if r.family == family and r.group == group]
                if pts:
                    label = f"{family} ({'Table 8' if group == 'table8' else 'random'})"
                    ax.scatter(
                        [r.measured_ms for r in pts],
                        [r.predicted_ms for r in pts],
                        s=18,
                        marker=marker,
                        color=FAMILY_COLORS.get(family, "black"),
                        label=label,
                    )
        values = [v for r in panel for v in (r.measured_ms, r.predicted_ms) if v is not None]
        if values:
            lo, hi = min(values) / 1.2, max(values) * 1.2
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="predicted = measured")
            ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="gray", alpha=0.2, label="+-10%")
            ax.set_xscale("log")
            ax.set_yscale("log")
        a = accuracy([r for r in rows if r.mode == mode])
        set_title(
            ax,
            f"{mode}: Spearman {a.spearman:.3f}, MAPE {a.mape:.1f}%, {a.within_10:.0f}% within 10%\n"
            f"({a.networks} networks, {a.unpriced} unpriced; macs alone: Spearman {a.macs_spearman:.3f})",
            fontsize=9,
        )
        ax.set_xlabel("measured ms per batch")
        ax.set_ylabel("predicted ms per batch")
        ax.legend(fontsize=6, loc="upper left")
    if title:
        set_suptitle(fig, title, fontsize=8)
    return fig
