"""The latency-predictor bench's report: the per-family overhead next to one overhead for all, and the regressions
next to the three-term ones, on the same measurements."""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path
from typing import Any

import pytest

from bench.latency_predictor import report
from profiler.latency_table import Comparison, LatencyTable, TableSettings, build_table, collect_blocks, spec_blocks
from space.spec import NetSpec
from tests.profiler.test_latency_table import CALL, fake_call, fake_ms, fake_table, here_settings, own_time, settings, spec, superlinear_ms

SCALE = {"mobilenetv2": 2.0, "mobilenet": 1.2}


def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
    """A network measures its blocks' sum times its family's scale."""
    return SCALE[s.family] * (CALL[mode] + sum(own_time(b, mode) for b in spec_blocks(s)))


def test_report_scores_the_per_family_overhead_and_one_overhead_side_by_side(tmp_path: Path) -> None:
    calibration = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)] + [spec("mobilenet", w) for w in (0.5, 0.75, 1.0, 1.5)]
    held_out = {"v2": spec("mobilenetv2", 0.35), "v1": spec("mobilenet", 1.25), "v1b": spec("mobilenet", 2.0)}
    table = fake_table(tmp_path, [*calibration, *held_out.values()], calibration=calibration, measure_network=whole)
    rows = [
        Comparison(n, "random", s.family, m, i + 1, table.predict(s, m), whole(s, table.settings, m))
        for i, (n, s) in enumerate(held_out.items()) for m in table.settings.modes
    ]  # fmt: skip
    out = report(rows, table, held_out)
    for mode in table.settings.modes:
        assert out[mode]["all"]["mape"] == pytest.approx(0.0, abs=1e-6)  # each family's scale is fitted exactly
        assert out[mode]["all, one overhead"]["mape"] > 5.0  # one overhead cannot fit both scales
        assert out[mode]["all, one overhead"]["networks"] == 3
        assert out[mode]["all, one overhead"]["vs_all"]["outcome"] == "loss"  # its errors are larger, by Welch's test
        assert "all, measured again" not in out[mode]  # measured once: no noise floor to report


def test_report_scores_a_second_measurement_against_the_first(tmp_path: Path) -> None:
    held_out = {"v2": spec("mobilenetv2", 0.35), "v1": spec("mobilenet", 1.25)}
    table = fake_table(tmp_path, list(held_out.values()))
    rows = [
        Comparison(n, "random", s.family, m, 1, 1.0, 10.0 * (i + 1), remeasured_ms=12.0 * (i + 1))  # 20% off, ranks kept
        for i, (n, s) in enumerate(held_out.items()) for m in table.settings.modes
    ]  # fmt: skip
    for groups in report(rows, table, held_out).values():
        again = groups["all, measured again"]
        assert again["mape"] == pytest.approx(20.0) and again["within_10"] == 0.0 and again["networks"] == 2


def test_report_scores_the_three_term_regressions_on_the_same_measurements(tmp_path: Path) -> None:
    """Blocks whose cost grows faster than their elements: networks measured as the three-term regressions
    price them score 0% off in that row, and the size-term regressions (the table's own) do not."""
    table = fake_table(tmp_path, [spec("mobilenetv2", w) for w in (0.2, 0.35, 0.7, 1.0)], measure=superlinear_ms)
    three = dataclasses.replace(table, size_term=False)
    held_out = {f"w{w}": spec("mobilenetv2", w) for w in (0.45, 0.65, 0.9)}
    rows = [
        Comparison(n, "random", s.family, m, i + 1, table.predict(s, m), three.predict(s, m))
        for i, (n, s) in enumerate(held_out.items()) for m in table.settings.modes
    ]  # fmt: skip
    out = report(rows, table, held_out)
    for mode in table.settings.modes:
        assert out[mode]["all, three-term regressions"]["mape"] == pytest.approx(0.0, abs=1e-6)
        assert out[mode]["all, three-term regressions"]["networks"] == 3
        assert out[mode]["all"]["mape"] > 0.5  # the table's own prediction differs: the size term is in it


def test_recalibrate_scores_a_copy_timed_again_and_leaves_the_table_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, measure_here: None
) -> None:
    """The device is 20% faster than when the table was built: the table prices 25% high, the recalibrated copy exactly."""
    import bench.latency_predictor as bench

    calibration = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]
    held_out = {"a": spec("mobilenetv2", 0.35), "b": spec("mobilenetv2", 0.9)}
    path = tmp_path / "t.json"
    blocks = list(collect_blocks([*calibration, *held_out.values()]).values())
    measures: dict[str, Any] = {"measure": fake_ms, "measure_network": whole, "measure_empty": fake_call}
    build_table(blocks, here_settings(), path, calibration=calibration, progress=False, **measures)

    def now(s: NetSpec, st: TableSettings, mode: str) -> float:
        return 0.8 * whole(s, st, mode)

    monkeypatch.setattr(bench, "measure_spec", now)
    monkeypatch.setattr(bench, "compare", functools.partial(bench.compare, progress=False))
    monkeypatch.setattr(bench, "recalibrate", functools.partial(bench.recalibrate, progress=False))
    monkeypatch.setattr(bench, "bench_specs", lambda *_: [(n, "random", s) for n, s in held_out.items()])
    args = argparse.Namespace(table=path, specs=2, seed=2, families="mobilenetv2", remeasure=False, recalibrate=True, also=[])
    result, _ = bench.run(LatencyTable.load(path), args)
    assert result["recalibrated"]["drift"] == {"eager": pytest.approx(0.8), "optimized": pytest.approx(0.8)}
    for groups in result["accuracy"].values():
        assert groups["all"]["mape"] == pytest.approx(25.0)
        recalibrated = groups["all, recalibrated"]
        assert recalibrated["mape"] == pytest.approx(0.0, abs=1e-6) and recalibrated["networks"] == 2
        assert recalibrated["vs_all"]["outcome"] == "win" and recalibrated["vs_all"]["mape_lower_by"] == pytest.approx(25.0)
    stored = [s for s, _ in LatencyTable.load(path).networks]  # in the order the build timed them
    assert sorted(s.to_json() for s in stored) == sorted(s.to_json() for s in calibration)
    timed_again = [{m: now(s, here_settings(), m) for m in ("eager", "optimized")} for s in stored]
    assert [n["ms"] for n in result["recalibrated"]["networks"]] == timed_again
    assert "| eager | all, recalibrated | 2 (+0 unpriced) | 1.000 | 0.0% | 100% |" in bench.markdown(result)
    assert result["peak_memory_gib"]["bench"] > 0.01 and "GiB in the bench" in bench.markdown(result)
    assert "the table's build, timing again (eager): 100% of 4 calibration networks timed again came within +-10%" in bench.markdown(result)
    assert LatencyTable.load(path).recalibrated == ""


def test_also_scores_another_table_on_the_same_measurements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], measure_here: None
) -> None:
    """A table whose calibration networks read 25% slower prices every network 25% high next to the table's own."""
    import bench.latency_predictor as bench

    calibration = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]
    held_out = {"a": spec("mobilenetv2", 0.35), "b": spec("mobilenetv2", 0.9)}
    (tmp_path / "own").mkdir()
    own = fake_table(tmp_path / "own", [*calibration, *held_out.values()], calibration=calibration, measure_network=whole)
    slower = fake_table(
        tmp_path, [*calibration, *held_out.values()], calibration=calibration, measure_network=lambda s, st, m: 1.25 * whole(s, st, m)
    )
    monkeypatch.setattr(bench, "measure_spec", whole)
    monkeypatch.setattr(bench, "compare", functools.partial(bench.compare, progress=False))
    monkeypatch.setattr(bench, "bench_specs", lambda *_: [(n, "random", s) for n, s in held_out.items()])
    args = argparse.Namespace(
        table=tmp_path / "own" / "t.json",
        specs=2,
        seed=2,
        families="mobilenetv2",
        remeasure=False,
        recalibrate=False,
        also=[tmp_path / "t.json"],
    )
    result, _ = bench.run(own, args)
    name = f"all, table {tmp_path / 't.json'}"
    assert result["also"] == {name: slower.identity()} and result["recalibrated"] is None
    for groups in result["accuracy"].values():
        assert groups["all"]["mape"] == pytest.approx(0.0, abs=1e-6) and "all, recalibrated" not in groups
        assert groups[name]["mape"] == pytest.approx(25.0)
        # errors of 25% against 0%, each side constant but for rounding: a loss, or no test where rounding left no spread
        v = groups[name]["vs_all"]
        assert v["outcome"] == "loss" or (v["outcome"] == "tie" and "undefined" in v["test"])

    other = tmp_path / "other.json"
    build_table([], settings(clip=(16, 56, 56)), other, measure_empty=fake_call, progress=False)
    assert bench.main(["--table", str(tmp_path / "t.json"), "--also", str(other), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--also {other}: the latency table was measured for clip 16x56x56 (asked 16x48x48)" in err
