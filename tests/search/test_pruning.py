"""Pruning rules at rungs on hand-made reports: successive halving and the multi-objective rule."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.fidelity import RungScheduleError
from search.pruning import (
    RUNG_ATTR,
    RungPruner,
    Rungs,
    decides,
    default_rungs,
    halving_keeps,
    pareto_keeps,
    pareto_should_prune,
    replay,
    saved_cpu_seconds,
    stopped_at,
)
from search.study import SearchConfig


def test_halving_keeps_the_best_share_and_ties() -> None:
    reported = [10.0, 20.0, 30.0, 40.0]
    assert halving_keeps(40.0, reported, 0.5) and halving_keeps(30.0, reported, 0.5)
    assert not halving_keeps(20.0, reported, 0.5) and not halving_keeps(10.0, reported, 0.5)
    assert halving_keeps(30.0, [30.0, 30.0, 30.0, 40.0], 0.5)  # ties with the cut go on
    assert halving_keeps(10.0, [10.0], 0.25)  # one trial always keeps one slot
    assert [halving_keeps(v, [1.0, 2.0, 3.0], 1 / 3) for v in (1.0, 2.0, 3.0)] == [False, False, True]


def test_dominated_at_a_rung_is_pruned() -> None:
    others = [(60.0, 100.0), (55.0, 80.0), (70.0, 300.0), (40.0, 500.0)]
    # (50, 120) is dominated by (60, 100) and (55, 80): 2 of 4 others
    assert not pareto_keeps((50.0, 120.0), others, 0.5)
    assert pareto_keeps((50.0, 120.0), others, 0.75)  # needs 3 of 4
    assert not pareto_keeps((30.0, 600.0), others, 0.75)  # dominated by all four


def test_on_the_front_is_kept() -> None:
    others = [(60.0, 100.0), (55.0, 80.0), (70.0, 300.0)]
    assert pareto_keeps((45.0, 50.0), others, 0.01)  # cheapest: nobody dominates it
    assert pareto_keeps((80.0, 900.0), others, 0.01)  # most accurate
    assert pareto_keeps((60.0, 100.0), others, 0.01)  # a tie with a report is not dominated
    assert pareto_keeps((62.0, 200.0), others, 0.01)


def test_warm_up_in_epochs_and_trials() -> None:
    rungs = Rungs((2, 3), min_trials=3)
    assert not decides(rungs, 1, 10)  # before the first rung
    assert not decides(rungs, 2, 2) and decides(rungs, 2, 3)
    assert not decides(rungs, 4, 10)  # not a rung
    assert default_rungs(3) == (2,) and default_rungs(5) == (4,) and default_rungs(2) == () and default_rungs(1) == ()
    with pytest.raises(ValueError, match="keep"):
        Rungs((2,), keep=0.0)


def test_a_schedule_with_more_rungs_than_epochs_is_refused() -> None:
    from search.fidelity import check_rungs

    with pytest.raises(RungScheduleError, match="at most 2"):
        check_rungs((1, 2, 3, 4), 3)


def done(number: int, values: dict[int, float], state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    t = create_trial(
        state=state,
        value=values[max(values)] if state == TrialState.COMPLETE else None,
        params={"x": 0.0},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        intermediate_values=values,
    )
    t.number = number
    return t


def test_rung_pruner_halves_at_its_rungs_only() -> None:
    study = optuna.create_study(direction="maximize")
    for i, acc in enumerate([10.0, 20.0, 30.0]):
        study.add_trial(done(i, {0: acc, 1: acc + 5, 2: acc + 10}))
    pruner = RungPruner(Rungs((2,), keep=0.5, min_trials=4))
    weak = done(9, {0: 99.0, 1: 12.0}, TrialState.RUNNING)  # at rung 2 (step 1): 12 vs 15, 25, 35
    strong = done(9, {0: 1.0, 1: 30.0}, TrialState.RUNNING)
    assert pruner.prune(study, weak) and not pruner.prune(study, strong)
    assert not pruner.prune(study, done(9, {0: 0.0}, TrialState.RUNNING))  # epoch 1 is no rung
    # warm-up: with 5 needed, the three done and this one are too few
    assert not RungPruner(Rungs((2,), min_trials=5)).prune(study, weak)


def multi_study(reports: list[tuple[float, float]]) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, macs in reports:
        study.add_trial(
            create_trial(
                values=[acc, macs],
                params={"x": 0.0},
                distributions={"x": FloatDistribution(0.0, 1.0)},
                user_attrs={RUNG_ATTR: {"2": acc}, "macs": macs * 1e6},
            )
        )
    return study


def test_pareto_should_prune_judges_the_reports_stored_on_trials() -> None:
    study = multi_study([(60.0, 100.0), (55.0, 80.0), (70.0, 300.0), (40.0, 500.0)])
    rungs = Rungs((2,), min_trials=4, dominated_fraction=0.5)
    trial = study.ask({"x": FloatDistribution(0.0, 1.0)})
    assert not pareto_should_prune(study, trial, epoch=1, accuracy=1.0, macs_m=120.0, rungs=rungs)  # no rung
    assert pareto_should_prune(study, trial, epoch=2, accuracy=50.0, macs_m=120.0, rungs=rungs)
    assert study.trials[-1].user_attrs[RUNG_ATTR] == {"1": 1.0, "2": 50.0}
    on_front = study.ask({"x": FloatDistribution(0.0, 1.0)})
    assert not pareto_should_prune(study, on_front, epoch=2, accuracy=45.0, macs_m=50.0, rungs=rungs)
    few = multi_study([(60.0, 100.0), (55.0, 80.0)])  # warm-up: 3 at the rung < 4
    assert not pareto_should_prune(few, few.ask({"x": FloatDistribution(0.0, 1.0)}), epoch=2, accuracy=1.0, macs_m=900.0, rungs=rungs)


def test_a_pruned_multi_objective_trial_is_recorded_pruned() -> None:
    study = multi_study([(60.0, 100.0), (55.0, 80.0), (70.0, 300.0), (40.0, 500.0)])
    rungs = Rungs((2,), min_trials=4)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.suggest_float("x", 0.0, 1.0)
        if pareto_should_prune(study, trial, epoch=2, accuracy=10.0, macs_m=900.0, rungs=rungs):
            raise optuna.TrialPruned("dominated at epoch 2")
        return 10.0, 900.0

    study.optimize(objective, n_trials=1)
    assert study.trials[-1].state == TrialState.PRUNED


@pytest.mark.parametrize(("accuracy", "pruned"), [(50.0, True), (99.5, False)])
def test_a_pareto_search_with_rungs_stops_dominated_trials(monkeypatch: pytest.MonkeyPatch, accuracy: float, pruned: bool) -> None:
    from search import study as st
    from search.budget import Budget
    from search.train import FitResult

    epochs_seen: list[int] = []

    def fit(model: object, train: object, val: object, config: object, *, on_epoch: object = None, **_: object) -> FitResult:
        for epoch in range(3):
            epochs_seen.append(epoch + 1)
            on_epoch(epoch, {"val_top1": accuracy, "val_loss": 1.0, "train_loss": 1.0})  # type: ignore[operator]
        return FitResult(accuracy, accuracy, 3, 0.01, [])

    monkeypatch.setattr("search.train.fit", fit)
    config = st.SearchConfig(
        budget=Budget(mflops=1e5), families=("mobilenet",), proxy=st.ProxyConfig(epochs=3, clip=(8, 32, 32)),
        objective="pareto", pruner="rungs",
    )  # fmt: skip
    assert isinstance(st._pruner(config), optuna.pruners.NopPruner)
    assert isinstance(st._pruner(dataclasses.replace(config, objective="accuracy")), RungPruner)
    # four finished trials that reached the rung (epoch 2 of 3) at 99% and next to no multiply-adds
    study = multi_study([(99.0, 1e-6)] * 4)
    study.sampler = optuna.samplers.RandomSampler(seed=0)
    study.optimize(st.Objective(config, st.ProxyData(None, None, 10, "motion")), n_trials=1)
    last = study.trials[-1]
    assert (last.state == TrialState.PRUNED) == pruned
    assert epochs_seen == ([1, 2] if pruned else [1, 2, 3])
    assert last.user_attrs[RUNG_ATTR]["2"] == accuracy


def test_a_search_config_with_more_rungs_than_epochs_is_refused() -> None:
    from search import study as st
    from search.budget import Budget

    proxy = st.ProxyConfig(epochs=3)
    with pytest.raises(RungScheduleError, match=r"3 rung\(s\) \(1, 2, 3\) for 3-epoch trials: at most 2"):
        st.SearchConfig(budget=Budget(mflops=100), families=("mobilenet",), proxy=proxy, pruner="rungs", rungs=(1, 2, 3))
    config = st.SearchConfig(budget=Budget(mflops=100), families=("mobilenet",), proxy=proxy, pruner="rungs", rungs=(1,))
    pruner = st._pruner(config)
    assert isinstance(pruner, RungPruner) and pruner.rungs.epochs == (1,)
    assert st.SearchConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in config.to_dict().items() if k != "rungs"}  # a study stored before rungs existed
    assert st.SearchConfig.from_dict(old).rungs == ()
    # finalization turns pruning off: its schedule is not checked against anything
    assert dataclasses.replace(config, pruner="none").rungs == (1,)


def test_cli_rung_schedule_with_more_rungs_than_epochs_is_one_line(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from e3d.cli import main
    from tests.search.conftest import TINY

    try:
        code = main(["search", *TINY, "--pruner", "rungs", "--rungs", "1,2", "--out", str(tmp_path)])
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "for 1-epoch trials: at most 0" in err and "\n" not in err


def test_search_pruner_defaults_by_objective_and_refuses_what_would_not_act() -> None:
    from search.study import StudyConfigError, search_pruner

    assert search_pruner("accuracy", None) == "median" and search_pruner("pareto", None) == "rungs"
    assert search_pruner("pareto", "none") == "none" and search_pruner("pareto", None, rungs=(2,)) == "rungs"
    assert search_pruner("accuracy", "hyperband") == "hyperband" and search_pruner("accuracy", "rungs", rungs=(1, 2)) == "rungs"
    for pruner in ("median", "hyperband"):
        with pytest.raises(StudyConfigError, match=f"--pruner {pruner} cannot prune a pareto search.*--pruner rungs.*--pruner none"):
            search_pruner("pareto", pruner)
    with pytest.raises(StudyConfigError, match="--rungs sets where --pruner rungs judges; the search's pruner is median"):
        search_pruner("accuracy", None, rungs=(2,))


def _search_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[SearchConfig]]:
    """``e3d search`` with ``argv`` (3-epoch tiny trials), stopped before the study opens: the exit
    code and the configs it would have searched with."""
    from e3d.cli import main
    from tests.search.conftest import TINY

    configs: list[SearchConfig] = []

    def run_study(args: object, config: SearchConfig, **_: object) -> int:
        configs.append(config)
        return 0

    monkeypatch.setattr("e3d.commands.search.run_study", run_study)
    tiny = [a if TINY[i - 1] != "--epochs" else "3" for i, a in enumerate(TINY)]
    try:
        return main(["search", *tiny, *argv]), configs
    except SystemExit as e:
        return int(e.code or 0), configs


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--objective", "pareto", "--pruner", "median"], "--pruner median cannot prune a pareto search"),
        (["--objective", "pareto", "--pruner", "hyperband"], "--pruner hyperband cannot prune a pareto search"),
        (["--rungs", "2"], "--rungs sets where --pruner rungs judges; the search's pruner is median (add --pruner rungs)"),
        (["--objective", "pareto", "--pruner", "none", "--rungs", "2"], "the search's pruner is none"),
        (["--pruner", "hyperband", "--rungs", "1,2"], "the search's pruner is hyperband"),
    ],
)
def test_cli_a_pruner_that_would_not_act_is_one_line(
    argv: list[str], words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, configs = _search_cli(argv, monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and not configs, err
    assert words in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "pruner", "rungs"),
    [
        ([], "median", ()),
        (["--objective", "pareto"], "rungs", ()),
        (["--objective", "pareto", "--rungs", "1"], "rungs", (1,)),
        (["--objective", "pareto", "--pruner", "none"], "none", ()),
    ],
)
def test_cli_default_pruner_is_median_for_accuracy_and_rungs_for_pareto(
    argv: list[str], pruner: str, rungs: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.pruning import search_rungs

    code, configs = _search_cli(argv, monkeypatch)
    [config] = configs
    assert code == 0 and (config.pruner, config.rungs) == (pruner, rungs)
    if pruner == "rungs":  # the pareto default judges at the last epoch but one
        assert search_rungs(pruner=pruner, epochs=3, rungs=rungs) == Rungs(rungs or (2,))


def _runs(curves: list[tuple[float, ...]], macs: list[float] | None = None) -> list[list[tuple[float, float]]]:
    macs = macs or [100.0] * len(curves)
    return [[(a, m) for a in curve] for curve, m in zip(curves, macs, strict=True)]


def test_stopped_at_judges_each_run_against_the_earlier_ones_after_the_warm_up() -> None:
    runs = _runs([(50.0, 60.0), (40.0, 50.0), (30.0, 70.0), (20.0, 80.0), (60.0, 65.0)])
    rungs = Rungs((1,), keep=0.5, min_trials=3)
    # runs 0-1 warm up; run 2 is 3rd of (50, 40, 30): not in the best 2; run 3: 4th of 4; run 4: best
    assert stopped_at(runs, rungs, pareto=False) == [None, None, 1, 1, None]


def test_replay_of_ties_prunes_nothing_and_keeps_the_winner() -> None:
    runs = [_runs([(50.0, 60.0)] * 6)]
    r = replay(runs, [[1.0] * 6], Rungs((1,), min_trials=2), orders=5)
    assert (r.passes, r.cpu_saved, r.winners_kept) == (5, 0.0, 1.0)


def test_replay_loses_a_late_bloomer_unless_it_comes_first() -> None:
    # the winner is worst at the rung: with one slot per two reports it survives only when it arrives first
    curves = [(10.0, 90.0), (40.0, 50.0), (41.0, 51.0), (42.0, 52.0)]
    r = replay([_runs(curves)], [[1.0, 1.0, 1.0, 3.0]], Rungs((1,), keep=0.5, min_trials=1), orders=400)
    assert 0.15 < r.winners_kept < 0.35
    # stopped runs skip the second of their two epochs: at most half the CPU time is saved
    assert 0.0 < r.cpu_saved < 0.5


def test_replay_pareto_counts_the_share_of_the_final_front_that_survives() -> None:
    curves = [(30.0, 40.0), (20.0, 60.0), (10.0, 35.0), (45.0, 41.0)]
    macs = [100.0, 200.0, 50.0, 300.0]  # final front: runs 2, 0, 1; run 3 (41 at 300) is dominated by run 1
    runs = [_runs(curves, macs)]
    none = replay(runs, [[1.0] * 4], Rungs((1,), min_trials=10), pareto=True, orders=3)
    assert (none.cpu_saved, none.winners_kept) == (0.0, 1.0)  # warm-up longer than the runs: nothing judged
    hard = replay(runs, [[1.0] * 4], Rungs((1,), min_trials=1, dominated_fraction=0.01), pareto=True, orders=200)
    # only run 1 can be lost (run 0 dominates it at the rung): when run 0 came first, half the orders
    assert 1 - 0.5 / 3 - 0.07 < hard.winners_kept < 1 - 0.5 / 3 + 0.07


def test_saved_cpu_is_each_pruned_trials_missing_epochs_at_its_own_rate() -> None:
    def t(state: TrialState, epochs: int | None, cpu: float | None) -> optuna.trial.FrozenTrial:
        attrs = {k: v for k, v in (("epochs", epochs), ("cpu_seconds", cpu)) if v is not None}
        return create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None, user_attrs=attrs)

    trials = [
        t(TrialState.PRUNED, 1, 30.0),  # 2 epochs left at 30 s each
        t(TrialState.PRUNED, 2, 50.0),  # 1 left at 25 s
        t(TrialState.COMPLETE, 3, 90.0),  # not pruned
        t(TrialState.PRUNED, None, 5.0),  # pruned before an epoch was recorded: no rate
        t(TrialState.PRUNED, 3, 60.0),  # ran every epoch: nothing saved
    ]
    assert saved_cpu_seconds(trials, epochs=3) == 85.0
