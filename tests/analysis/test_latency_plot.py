"""The predicted-vs-measured figure of the latency predictor's bench."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.latency import plot_predicted_vs_measured
from analysis.plots import save_figure
from profiler.latency_table import Comparison


def rows() -> list[Comparison]:
    out = []
    for mode, scale in (("eager", 1.0), ("optimized", 0.5)):
        out += [
            Comparison("a", "random", "mobilenet", mode, 10, 10.0 * scale, 10.0 * scale),
            Comparison("b", "random", "shufflenet", mode, 20, 22.0 * scale, 20.0 * scale),
            Comparison("c", "table8", "mobilenet", mode, 40, 24.0 * scale, 30.0 * scale),
            Comparison("d", "table8", "resnet18", mode, 30, 48.0 * scale, 40.0 * scale),
            Comparison("e", "random", "mobilenet", mode, 50, None, None),
        ]
    return out


def test_one_panel_per_path_with_its_numbers(tmp_path: Path) -> None:
    fig = plot_predicted_vs_measured(rows(), title="test")
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax, mode in zip(axes, ("eager", "optimized"), strict=True):
        title = ax.get_title()
        assert title.startswith(f"{mode}: Spearman 1.000, MAPE 12.5%, 50% within 10%") and "4 networks, 1 unpriced" in title
        assert "macs alone: Spearman 0.800" in title
        labels = ax.get_legend_handles_labels()[1]
        assert {"mobilenet (random)", "mobilenet (Table 8)", "shufflenet (random)", "resnet18 (Table 8)", "+-10%"} <= set(labels)
        points = sum(np.asarray(c.get_offsets()).shape[0] for c in ax.collections if c.get_label() != "+-10%")
        assert points == 4
    (path,) = save_figure(fig, tmp_path, "scatter", formats=("png",))
    assert path.stat().st_size > 1000
