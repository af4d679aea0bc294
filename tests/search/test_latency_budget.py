"""Searching under a latency budget priced by a latency table: screening, the study's table, refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

import profiler.latency
import profiler.optimize
from e3d.cli import main
from e3d.commands.search import meter_note
from profiler.latency_table import Block, LatencyTable, LatencyTableError, TableSettings, UnpricedLayerError, build_table, collect_blocks
from search import study as st
from search.budget import Budget, screen
from search.latency import at_clip, calibration_specs, random_params, space_specs, study_latency, table_identity
from space.registry import paper_spec
from space.spec import NetSpec
from tests.search.conftest import TINY
from tests.search.test_study import fake_fit
from tests.traced import traced_types

FAMILIES = ("mobilenet", "mobilenetv2")
CLIP = (16, 112, 112)


def fake_ms(b: Block, s: TableSettings, mode: str) -> float:
    return 0.05 + b.macs / 1e7 + b.elements / 1e6 + (0.01 if mode == "eager" else 0.0)


def fake_call(s: TableSettings, mode: str) -> float:
    return 0.01


def make_table(path: Path, *, batch_size: int = 8, seed: int = 0, samples: int = 60) -> LatencyTable:
    """A table of every block the two families produce, with made-up (deterministic) times."""
    settings = TableSettings("cpu", "test cpu", 1, "x", "fp32", CLIP, batch_size, ("eager", "optimized"), 0, 1)
    blocks = list(collect_blocks(space_specs(FAMILIES, CLIP, samples=samples, seed=seed)).values())
    return build_table(blocks, settings, path, measure=fake_ms, measure_empty=fake_call, progress=False)


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "table.json"
    make_table(path)
    return path


def priceable(table: LatencyTable, n: int, seed: int) -> list[tuple[NetSpec, float]]:
    out = []
    for p in random_params(FAMILIES, n, seed=seed):
        spec = at_clip(p, CLIP, num_classes=10)
        if spec is None:
            continue
        try:
            out.append((spec, table.predict(spec, "optimized")))
        except UnpricedLayerError:
            continue
    return out


def test_the_table_prices_nearly_every_candidate(table_file: Path) -> None:
    table = LatencyTable.load(table_file)
    assert len(priceable(table, 100, seed=123)) >= 95


def test_calibration_networks_come_from_every_family_in_turn() -> None:
    specs = calibration_specs(("mobilenet", "mobilenetv2", "shufflenet"), (16, 48, 48), n=7, seed=1)
    assert [s.family for s in specs] == ["mobilenet", "mobilenetv2", "shufflenet"] * 2 + ["mobilenet"]
    assert len({s.to_json() for s in specs}) == 7 and all(s.clip == (16, 48, 48) for s in specs)
    assert [s.family for s in calibration_specs(("mobilenet", "shufflenet"), (4, 16, 16), n=3, seed=1)] == ["mobilenet"] * 3


def test_screening_rejects_exactly_the_specs_predicted_over_the_bound(table_file: Path) -> None:
    table = LatencyTable.load(table_file)
    specs = priceable(table, 40, seed=5)
    bound = sorted(ms for _, ms in specs)[len(specs) // 2]
    budget = Budget(latency_ms=bound, clip=CLIP, latency_table=table.identity())
    predictor = table.predictor("optimized")
    for spec, ms in specs:
        verdict = screen(spec, budget, latency=predictor)
        assert verdict.feasible == (ms <= bound) and verdict.latency_ms == ms
        assert verdict.feasible or verdict.reason == f"predicted latency {ms:.1f} ms > {bound:g} ms"
    assert 0 < sum(ms > bound for _, ms in specs) < len(specs)


def test_a_candidate_the_table_cannot_price_is_rejected_with_the_reason(table_file: Path) -> None:
    table = LatencyTable.load(table_file)
    budget = Budget(latency_ms=1e9, clip=CLIP, latency_table=table.identity())
    spec = paper_spec("mobilenet", width_mult=4.0, num_classes=10)  # wider than any network the table measured
    with pytest.raises(UnpricedLayerError) as unpriced:
        table.predict(spec, "optimized")
    verdict = screen(spec, budget, latency=table.predictor("optimized"))
    assert not verdict.feasible and verdict.reason == str(unpriced.value) and verdict.latency_ms is None
    assert verdict.constraints[2] > 0  # the sampler learns it as outside the bound


def test_the_table_is_stored_on_the_study_config(table_file: Path) -> None:
    budget = Budget(latency_ms=50.0, clip=CLIP)
    budget = dataclasses.replace(budget, latency_table=table_identity(table_file, budget, "optimized"))
    config = st.SearchConfig(budget=budget, families=FAMILIES)
    again = st.SearchConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.budget.latency_table == LatencyTable.load(table_file).identity()
    assert f"predicted latency <= 50 ms per batch of 8 {'x'.join(map(str, CLIP))} clips on test cpu" in budget.describe()


def test_a_study_refuses_a_second_different_table(tmp_path: Path, table_file: Path) -> None:
    other = tmp_path / "other.json"
    make_table(other, seed=1, samples=5)
    storage = st.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    configs = []
    for path in (table_file, other):
        budget = Budget(latency_ms=50.0, clip=CLIP)
        budget = dataclasses.replace(budget, latency_table=table_identity(path, budget, "optimized"))
        configs.append(st.SearchConfig(budget=budget, families=FAMILIES))
    st.open_study("s", storage, configs[0])
    with pytest.raises(st.StudyConfigError, match=r"exists with other settings.*budget\.latency_table"):
        st.open_study("s", storage, configs[1])
    _, stored, _ = st.open_study("s", storage, None, resume=True)
    predict = study_latency(stored.budget, "optimized", table_file)
    spec, ms = priceable(LatencyTable.load(table_file), 5, seed=9)[0]
    assert predict is not None and predict(spec) == ms
    with pytest.raises(st.StudyConfigError, match="cannot mix tables"):
        study_latency(stored.budget, "optimized", other)
    recalibrated = LatencyTable.load(table_file)
    recalibrated.networks = [(spec, {"eager": ms, "optimized": ms})]  # new times of its calibration networks, as --recalibrate leaves it
    recalibrated.recalibrated = "2026-12-06T00:17:52+00:00"
    recalibrated.save(other)
    with pytest.raises(st.StudyConfigError, match=r"recalibrated 2026-12-06T00:17:52\+00:00\) is not the latency table .* cannot mix"):
        study_latency(stored.budget, "optimized", other)
    with pytest.raises(st.StudyConfigError, match="pass that file with --latency-table"):
        study_latency(stored.budget, "optimized", None)
    with pytest.raises(st.StudyConfigError, match="made without a latency table"):
        study_latency(Budget(latency_ms=50.0), "optimized", table_file)
    assert study_latency(Budget(latency_ms=50.0), "optimized", None) is None


def test_a_table_that_does_not_fit_the_search_is_refused(tmp_path: Path, table_file: Path) -> None:
    budget = Budget(latency_ms=50.0, clip=CLIP)
    with pytest.raises(LatencyTableError, match=r"clip 16x112x112 \(asked 16x56x56\)"):
        table_identity(table_file, dataclasses.replace(budget, clip=(16, 56, 56)), "optimized")
    make_table(tmp_path / "b1.json", batch_size=1, samples=0)
    with pytest.raises(LatencyTableError, match=r"batch 1 \(asked 8\)"):
        table_identity(tmp_path / "b1.json", budget, "optimized")
    with pytest.raises(LatencyTableError, match="give --budget-latency-ms"):
        table_identity(table_file, Budget(mflops=100.0), "optimized")
    with pytest.raises(LatencyTableError, match="drop --sgs"):
        table_identity(table_file, budget, "optimized", sgs=True)


def search(tmp: Path, *extra: str) -> int:
    try:
        return main(["search", *TINY, "--no-finalize", "--out", str(tmp), *extra])
    except SystemExit as e:
        return int(e.code or 0)


@pytest.mark.slow
def test_search_screens_with_the_table(
    tmp_path: Path, table_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    monkeypatch.setattr("search.study.latency_meter", lambda mode: pytest.fail("a table search must not time candidates"))
    bound = "9"  # about half of the candidates under 60 M macs are predicted slower (made-up times)
    assert search(tmp_path, "--trials", "2", "--budget-latency-ms", bound, "--latency-table", str(table_file)) == 0
    study = optuna.load_study(study_name="e3d-search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    stored = st.SearchConfig.from_dict(study.user_attrs["e3d_config"]).budget
    assert stored.latency_table == LatencyTable.load(table_file).identity()
    trials = [t.user_attrs for t in study.trials if t.user_attrs.get("latency_ms") is not None]
    assert trials and all((a["latency_ms"] <= 9) == a["feasible"] for a in trials)
    assert any(not a["feasible"] and a["rejected_reason"].startswith("predicted latency") for a in trials)
    capsys.readouterr()
    other = tmp_path / "other.json"
    make_table(other, seed=1, samples=5)
    assert search(tmp_path, "--trials", "2", "--budget-latency-ms", bound, "--latency-table", str(other)) == 2
    err = capsys.readouterr().err
    assert "exists with other settings" in err and len(err.strip().splitlines()) == 1
    resume = ["search", "--resume", "--out", str(tmp_path), "--trials", "3", "--quiet", "--jobs", "1", "--no-finalize"]
    assert main([*resume, "--latency-table", str(table_file)]) == 0  # was refused: the table is a stored option
    assert st.count_trained(optuna.load_study(study_name="e3d-search", storage=f"sqlite:///{tmp_path / 'study.db'}"), source="search") == 3


def test_a_search_timing_candidates_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    monkeypatch.setattr("search.study.latency_meter", lambda mode: lambda spec: 1.0)
    assert search(tmp_path, "--trials", "1", "--budget-latency-ms", "50", "--threads", "1", "--no-baselines") == 0
    assert "latency: each candidate timed here, optimized path, batch 8, 1 torch thread\n" in capsys.readouterr().err


def test_the_note_on_a_timed_latency_names_the_other_jobs() -> None:
    assert meter_note("eager", threads=2, jobs=1) == "latency: each candidate timed here, eager path, batch 8, 2 torch threads"
    assert meter_note("optimized", threads=1, jobs=3).endswith(
        "1 torch thread, beside 2 other jobs training (noisier: a table from e3d latency-table prices every candidate alike)"
    )


def test_the_search_meter_times_candidates_in_a_child_and_memoises_them() -> None:
    """Without a table a search times each candidate on the optimized path: the tracing happens in a child
    process, so a long search does not pile up TorchScript's ~25 MB per network in itself."""
    spec = paper_spec("mobilenetv2", width_mult=0.2, num_classes=5, sample_size=32)
    meter = st.latency_meter("optimized")
    before = traced_types()
    ms = meter(spec)
    assert ms > 0 and meter(spec) == ms
    assert traced_types() <= before + 3  # tracing here: dozens of types per network


@pytest.mark.usefixtures("measure_here")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_search_meter_times_at_this_process_thread_count(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(st, "time_spec", lambda spec, mode, n: calls.append((mode, n)) or 1.0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    st.latency_meter("eager")(paper_spec("mobilenetv2", width_mult=0.2, num_classes=5, sample_size=32))
    assert calls == [("eager", threads)]


def test_time_spec_times_the_optimized_graph_without_checking_its_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check on random weights can fail by roundoff where the scores come out near zero; that stopped a search."""

    def mismatch(*_: Any, **__: Any) -> float:
        raise profiler.optimize.NumericalMismatchError("the optimized model differs from the eager model")

    monkeypatch.setattr(profiler.optimize, "check_close", mismatch)
    assert st.time_spec(paper_spec("mobilenetv2", width_mult=0.2, num_classes=5, sample_size=32), "optimized", 1) > 0


def test_time_spec_builds_traces_and_times_on_the_threads_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []

    def noting_threads(name: str, real: Any) -> Any:
        return lambda *a, **kw: seen.append((name, torch.get_num_threads())) or real(*a, **kw)

    for module, name in ((profiler.optimize, "optimize_for_inference"), (profiler.latency, "measure_latency")):
        monkeypatch.setattr(module, name, noting_threads(name, getattr(module, name)))
    with profiler.latency.torch_threads(2):  # the caller's count, which the timing must not use
        assert st.time_spec(paper_spec("mobilenetv2", width_mult=0.2, num_classes=5, sample_size=32), "optimized", 1) > 0
        assert seen == [("optimize_for_inference", 1), ("measure_latency", 1)] and torch.get_num_threads() == 2


def test_a_seed_past_32_bits_draws_as_its_low_bits() -> None:
    big = list(random_params(["mobilenet"], 3, seed=2**40 + 7))  # was NumPy's "Seed must be between 0 and 2**32 - 1"
    assert big == list(random_params(["mobilenet"], 3, seed=7))
