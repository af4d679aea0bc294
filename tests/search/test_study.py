"""A whole search on SQLite: outputs, resume after an interruption, a NaN trial, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

import space
from e3d.cli import main
from search import study as st
from search.budget import Budget
from search.results import COLUMNS
from tests.search.conftest import TINY


def search(tmp: Path, *extra: str) -> int:
    try:
        return main(["search", *TINY, "--out", str(tmp), *extra])
    except SystemExit as e:
        return int(e.code or 0)


def load(tmp: Path) -> optuna.Study:
    return optuna.load_study(study_name="e3d-search", storage=f"sqlite:///{tmp / 'study.db'}")


@pytest.mark.slow
def test_tiny_search_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert search(tmp_path, "--trials", "2") == 0
    out = capsys.readouterr().out
    df = pd.read_csv(tmp_path / "trials_full.csv")
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    trained = df[df["feasible"] & (df["state"] == "COMPLETE")]
    assert (trained["source"] == "search").sum() >= 2 and (trained["source"] == "baseline").sum() == 1
    assert trained["accuracy"].between(0, 100).all() and (trained["macs"] <= 60e6).all()
    assert (df[~df["feasible"]]["macs"] > 60e6).all()
    best = space.NetSpec.load(tmp_path / "best.json")
    top = trained.sort_values(["accuracy", "macs"], ascending=[False, True]).iloc[0]  # ties go to the cheaper network
    assert best == space.NetSpec.from_json(top["spec_json"])
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["trials"] and all("spec" in t for t in pareto["trials"])
    assert "trial" in out and "baseline" in out and "rejected by the budget" in out
    assert main(["profile", str(tmp_path / "best.json"), "--no-latency"]) == 0


def fake_fit(accuracies: list[float]) -> Any:
    from search.train import FitResult

    def fit(model: Any, train: Any, val: Any, config: Any, *, on_epoch: Any = None, **_: Any) -> FitResult:
        acc = accuracies.pop(0) if accuracies else 30.0
        if on_epoch is not None:
            on_epoch(0, {"val_top1": acc, "val_loss": 1.0, "train_loss": 1.0})
        return FitResult(acc, acc, 1, 0.01, [])

    return fit


def test_an_interrupt_just_after_the_trained_mark_is_still_an_interrupted_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM can land while the "trained" mark is being written, before training starts (the
    two-job SIGTERM test kills within that window): the trial must still be marked interrupted, so that a
    resumed search runs it again."""
    real = optuna.Trial.set_user_attr
    marks = {"n": 0}

    def set_user_attr(self: optuna.Trial, key: str, value: Any) -> None:
        real(self, key, value)
        if key == "trained":
            marks["n"] += 1
            if marks["n"] == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr("search.train.fit", fake_fit([]))
    monkeypatch.setattr(optuna.Trial, "set_user_attr", set_user_attr)
    assert search(tmp_path, "--trials", "3") == 130
    stopped = [t for t in load(tmp_path).trials if t.user_attrs.get("trained") and t.state.name == "FAIL"]
    assert len(stopped) == 1 and stopped[0].user_attrs.get("interrupted")


def test_resume_after_an_interruption_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = fake_fit([])

    def interrupting(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.seen.append(record)

    records = Records()
    logging.getLogger("optuna").addHandler(records)
    monkeypatch.setattr("search.train.fit", interrupting)
    try:
        assert search(tmp_path, "--trials", "4") == 130
    finally:
        logging.getLogger("optuna").removeHandler(records)
    # Ctrl-C is not an error: no Optuna traceback or "failed" lines, only the CLI's resume hint
    assert not [r.getMessage() for r in records.seen if r.levelno >= logging.WARNING]
    first = load(tmp_path)
    done_before = {t.number: t.values for t in first.trials if t.state.name == "COMPLETE"}
    assert len([t for t in first.trials if t.user_attrs.get("trained")]) == 3
    assert pd.read_csv(tmp_path / "trials_full.csv")["number"].tolist() == [t.number for t in first.trials]

    monkeypatch.setattr("search.train.fit", real)
    assert main(["search", "--resume", "--out", str(tmp_path), "--quiet"]) == 0
    study = load(tmp_path)
    assert {t.number: t.values for t in study.trials if t.number in done_before} == done_before
    assert st.count_trained(study, source="search") >= 4
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in study.trials)


def test_a_nan_loss_fails_that_trial_and_the_study_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.train import NonFiniteLossError

    real = fake_fit([])
    calls = {"n": 0}

    def nan_once(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise NonFiniteLossError("loss is nan at step 3")
        return real(*a, **k)

    monkeypatch.setattr("search.train.fit", nan_once)
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    optimize_log = logging.getLogger("optuna.study._optimize")
    optimize_log.addHandler(handler)
    try:
        assert search(tmp_path, "--trials", "3") == 0
    finally:
        optimize_log.removeHandler(handler)
    assert not [r.getMessage() for r in logged if "failed" in r.getMessage()]  # was Optuna's traceback on stderr
    study = load(tmp_path)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and "non-finite loss" in failed[0].user_attrs["error"]
    assert st.count_trained(study, source="search") >= 3


def test_a_storage_that_fails_mid_search_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    real = fake_fit([])
    calls = {"n": 0}

    def disk_fills(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            try:
                raise sqlite3.OperationalError("database or disk is full")
            except sqlite3.OperationalError as e:
                raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e
        return real(*a, **k)

    monkeypatch.setattr("search.train.fit", disk_fills)
    assert search(tmp_path, "--trials", "3", "--jobs", "1") == 2  # was 1, after a dozen chained tracebacks
    err = capsys.readouterr().err
    assert "the study's storage failed: database or disk is full; every trial recorded before is kept" in err
    assert "Traceback" not in err


def test_auto_trains_a_trial_again_in_fp32_when_its_bf16_diverges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profiler.precision import ExecConfig
    from search.train import NonFiniteLossError

    real = fake_fit([])
    starts: list[ExecConfig] = []

    def diverging_bf16(*a: Any, exec_config: ExecConfig, **k: Any) -> Any:
        starts.append(exec_config)
        if exec_config.precision == "bf16":
            raise NonFiniteLossError("the training loss became nan at epoch 1, step 2 under bf16 eager")
        return real(*a, **k)

    def calibrated(*a: Any, half: bool = True, **k: Any) -> ExecConfig:
        return ExecConfig("bf16" if half else "fp32", not half, reason="calibrated (faked)")

    monkeypatch.setattr("search.train.fit", diverging_bf16)
    monkeypatch.setattr("search.train.resolve_exec", calibrated)
    assert search(tmp_path, "--trials", "2", "--precision", "auto") == 0
    trained = [t for t in load(tmp_path).trials if t.user_attrs.get("trained")]
    assert trained and all(t.state.name == "COMPLETE" for t in trained)
    assert all(t.user_attrs["precision"] == "fp32 channels-last" and "nan" in t.user_attrs["diverged"] for t in trained)
    assert len(starts) >= 2 * len(trained) and [c.precision for c in starts] == ["bf16", "fp32"] * (len(starts) // 2)


def test_pareto_objective_has_two_directions_and_no_pruning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([10.0, 20.0, 15.0, 40.0]))
    assert search(tmp_path, "--trials", "3", "--objective", "pareto") == 0
    study = load(tmp_path)
    assert len(study.directions) == 2
    assert all(len(t.values) == 2 for t in study.trials if t.state.name == "COMPLETE")
    assert not [t for t in study.trials if t.state.name == "PRUNED"]
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    accs = [t["accuracy"] for t in pareto["trials"]]
    assert accs == sorted(accs), "along the front, more macs buy more accuracy"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--budget-mflops", "0.5"], "below the smallest network these families can build"),
        (
            ["--budget-mflops", "60", "--storage", "postgresql://nobody:x@127.0.0.1:1/none"],
            "cannot reach storage postgresql://***@127.0.0.1:1/none",
        ),
        (["--resume", "--study-name", "ghost"], "nothing to resume in"),
        (["--budget-mflops", "60", "--families", "alexnet"], "unknown family 'alexnet'"),
        (["--budget-mflops", "-3"], "must be a positive number"),
        # every candidate would be rejected, one after another, for as long as the search ran (--timeout ends it then)
        (["--budget-mflops", "300", "--families", "shufflenet", "--proxy-clip", "16x32x32", "--timeout", "5"], "no family can train at"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    try:
        code = main(["search", "--out", str(tmp_path), "--quiet", *argv])
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err and len([ln for ln in err.strip().splitlines() if "error" in ln]) == 1


def test_joining_with_other_settings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    assert search(tmp_path, "--trials", "1") == 0
    code = main(["search", *TINY[:-1], "--epochs", "2", "--out", str(tmp_path), "--trials", "1"]) if False else None
    args = [a if a != "1" or TINY[i - 1] != "--epochs" else "2" for i, a in enumerate(TINY)]
    code = main(["search", *args, "--out", str(tmp_path), "--trials", "1"])
    assert code == 2
    assert "exists with other settings (proxy.epochs: stored 1, given 2)" in capsys.readouterr().err


def test_workers_may_differ_in_machine_local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    assert search(tmp_path, "--trials", "1", "--threads", "1") == 0
    assert search(tmp_path, "--trials", "2", "--threads", "2", "--loader-workers", "0") == 0
    study = load(tmp_path)
    assert "threads" not in json.dumps(st.SearchConfig.from_dict(study.user_attrs["e3d_config"]).shared())
    assert st.count_trained(study, source="search") >= 2


class PruneAtStep(optuna.pruners.BasePruner):
    """Prunes every trial when it reports the given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.last_step == self.step


@pytest.mark.parametrize(("step", "pruned"), [(0, True), (1, True), (2, False)])
def test_pruning_stops_trials_with_epochs_left_never_after_the_last(monkeypatch: pytest.MonkeyPatch, step: int, pruned: bool) -> None:
    from search.budget import Budget
    from search.train import FitResult

    def fit(model: Any, train: Any, val: Any, config: Any, *, on_epoch: Any = None, **_: Any) -> FitResult:
        for epoch in range(config.epochs):
            on_epoch(epoch, {"val_top1": 40.0, "val_loss": 1.0, "train_loss": 1.0})
        return FitResult(40.0, 40.0, config.epochs, 0.01, [])

    monkeypatch.setattr("search.train.fit", fit)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    proxy = st.ProxyConfig(epochs=3, clip=(8, 32, 32))
    config = st.SearchConfig(budget=Budget(mflops=1e5), families=("mobilenet", "mobilenetv2"), proxy=proxy)
    study = optuna.create_study(direction="maximize", pruner=PruneAtStep(step), sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(st.Objective(config, st.ProxyData(None, None, 10, "motion")), n_trials=6)
    trained = [t for t in study.trials if t.user_attrs.get("trained")]
    assert trained
    assert all((t.state.name == "PRUNED") == pruned for t in trained)


def test_the_median_pruner_judges_from_the_second_epoch() -> None:
    from search.budget import Budget

    config = st.SearchConfig(budget=Budget(mflops=1e5), families=("mobilenet",), proxy=st.ProxyConfig(epochs=3))
    study = optuna.create_study(direction="maximize", pruner=st._pruner(config))
    for _ in range(4):
        t = study.ask()
        t.report(50.0, 0)
        t.report(50.0, 1)
        study.tell(t, 50.0)
    weak = study.ask()
    weak.report(10.0, 0)
    assert not weak.should_prune()  # epoch 1 ranks poorly: no verdict there
    weak.report(10.0, 1)
    assert weak.should_prune()


def _latency_bound_search(monkeypatch: pytest.MonkeyPatch, latency: Any) -> st.WorkerReport:
    """A search for two trained candidates of two families under a latency bound (``latency``: ms of a spec), training
    with :func:`fake_fit`, that gives up after 5 rejections in a row while none has trained."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    monkeypatch.setattr(st, "NOTHING_TRAINS", 5)
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    proxy = st.ProxyConfig(clip=(8, 32, 32), train_samples=16, val_samples=8, epochs=1, batch_size=8)
    config = st.SearchConfig(budget=Budget(latency_ms=1.0), families=("mobilenet", "mobilenetv2"), proxy=proxy)
    study = optuna.create_study(direction="maximize")
    return st.run_worker(study, config, st.load_proxy(proxy, progress=False), n_trials=2, timeout=120, latency=latency)


def test_a_search_whose_candidates_are_all_rejected_gives_up_instead_of_searching_for_ever(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(st.NothingTrainsError, match=r"^5 candidates in a row met .* \(5 by latency; the last: latency 2.0 ms"):
        _latency_bound_search(monkeypatch, lambda spec: 2.0)  # without the guard: 120 s, then no error


def test_giving_up_counts_each_kind_of_rejection_by_name_with_its_advice() -> None:
    unpriced = "the latency table cannot price conv3d(8->8) (out of range); rebuild it covering this network"
    reasons = ["predicted latency 50.0 ms > 40 ms"] * 44 + [unpriced] * 6
    with pytest.raises(st.NothingTrainsError) as e:
        st.check_something_trains(optuna.create_study(), reasons)
    assert "(44 by predicted latency, 6 that the latency table cannot price; the last: the latency" in str(e.value)  # was "6 by the"
    assert str(e.value).endswith("loosen the latency budget; rebuild the latency table (e3d latency-table) to cover these networks")


def test_a_trial_line_labels_its_validation_accuracy_and_a_final_run_s_test_accuracy() -> None:
    attrs = {"source": "final", "summary": "mobilenet 0.5x", "macs": 5e6, "params": 1e5, "accuracy": 6.25, "epochs": 1}
    line = st.trial_line(optuna.trial.create_trial(value=12.5, user_attrs={**attrs, "test_accuracy": 12.5}))
    assert "val   6.2%  test  12.5%" in line and "acc" not in line  # was "acc   6.2%": the validation accuracy, unlabelled
    assert "val   6.2%  1 ep" in st.trial_line(optuna.trial.create_trial(value=6.25, user_attrs={**attrs, "source": "search"}))


def test_a_search_that_trained_once_goes_on_through_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = iter(range(10_000))
    report = _latency_bound_search(monkeypatch, lambda spec: 0.5 if next(calls) in (0, 8) else 2.0)  # the 1st and 9th fit
    assert (report.trained, report.rejected) == (2, 7)


def test_only_rejections_the_analytic_bounds_did_not_foresee_count_towards_giving_up() -> None:
    """A tight multiply-add budget can take hundreds of candidates to meet (feasible_families says it can be met);
    only candidates that met it and were rejected all the same count, and a trained one starts the count again."""

    def trial(macs: float, reason: str = "") -> optuna.trial.FrozenTrial:
        attrs = {"macs": macs, "params": 1e5, "feasible": not reason, "rejected_reason": reason}
        return optuna.trial.create_trial(value=1.0, user_attrs=attrs)

    budget, reasons = Budget(mflops=25, latency_ms=1.0), ["latency 3.0 ms > 1 ms"]
    st.track_unforeseen(reasons, trial(90e6, "macs 90.0 M > 25 M"), budget)
    assert reasons == ["latency 3.0 ms > 1 ms"]  # over the analytic bound: neither counted nor a reason to start again
    st.track_unforeseen(reasons, trial(24e6, "latency 2.0 ms > 1 ms"), budget)
    assert reasons == ["latency 3.0 ms > 1 ms", "latency 2.0 ms > 1 ms"]
    st.track_unforeseen(reasons, trial(24e6), budget)
    assert reasons == []
