"""Each renderer returns a figure with the expected series and labelled axes (the info, not the pixels)."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis import (
    from_study,
    pareto_table,
    plot_accuracy_vs_cost,
    plot_latency_vs_cost,
    plot_paper,
    plot_paper_speed,
    plot_width_curves,
    save_figure,
    speed_rank_correlation,
)
from profiler.cpu import detect_cpu
from tests.analysis.helpers import LONG_CPU, MIXED, T, assert_title_fits, make_study


def labels(ax: Axes) -> list[str]:
    """Legend labels, sorted (matplotlib lists plain lines before error-bar containers)."""
    return sorted(ax.get_legend_handles_labels()[1])


def series(ax: Axes) -> dict[str, tuple[list[float], list[float]]]:
    """Label -> (x, y) of every labelled line and error-bar series."""
    out = {c.get_label(): c.lines[0] for c in ax.containers if not c.get_label().startswith("_")}
    out |= {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    return {k: (list(map(float, v.get_xdata())), list(map(float, v.get_ydata()))) for k, v in out.items()}


def only_axes(fig: Figure) -> Axes:
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    return fig.axes[0]


def assert_labelled(ax: Axes) -> None:
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


@pytest.fixture(scope="module")
def trials() -> object:
    return from_study(make_study(MIXED)).trials


def test_accuracy_vs_cost_one_series_per_family_plus_front_and_budget(trials: object) -> None:
    ax = only_axes(plot_accuracy_vs_cost(trials, budget=60.0))  # type: ignore[arg-type]
    assert labels(ax) == sorted(["mobilenet", "mobilenetv2", "shufflenet", "Pareto front", "budget 60 M", "searched", "paper preset"])
    assert_labelled(ax)
    assert "multiply-adds" in ax.get_xlabel() and "motion" in ax.get_ylabel()
    s = series(ax)
    front = pareto_table(trials)  # type: ignore[arg-type]
    assert s["Pareto front"][0] == pytest.approx(list(front["macs"] / 1e6))
    assert s["Pareto front"][1] == list(front["accuracy"])
    assert s["budget 60 M"][0] == [60.0, 60.0]
    # the pruned shufflenet 1.0x and the rejected mobilenet 2.0x are not drawn; two seeds are one point
    assert s["mobilenet"][1] == [42.0, 55.0] and s["mobilenetv2"][1] == [30.0] and s["shufflenet"][1] == [50.0]


def test_accuracy_vs_cost_without_budget_or_front_and_on_given_axes(trials: object) -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_accuracy_vs_cost(trials, cost="params", front=False, ax=ax) is fig  # type: ignore[arg-type]
    assert labels(ax) == ["mobilenet", "mobilenetv2", "paper preset", "searched", "shufflenet"]
    assert ax.get_xlabel() == "parameters (M)"


def test_width_curves_one_curve_per_family_and_the_threshold(trials: object) -> None:
    ax = only_axes(plot_width_curves(trials))  # type: ignore[arg-type]
    assert labels(ax) == ["below 0.5x", "mobilenet", "mobilenetv2", "shufflenet", "width 0.5x"]
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "mean ± sd over up to 2 runs"
    assert_labelled(ax)
    assert ax.get_xlabel() == "width multiplier"
    s = series(ax)
    assert s["width 0.5x"][0] == [0.5, 0.5]
    assert s["mobilenet"] == ([0.5, 1.0], [42.0, 55.0])


def test_latency_vs_cost_series_and_printed_rank_correlation() -> None:
    study = make_study(
        [
            T("mobilenet", 0.5, 40.0, latency_ms=50.0),
            T("mobilenet", 1.0, 50.0, latency_ms=40.0),
            T("shufflenet", 0.5, 45.0, latency_ms=90.0),
            T("shufflenet", 1.0, None, feasible=False, latency_ms=70.0),  # rejected after timing: still a speed point
            T("mobilenetv2", 1.0, 50.0),  # not timed
        ]
    )
    df = from_study(study).trials
    ax = only_axes(plot_latency_vs_cost(df))
    assert labels(ax) == ["mobilenet", "shufflenet"]
    assert_labelled(ax)
    assert "latency" in ax.get_ylabel()
    rho = speed_rank_correlation(df)
    assert rho.n == 4
    assert any(f"ρ = {rho.rho:.2f} (n = 4)" in t.get_text() for t in ax.texts)
    assert any("timed on: a CPU not recorded" in t.get_text() for t in ax.texts)  # said nothing of the machine
    df["cpu"] = "AMD EPYC (AVX2: avx2)"
    assert any("timed on: AMD EPYC (AVX2: avx2)" in t.get_text() for t in only_axes(plot_latency_vs_cost(df)).texts)


def test_latencies_measured_by_analyze_record_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from analysis.measure import measure_latencies

    monkeypatch.setattr("profiler.latency.measure_latency", lambda *a, **k: types.SimpleNamespace(median_ms=12.0, threads=2))
    df = from_study(make_study([T("mobilenet", 0.5, 40.0, latency_ms=50.0), T("mobilenet", 1.0, 50.0)])).trials
    df["cpu"] = ["the search's CPU", None]
    out, note = measure_latencies(df, progress=False)
    assert out["latency_ms"].tolist() == [50.0, 12.0] and out["cpu"][0] == "the search's CPU"
    assert out["cpu"][1].endswith(detect_cpu().describe()) and "measured by e3d analyze on" in note


def test_latency_vs_cost_with_nothing_timed_says_so(trials: object) -> None:
    ax = only_axes(plot_latency_vs_cost(trials))  # type: ignore[arg-type]
    assert labels(ax) == [] and any("no latency measured" in t.get_text() for t in ax.texts)


def test_paper_figure_puts_results_beside_each_dataset(trials: object) -> None:
    fig = plot_paper(results=trials, budget=60.0, paper_budget=60.0)  # type: ignore[arg-type]
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["your results", "Table 8: Kinetics-600", "Table 8: Jester", "Table 8: UCF-101"]
    five = sorted(["mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "squeezenet", "Pareto front", "budget 60 M"])
    for ax in fig.axes[1:]:
        assert labels(ax) == five
        assert_labelled(ax)
    assert "Kinetics-600" in fig.axes[1].get_ylabel()
    assert all(ax.get_xscale() == "log" for ax in fig.axes), "the results panel reads like Table 8's"
    width = plot_paper(kind="width", datasets=["jester"])
    assert len(width.axes) == 1 and "width 0.5x" in labels(width.axes[0]) and len(labels(width.axes[0])) == 7
    with pytest.raises(ValueError, match="kind"):
        plot_paper(kind="pie")


def test_paper_speed_one_panel_per_platform() -> None:
    fig = plot_paper_speed()
    assert [ax.get_title() for ax in fig.axes] == ["Table 8: Titan Xp", "Table 8: Jetson TX2"]
    for ax in fig.axes:
        assert len(labels(ax)) == 5 and any("n = 17" in t.get_text() for t in ax.texts)
        assert_labelled(ax)


def test_save_figure_writes_png_and_svg(tmp_path: Path, trials: object) -> None:
    paths = save_figure(plot_width_curves(trials), tmp_path / "out", "w")  # type: ignore[arg-type]
    assert [p.name for p in paths] == ["w.png", "w.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:500]


def test_a_single_point_front_is_drawn_and_searched_points_look_different() -> None:
    df = from_study(make_study([T("mobilenet", 0.5, 40.0), T("shufflenet", 0.5, 45.0, source="baseline")])).trials
    ax = only_axes(plot_accuracy_vs_cost(df))
    front = next(ln for ln in ax.get_lines() if ln.get_label() == "Pareto front")
    assert len(front.get_xdata()) == 1 and front.get_marker() == "o" and float(front.get_markersize()) > 0, "a lone front point is ringed"
    markers = {c.get_label().lstrip("_"): c.lines[0].get_marker() for c in ax.containers}
    assert markers["mobilenet"] != markers["shufflenet"], "searched and preset markers differ"
    alone = only_axes(plot_accuracy_vs_cost(df[df["source"] == "search"]))
    assert "searched" not in labels(alone), "the marker key appears only when both kinds are shown"


def _boxes(fig: Figure) -> list[tuple[object, object]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [
        (ax.get_window_extent(renderer), [t.get_window_extent(renderer) for t in ax.texts if t.get_text().endswith("x")]) for ax in fig.axes
    ]


@pytest.mark.parametrize("kind", ["accuracy", "speed"])
def test_point_labels_neither_overlap_nor_leave_the_axes(kind: str) -> None:
    fig = plot_paper(datasets=["kinetics600", "jester", "ucf101"]) if kind == "accuracy" else plot_paper_speed()
    for axes_box, texts in _boxes(fig):
        assert len(texts) == 17
        for i, a in enumerate(texts):
            assert axes_box.x0 - 1 <= a.x0 and a.x1 <= axes_box.x1 + 1, "a label is clipped at the axes' edge"  # type: ignore[attr-defined]
            overlapping = [b for b in texts[i + 1 :] if a.overlaps(b)]  # type: ignore[attr-defined]
            assert not overlapping, "two point labels overlap"


def test_legends_sit_below_the_axes(trials: object) -> None:
    fig = plot_accuracy_vs_cost(trials, budget=60.0)  # type: ignore[arg-type]
    ((axes_box, _),) = _boxes(fig)
    legend = fig.axes[0].get_legend()
    assert legend is not None
    assert legend.get_window_extent().y1 <= axes_box.y0 + 1  # type: ignore[attr-defined]


def test_log_axes_read_as_plain_numbers() -> None:
    fig = plot_paper(datasets=["kinetics600"])
    _boxes(fig)  # draws the figure, which sets the tick labels
    texts = [t.get_text() for t in fig.axes[0].get_xticklabels(which="both") if t.get_text()]
    assert "100" in texts and not [t for t in texts if "10^" in t or "times" in t], texts


def test_front_vs_presets_draws_means_with_sample_sd_and_each_groups_front() -> None:
    import pandas as pd

    from analysis.plots import plot_front_vs_presets

    runs = [
        ("search #3", "candidate", 60.0, 62.0, 80.0),
        ("search #9", "candidate", 71.0, 73.0, 300.0),
        ("preset mobilenetv2 0.2x", "preset", 41.0, 43.0, 60.0),
        ("preset mobilenetv2 0.45x", "preset", 31.0, 33.0, 120.0),  # dominated by the 0.2x: not on the presets' front
        ("preset shufflenet 1x", "preset", 65.0, 67.0, 190.0),
    ]
    rows = [
        {"label": label, "role": role, "seed": seed, "test_accuracy": acc, "macs_m": macs}
        for label, role, a1, a2, macs in runs
        for seed, acc in ((1, a1), (2, a2))
    ]
    fig = plot_front_vs_presets(pd.DataFrame(rows), chance=10.0, title="t")
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(names) == sorted(
        ["searched", "mobilenetv2", "shufflenet", "front of searched (means)", "front of presets (means)", "reference (10%, 1000 M)"]
    )  # one entry per family
    steps = {line.get_label(): list(zip(line.get_xdata(), line.get_ydata(), strict=True)) for line in ax.get_lines()}
    assert steps["front of searched (means)"] == [(80.0, 61.0), (300.0, 72.0), (1000.0, 72.0)]
    assert steps["front of presets (means)"] == [(60.0, 42.0), (190.0, 66.0), (1000.0, 66.0)]
    # error bars are the sample sd of two seeds: sqrt(2) for a 2-point gap
    bars = [c for c in ax.containers if c.has_yerr]
    segs = [seg for c in bars for seg in c.lines[2][0].get_segments()]
    assert len(segs) == 5 and all(abs((s[1][1] - s[0][1]) / 2 - 2**0.5) < 1e-9 for s in segs)
    empty = plot_front_vs_presets(pd.DataFrame(columns=["label", "role", "seed", "test_accuracy", "macs_m"]), chance=10.0)
    assert [t.get_text() for t in empty.axes[0].texts] == ["no final runs yet"]


def test_a_long_title_is_wrapped_between_words_to_fit_the_figure(trials: object) -> None:
    """With this machine's CPU name the date was cut off ("...; drawn 2026-1")."""
    import datetime

    from analysis.load import trained_on
    from analysis.plots import wrap_title

    where = trained_on(trials.assign(cpu=LONG_CPU))  # type: ignore[attr-defined]
    date = f"drawn {datetime.date.today():%Y-%m-%d}"
    wrapped = wrap_title(f"study: accuracy vs multiply-adds\n{where}", chars=40)
    assert all(len(line) <= 40 for line in wrapped.split("\n"))
    assert wrapped.replace("\n", " ").endswith(date) and date.split()[1] in wrapped.split()  # the date whole, not split at a hyphen
    fig = plot_accuracy_vs_cost(trials, title=f"mobilenetv2 study: accuracy vs multiply-adds\n{where}")  # type: ignore[arg-type]
    ax = only_axes(fig)
    assert date in ax.get_title().replace("\n", " ")
    assert_title_fits(fig, ax.title)
