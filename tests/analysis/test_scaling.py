"""Scaling curves as data (curves, slopes, expansion steps), then the figure and the summary."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.axes import Axes

from analysis.load import AnalysisError
from analysis.scaling import (
    PATH_CURVE,
    ScaleRun,
    axis_gains,
    compare_studies,
    comparison_markdown,
    curves,
    load_scale,
    plot_curves,
    plot_gains,
    slope,
    slopes,
    step_gains,
    summary_markdown,
    versus_table,
    write_comparison,
    write_report,
)
from tests.analysis.helpers import LONG_CPU, assert_title_fits
from tests.analysis.scale_runs import expand_run, row, save_run, versus_run


def axes_run() -> pd.DataFrame:
    """Width gains 4 points per doubling of the cost, depth 2 (exactly linear in log2 macs)."""
    rows = [row("base/0/base", "base", "base", 50e6, 40.0)]
    for r in (0.5, 2.0, 4.0):
        rows.append(row(f"axes/0/width@{r:g}", "axes", "width", 50e6 * r, 40.0 + 4 * math.log2(r)))
        rows.append(row(f"axes/0/depth@{r:g}", "axes", "depth", 50e6 * r, 40.0 + 2 * math.log2(r)))
    return pd.DataFrame(rows)


def test_the_slope_is_top1_per_doubling_of_multiply_adds() -> None:
    assert slope(pd.Series([1e6, 2e6, 8e6]), pd.Series([10.0, 13.0, 19.0])) == pytest.approx(3.0)
    assert math.isnan(slope(pd.Series([1e6, 1e6]), pd.Series([10.0, 12.0])))
    assert math.isnan(slope(pd.Series([1e6, 2e6]), pd.Series([10.0, math.nan])))


def test_each_axis_is_one_curve_from_the_base_and_the_steepest_comes_first() -> None:
    points = axes_run()
    c = curves(points)
    assert list(c) == ["width", "depth"]
    assert list(c["width"]["macs"]) == [25e6, 50e6, 100e6, 200e6]  # the base sits on every curve
    table = slopes(points)
    assert list(table["curve"]) == ["width", "depth"]
    assert list(table["slope_per_doubling"]) == [pytest.approx(4.0), pytest.approx(2.0)]
    assert list(table["points"]) == [4, 4]
    base_only = points[points["mode"] == "base"]  # what a run whose every other point failed leaves
    assert slopes(base_only).empty and "slope_per_doubling" in slopes(base_only)  # was KeyError: no curve, no column


def test_an_expansion_is_a_path_and_steps_measured_from_it() -> None:
    points, path = expand_run()
    gains = step_gains(points, path)
    assert list(zip(gains["step"], gains["axis"], gains["chosen"], strict=True)) == [
        (1, "depth", True), (1, "width", False), (2, "depth", False), (2, "width", True)
    ]  # fmt: skip
    assert list(gains["gain_per_doubling"]) == [pytest.approx(6.0), pytest.approx(3.0), pytest.approx(1.0), pytest.approx(6.0)]
    table = slopes(points, path).set_index("curve")
    assert table.loc[PATH_CURVE, "slope_per_doubling"] == pytest.approx(6.0)
    assert table.loc["width (steps)", "slope_per_doubling"] == pytest.approx(4.5)
    assert table.loc["depth (steps)", "slope_per_doubling"] == pytest.approx(3.5)
    ranges = table[["macs_min_m", "macs_max_m", "accuracy_min", "accuracy_max"]].to_dict("index")
    assert ranges["width (steps)"] == {"macs_min_m": 50.0, "macs_max_m": 200.0, "accuracy_min": 40.0, "accuracy_max": 52.0}  # min was 43
    assert ranges["depth (steps)"] == {"macs_min_m": 50.0, "macs_max_m": 200.0, "accuracy_min": 40.0, "accuracy_max": 47.0}
    assert list(curves(points, path)) == [PATH_CURVE]


def legend(ax: Axes) -> list[str]:
    box = ax.get_legend()
    assert box is not None
    return [t.get_text() for t in box.get_texts()]


def test_the_figure_has_a_log_x_axis_and_a_labelled_series_per_curve() -> None:
    fig = plot_curves(axes_run().assign(cpu="Some CPU"))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert f"trained on Some CPU; drawn {datetime.date.today():%Y-%m-%d}" in ax.get_title()  # was no CPU nor date (notebook 04)
    assert legend(ax) == ["base", "width", "depth"]
    points, path = expand_run()
    labels = legend(plot_curves(points, path).axes[0])
    assert sorted(labels) == sorted([PATH_CURVE, "depth (step)", "width (step)", "base"])


def test_a_run_folder_gives_the_figure_and_the_summary(tmp_path: Path) -> None:
    save_run(ScaleRun(*expand_run()), tmp_path)
    base = json.dumps({"family": "shufflenet", "width_mult": 0.5})
    settings = {"base": base, "mode": "expand", "axes": ["width", "depth"], "proxy_clip": [16, 48, 48], "notes": ["step 1: no frames"]}
    (tmp_path / "scale.json").write_text(json.dumps(settings))
    paths = write_report(tmp_path)
    assert paths["curves"].read_bytes()[:4] == b"\x89PNG"
    text = paths["summary"].read_text()
    assert "Base: shufflenet at width 0.5; mode `expand`" in text and "- note: step 1: no frames\n" in text
    assert "| expansion path | 3 | 50.00 | 200.00 | 40.00 | 52.00 | 6.00 |" in text
    assert "## Every expansion step" in text and text.count("\n| expand/") == 4
    assert summary_markdown(load_scale(tmp_path)) == text
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_folder_without_points_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match=r"holds no points\.csv"):
        load_scale(tmp_path)
    pd.DataFrame({"point": ["x"]}).to_csv(tmp_path / "points.csv", index=False)
    with pytest.raises(AnalysisError, match="lacks the columns mode, axis, macs, accuracy_mean"):
        load_scale(tmp_path)


def replace(p: Path, old: str, new: str) -> None:
    """Write ``p`` again with its first ``old`` replaced by ``new`` (which must be there)."""
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda f: (f / "scale.json").write_text("garbage"), r"scale\.json is not readable JSON"),  # was JSONDecodeError
        (lambda f: (f / "scale.json").write_text('{"a": 1}'), r"not the settings of an e3d scale run"),  # was accepted
        (lambda f: (f / "points.csv").write_text(""), r"points\.csv is empty"),  # was EmptyDataError
        (lambda f: (f / "points.csv").write_text((f / "points.csv").read_text()[:150]), r"row 2 has 10 of 12 fields \(cut short\?\)"),
        (lambda f: (f / "points.csv").write_text((f / "points.csv").read_text().replace(",base,0,base,", ",,0,base,")), "row 2 lacks mode"),
        (lambda f: (f / "path.csv").write_text((f / "path.csv").read_text().replace(",52.0,", ",oops,")), r"accuracy_mean 'oops' is not"),
        (lambda f: replace(f / "points.csv", "width,{},100000000.0,", "width,{},-100000000.0,"), r"row 3: macs -1e\+08 is not a positive"),
        (lambda f: replace(f / "points.csv", ",43.0,", ",143.0,"), r"points\.csv: row 3: accuracy_mean 143 is not 0-100"),
        (lambda f: replace(f / "path.csv", ",40.0,", ",-1.0,"), r"path\.csv: row 2: accuracy_mean -1 is not 0-100"),
        (lambda f: replace(f / "points.csv", "versus/2/width@2,", "expand/1/width,"), r"row 8: point 'expand/1/width' is there twice"),
        (lambda f: replace(f / "path.csv", "expand/2/width,", "expand/3/width,"), r"path\.csv: row 4: point 'expand/3/width' is not in"),
    ],
)
def test_a_damaged_run_folder_is_one_clear_error(tmp_path: Path, damage: Any, words: str) -> None:
    save_run(versus_run(), tmp_path)
    (tmp_path / "scale.json").write_text(json.dumps({"mode": "expand"}))
    load_scale(tmp_path)
    damage(tmp_path)  # a truncated points.csv was analysed as if whole
    with pytest.raises(AnalysisError, match=words):
        load_scale(tmp_path)


def test_the_path_is_compared_with_one_axis_alone_at_equal_cost_over_seeds() -> None:
    points, path = expand_run()
    versus = pd.DataFrame(
        [row("versus/1/width@1", "versus", "width only", 101e6, 41.0, 1), row("versus/2/width@2", "versus", "width only", 199e6, 51.5, 2)]
    )
    points = pd.concat([points, versus], ignore_index=True)
    table = versus_table(points, path)
    assert list(table["step"]) == [1, 2] and list(table["difference"]) == [pytest.approx(5.0), pytest.approx(0.5)]
    assert list(table["better"]) == ["path", "tie"]  # 5 points apart with sd 1 and 2 seeds each; 0.5 apart is noise
    assert table["p"].iloc[0] < 0.05 < table["p"].iloc[1]
    assert list(curves(points, path)) == ["width only", PATH_CURVE]
    one_seed = points.assign(seeds_done=1)
    assert list(versus_table(one_seed, path)["better"]) == ["n/a (one seed)"] * 2
    still = versus_table(points.assign(accuracy_sd=0.0), path.assign(accuracy_sd=0.0))
    assert list(still["better"]) == ["n/a (no spread)"] * 2  # was "path" at p = 0: seeds that agree are no test


def test_each_axis_gains_early_and_late_and_counts_its_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    run = versus_run()
    both_early = axis_gains(run).set_index("axis")
    assert both_early.loc["width", "early"] == pytest.approx(4.5) and math.isnan(both_early.loc["width", "late"])
    monkeypatch.setattr("analysis.scaling.EARLY", 1)
    gains = axis_gains(run).set_index("axis")  # step 1 from the base (40% at 50 M), step 2 from depth (46% at 100 M)
    assert list(gains.index) == ["depth", "width"]
    assert gains.loc["width", ["early", "late"]].tolist() == [pytest.approx(3.0), pytest.approx(6.0)]
    assert gains.loc["depth", ["early", "late"]].tolist() == [pytest.approx(6.0), pytest.approx(1.0)]
    assert gains[["tried", "chosen"]].to_dict("list") == {"tried": [2, 2], "chosen": [1, 1]}


def test_studies_are_compared_path_against_one_axis_alone() -> None:
    row_ = compare_studies({"a": versus_run()}).iloc[0].to_dict()
    assert row_ == {"study": "a", "path": "depth > width", "last": "200 M: 52.0%", "compared": 2, "ahead": 2, "path_wins": 1, "ties": 1,
                    "alone_wins": 0}  # fmt: skip
    points, path = expand_run()
    no_versus = compare_studies({"b": ScaleRun(points, path)}).iloc[0]
    assert (no_versus["compared"], no_versus["path_wins"]) == (0, 0)


def test_a_comparison_of_run_folders_writes_its_summary_and_figure(tmp_path: Path) -> None:
    for name in ("one", "two"):
        save_run(versus_run(), tmp_path / name)
    paths = write_comparison([tmp_path / "one", tmp_path / "two"], tmp_path / "out", command="e3d analyze --scale one two")
    assert paths["gains"].read_bytes()[:4] == b"\x89PNG"
    text = paths["summary"].read_text()
    assert "Made by `e3d analyze --scale one two`." in text
    assert "| a | depth > width |" not in text and text.count("| depth > width | 200 M: 52.0% | 2 | 2 | 1 | 1 | 0 |") == 2
    assert "| width | 4.50 / - (1 of 2) | 4.50 / - (1 of 2) |" in text
    assert text == comparison_markdown(
        {"one": load_scale(tmp_path / "one"), "two": load_scale(tmp_path / "two")}, command="e3d analyze --scale one two"
    )
    with pytest.raises(AnalysisError, match="same folder name"):
        write_comparison([tmp_path / "one", tmp_path / "one"], tmp_path / "out")
    assert "unfinished" not in text.lower()
    assert "trained on an unrecorded CPU" in plot_gains({"one": load_scale(tmp_path / "one")}).get_suptitle()  # was no CPU nor date


def test_a_comparison_says_which_studies_are_unfinished() -> None:
    half = versus_run()
    half.points.loc[half.points["step"] == 2, "seeds_done"] = 0
    text = comparison_markdown({"done": versus_run(), "half": half})  # was silent: the half-trained step counted
    assert "**Unfinished (half):** 4 of the 7 points planned so far have all 1 seed(s)" in text
    assert "(done)" not in text


def test_an_expansion_that_took_no_step_reports_the_base_alone(tmp_path: Path) -> None:
    """Stopped before its first step (no axis could grow, or the base was already near the target)."""
    points, path = expand_run()
    save_run(ScaleRun(points[points["mode"] == "base"], path.iloc[:1]), tmp_path)
    (tmp_path / "scale.json").write_text(json.dumps({"mode": "expand", "notes": ["step 1: no axis can grow x; stopped"]}))
    run = load_scale(tmp_path)
    assert step_gains(run.points, run.path).empty  # was KeyError: 'step'
    paths = write_report(tmp_path)
    assert paths["curves"].read_bytes()[:4] == b"\x89PNG"
    text = paths["summary"].read_text()
    assert "| 0 | base | {} | 50.00 |" in text and "(no expansion steps: the path is the base alone" in text
    assert "- note: step 1: no axis can grow x; stopped" in text
    assert axis_gains(run).empty and compare_studies({"a": run}).iloc[0]["path"] == "(none)"


def test_the_figures_titles_keep_a_long_cpu_name_and_the_date_inside_the_figure() -> None:
    """This machine's CPU name cut the date off the title of curves.png ("...; drawn 2026-1")."""
    date = f"drawn {datetime.date.today():%Y-%m-%d}"
    fig = plot_curves(axes_run().assign(cpu=LONG_CPU))
    assert f"{LONG_CPU}; {date}" in fig.axes[0].get_title().replace("\n", " ")
    assert_title_fits(fig, fig.axes[0].title)
    run = versus_run()
    gains = plot_gains({"a": ScaleRun(run.points.assign(cpu=LONG_CPU), run.path)})
    assert gains._suptitle is not None and date in gains.get_suptitle().replace("\n", " ")
    assert_title_fits(gains, gains._suptitle)
