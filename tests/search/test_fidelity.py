"""Proxy-fidelity statistics on toy tables, the rung schedule, and the fixed architecture set."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

from profiler.counting import spec_totals
from search.fidelity import (
    FidelityError,
    RungScheduleError,
    agreement_verdicts,
    architecture_set,
    check_rungs,
    epoch_agreement,
    fidelity,
    fidelity_table,
    format_fidelity,
    noise_ceiling,
    rung_schedule,
)
from search.searchspace import FAMILIES, spec_from_params
from search.stats import kendall, spearman

ARCHS = ["a", "b", "c", "d"]


def runs_table() -> pd.DataFrame:
    rows = []
    # reference: a < b < c < d, 1 seed, 60 CPU-s per run
    for arch, acc in zip(ARCHS, [10.0, 20.0, 30.0, 40.0], strict=True):
        rows.append({"architecture": arch, "protocol": "ref", "seed": 0, "accuracy": acc, "cpu_seconds": 60.0})
    # proxy seed 0: a < c < b < d; seed 1: a < b < c < d. Means: a 1, b 2.5, c 2.5 + 0.1, d 4
    seed0 = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0}
    seed1 = {"a": 1.0, "b": 2.0, "c": 3.2, "d": 4.0}
    for seed, accs in ((0, seed0), (1, seed1)):
        for arch in ARCHS:
            rows.append({"architecture": arch, "protocol": "proxy", "seed": seed, "accuracy": accs[arch], "cpu_seconds": 15.0})
    return pd.DataFrame(rows)


def test_rank_correlations_by_hand() -> None:
    # one swapped neighbour pair in four: rho = 1 - 6 * 2 / (4 * 15) = 0.8; tau = (5 - 1) / 6
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert math.isnan(spearman([1, 2], [2, 1])) and math.isnan(kendall([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_fidelity_of_a_toy_proxy() -> None:
    f = fidelity(runs_table(), "proxy", "ref")
    # the means order a < b < c < d exactly as the reference does
    assert f.spearman == pytest.approx(1.0) and f.kendall == pytest.approx(1.0) and f.architectures == 4
    # the two seeds disagree on b and c: the noise ceiling is below the fidelity of the mean
    assert f.noise_ceiling == pytest.approx(0.8)
    # one run at a time: seed 0 swaps b and c (0.8), seed 1 ranks exactly (1.0)
    assert f.one_run == pytest.approx(0.9)
    assert f.seeds == 2 and f.cpu_minutes == pytest.approx(1.0)  # 4 runs x 15 s per seed
    assert f.per_cpu_minute == pytest.approx(1.0)


def test_fidelity_table_and_markdown() -> None:
    rows = fidelity_table(runs_table(), "ref")
    assert [r.protocol for r in rows] == ["ref", "proxy"]
    ref = rows[0]
    assert ref.spearman == pytest.approx(1.0) and math.isnan(ref.noise_ceiling) and ref.cpu_minutes == pytest.approx(4.0)
    md = format_fidelity(rows, "ref")
    assert "| proxy | 2 | 4 | 1.00 | 1.00 | 0.90 | 0.80 | 1.0 | 1.000 |" in md
    assert "| ref | 1 | 4 | 1.00 | 1.00 | 1.00 | - | 4.0 | 0.250 |" in md


def test_agreement_verdicts_compare_every_other_protocol_with_the_baseline() -> None:
    df = runs_table()
    worse = df[df["protocol"] == "proxy"].assign(protocol="worse")
    worse["accuracy"] = -worse["accuracy"]  # ranks the set backwards
    verdicts = agreement_verdicts(pd.concat([df, worse], ignore_index=True), "ref", "proxy")
    assert list(verdicts) == ["worse"]
    assert verdicts["worse"].diff == pytest.approx(-2.0) and "n=4" in verdicts["worse"].reason


def test_noise_ceiling_of_an_anti_correlated_pair() -> None:
    df = runs_table()
    df.loc[(df["protocol"] == "proxy") & (df["seed"] == 1), "accuracy"] = [4.0, 3.0, 2.0, 1.0]
    assert noise_ceiling(df, "proxy") == pytest.approx(-0.8)  # d^2 = 9 + 0 + 0 + 9


def test_unknown_protocol_is_one_line() -> None:
    with pytest.raises(FidelityError, match="no runs of protocol 'nope'"):
        fidelity(runs_table(), "nope", "ref")


def epochs_table(per_epoch: dict[int, list[float]]) -> pd.DataFrame:
    rows = []
    for epoch, accs in per_epoch.items():
        for arch, acc in zip(ARCHS, accs, strict=True):
            rows.append({"architecture": arch, "protocol": "proxy", "seed": 0, "epoch": epoch, "accuracy": acc})
    return pd.DataFrame(rows)


# final ranks a < b < c < d at epoch 5; epoch 1 reversed, 2 half right, 3 and 4 settled
SETTLING = {
    1: [4.0, 3.0, 2.0, 1.0],  # rho -1
    2: [1.0, 3.0, 2.0, 4.0],  # rho 0.8
    3: [1.0, 2.0, 3.0, 4.0],  # rho 1
    4: [1.0, 2.0, 3.0, 4.0],
    5: [1.0, 2.0, 3.0, 4.0],
}


def test_epoch_agreement_against_the_final_epoch() -> None:
    rho = epoch_agreement(epochs_table(SETTLING), 5)
    assert rho == pytest.approx({1: -1.0, 2: 0.8, 3: 1.0, 4: 1.0})


def test_rung_schedule_starts_where_ranks_have_settled() -> None:
    table = epochs_table(SETTLING)
    assert rung_schedule(table, 5, 0.9) == (3, 4)
    assert rung_schedule(table, 5, 0.8) == (2, 3, 4)
    assert rung_schedule(table, 5, 0.8, max_rungs=1) == (2,)
    assert rung_schedule(table, 5, 1.01) == ()  # never settled before the end: no rung
    # judged against epoch 3 as the final one, epochs 1 and 2 count
    assert rung_schedule(table, 3, 0.8) == (2,)


def test_a_rung_that_is_unsettled_after_a_settled_one_resets_the_start() -> None:
    wobble = {**SETTLING, 2: [1.0, 2.0, 3.0, 4.0], 3: [4.0, 3.0, 2.0, 1.0]}
    assert rung_schedule(epochs_table(wobble), 5, 0.8) == (4,)


def test_rung_schedule_errors_are_one_line() -> None:
    table = epochs_table(SETTLING)
    with pytest.raises(RungScheduleError, match="5 rungs asked for 5-epoch trials: at most 4"):
        rung_schedule(table, 5, max_rungs=5)
    with pytest.raises(FidelityError, match="no epoch 6"):
        rung_schedule(table, 6)
    with pytest.raises(RungScheduleError, match=r"3 rung\(s\) \(1, 2, 3\) for 3-epoch trials: at most 2"):
        check_rungs([1, 2, 3], 3)
    with pytest.raises(RungScheduleError, match=r"epochs 1 \.\. 3"):
        check_rungs([4], 4)
    with pytest.raises(RungScheduleError, match="increasing"):
        check_rungs([2, 1], 4)
    assert check_rungs([1, 2], 3) == (1, 2)
    for err in (RungScheduleError, FidelityError):
        assert "\n" not in str(err("x"))


def test_architecture_set_is_fixed_stratified_and_buildable() -> None:
    arch = architecture_set()
    assert len(arch) >= 16 and arch == architecture_set()
    assert architecture_set(seed=1) != arch
    labels = [label for label, _ in arch]
    assert len(set(labels)) == len(labels)
    assert {p["family"] for _, p in arch} == set(FAMILIES)
    assert sum(label.startswith("sampled") for label in labels) == 7
    for family in FAMILIES:  # widths across each family's range
        widths = {p[f"{family}.width_mult"] for _, p in arch if p["family"] == family}
        assert len(widths) >= 2
    for label, params in arch:
        if label.startswith("sampled"):
            assert spec_totals(spec_from_params(params)).macs <= 1000e6


def test_trial_tables_and_cpu_time_from_a_study() -> None:
    import optuna

    from search.fidelity import CPU_ATTR, CpuTimed, trial_tables

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 0.5}, user_attrs={"label": "a", "seed": 1})

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        for step, acc in enumerate([20.0, 30.0]):
            trial.report(acc, step)
        sum(i * i for i in range(200_000))  # some CPU
        trial.set_user_attr("accuracy", 30.0)
        return 30.0

    study.optimize(CpuTimed(objective), n_trials=1)
    study.optimize(CpuTimed(lambda t: t.suggest_float("x", 0.0, 1.0)), n_trials=1)  # no label: not a run
    assert study.trials[0].user_attrs[CPU_ATTR] > 0
    runs, epochs = trial_tables(study.trials, "p")
    assert runs[["architecture", "protocol", "seed", "accuracy"]].values.tolist() == [["a", "p", 1, 30.0]]
    assert runs["cpu_seconds"].iloc[0] == study.trials[0].user_attrs[CPU_ATTR]
    assert epochs[["epoch", "accuracy"]].values.tolist() == [[1, 20.0], [2, 30.0]]


def test_at_chance_lists_architectures_near_guessing() -> None:
    from search.fidelity import at_chance

    df = runs_table()
    assert at_chance(df, "ref", 10.0) == ["a"]
    assert at_chance(df, "ref", 5.0) == []


def test_current_trials_leave_out_runs_of_an_older_set() -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from search.fidelity import current_trials
    from search.searchspace import preset_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    now = preset_params("squeezenet", 1.0)
    older = {k: v for k, v in now.items() if k != "squeezenet.head_act"}  # the same network, stored before the knob
    changed = {**now, "squeezenet.head_act": "none"}
    runs = (("sq", now), ("sq", older), ("sq", changed), ("gone", now))
    archs = [("sq", now)]
    queued = optuna.create_study()
    for label, params in runs:
        queued.enqueue_trial(params, user_attrs={"label": label})
    assert [t.number for t in current_trials(queued.get_trials(), archs)] == [0, 1]  # their fixed parameters count
    done = optuna.create_study()
    for label, params in runs:
        dists = {k: CategoricalDistribution((v,)) for k, v in params.items()}
        done.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=1.0, user_attrs={"label": label}))
    assert [t.number for t in current_trials(done.get_trials(), archs)] == [0, 1]


def test_a_searched_trial_stops_once_the_studys_cpu_budget_is_spent() -> None:
    import optuna

    from search.fidelity import CPU_ATTR, stop_if_budget_spent

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for source, cpu in (("search", 1.0), ("baseline", 50.0)):  # a preset's CPU time is not the search's
        study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"source": source, CPU_ATTR: cpu}))
    trial = study.ask()
    stop_if_budget_spent(trial, 0.5, 2.0, epoch=1, accuracy=20.0)  # 1.5 of 2 CPU seconds: goes on
    assert study.trials[-1].user_attrs[CPU_ATTR] == 0.5  # what it used so far, for every worker to count
    with pytest.raises(optuna.TrialPruned, match="CPU budget is spent"):
        stop_if_budget_spent(trial, 1.1, 2.0, epoch=2, accuracy=30.0)
    a = study.trials[-1].user_attrs
    assert (a[CPU_ATTR], a["stopped"], a["epochs"], a["accuracy"]) == (1.1, "cpu budget", 2, 30.0)


def test_a_trials_cpu_so_far_is_read_on_the_clock_cpu_timed_stores() -> None:
    """A budget check inside a trial counts from the trial's start (what CpuTimed stores at its end),
    not from the start of its training."""
    import optuna

    from search.fidelity import CPU_ATTR, CpuTimed, trial_cpu_seconds

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen: list[float | None] = []

    def objective(trial: optuna.Trial) -> float:
        end = time.process_time() + 0.05
        while time.process_time() < end:  # CPU spent before "training" starts
            pass
        seen.append(trial_cpu_seconds())
        return 1.0

    study = optuna.create_study()
    study.optimize(CpuTimed(objective), n_trials=1)
    so_far = seen[0]
    assert so_far is not None and 0.05 <= so_far <= study.trials[0].user_attrs[CPU_ATTR]
    assert trial_cpu_seconds() is None  # outside a timed trial: no clock


def test_a_stopped_trial_records_where_it_stopped() -> None:
    import optuna

    from search.fidelity import stop_trial

    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="why not"):
        stop_trial(trial, "why not", epoch=2, accuracy=41.5, stopped="cpu budget")
    assert study.trials[-1].user_attrs == {"accuracy": 41.5, "epochs": 2, "stopped": "cpu budget"}
