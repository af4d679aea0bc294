"""Budget screening: over-budget candidates never train; impossible budgets name the minimum."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
import pytest

import space
from profiler.counting import spec_totals
from search.budget import Budget, BudgetError, ProxyClipError, check_batch_norms, feasible_families, parse_count, screen, trainable_families
from search.searchspace import FAMILIES
from search.study import Objective, ProxyConfig, ProxyData, SearchConfig


def test_a_budget_says_what_the_clip_bounds() -> None:
    assert Budget(mflops=100, params=1e3).describe() == "macs <= 100 M per 16x112x112 clip, params <= 0.001 M"  # was: params per clip
    assert Budget(latency_ms=40, clip=(8, 56, 56)).describe() == "latency <= 40 ms per batch of 8 8x56x56 clips"
    assert Budget().describe() == "no budget"


def test_screen_measures_each_bound() -> None:
    spec = space.paper_spec("mobilenetv2", width_mult=0.45)
    macs = spec_totals(spec).macs
    assert screen(spec, Budget(mflops=macs / 1e6)).feasible
    over = screen(spec, Budget(mflops=macs / 1e6 - 1))
    assert not over.feasible and over.constraints[0] > 0 and "macs" in over.reason
    assert not screen(spec, Budget(params=1e6)).feasible
    calls: list[Any] = []
    assert not screen(spec, Budget(mflops=1000, latency_ms=5), latency=lambda s: calls.append(s) or 10.0).feasible
    assert calls == [spec]
    screen(spec, Budget(mflops=1, latency_ms=5), latency=lambda s: calls.append(s) or 1.0)
    assert len(calls) == 1, "latency is not measured for candidates already over the analytic budget"


def test_an_impossible_budget_names_the_smallest_network() -> None:
    with pytest.raises(BudgetError, match=r"below the smallest network these families can build: \d+\.\d M multiply-adds"):
        feasible_families(FAMILIES, Budget(mflops=1.0))
    fits, minima = feasible_families(FAMILIES, Budget(mflops=40))
    assert fits and all(minima[f][0] <= 40e6 for f in fits)
    assert set(FAMILIES) - set(fits) == {f for f in FAMILIES if minima[f][0] > 40e6}


def test_a_batch_of_one_clip_cannot_train_where_a_batch_norm_sees_a_single_position() -> None:
    small = space.paper_spec("mobilenet", width_mult=0.5, sample_size=32)  # its last maps are 1x1x1
    with pytest.raises(space.SpecError, match=r"stages\.3\.0\.dw_bn would normalise a single value per channel \(a batch of 1 clip"):
        check_batch_norms(small, batch_size=1)
    check_batch_norms(small, batch_size=2)  # two values per channel
    check_batch_norms(space.paper_spec("mobilenet", width_mult=0.5), batch_size=1)  # 1x4x4 at 112x112


def test_families_that_cannot_train_at_the_proxy_clip_are_left_out_and_none_left_is_an_error() -> None:
    assert trainable_families(FAMILIES, (16, 48, 48), batch_size=16) == FAMILIES
    assert trainable_families(FAMILIES, (16, 32, 32), batch_size=16) == tuple(f for f in FAMILIES if f != "shufflenet")  # its pools
    with pytest.raises(ProxyClipError, match=r"can train at the proxy clip 16x32x32 in batches of 1: squeezenet: .*shufflenetv2: "):
        trainable_families(FAMILIES, (16, 32, 32), batch_size=1)


def test_parse_count() -> None:
    assert parse_count("2.5M") == 2.5e6 and parse_count("800k") == 8e5 and parse_count("1500000") == 1.5e6
    with pytest.raises(ValueError):
        parse_count("lots")
    with pytest.raises(ValueError, match="too large a count: '1e400'"):
        parse_count("1e400")  # was inf: a budget of "params <= inf M", an expansion that never reached its target


class Recorder(Objective):
    """An Objective whose training only records what it was asked to train."""

    trained: list[space.NetSpec]

    def _train(self, trial: optuna.Trial, spec: space.NetSpec, seed: int) -> tuple[float, float, int]:
        self.trained.append(spec)
        return 50.0, 50.0, 1


def test_screening_never_lets_an_over_budget_spec_train() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = Budget(mflops=120)
    config = SearchConfig(budget=budget, families=FAMILIES, proxy=ProxyConfig())
    objective = Recorder(config, ProxyData(None, None, 10, "motion"))
    objective.trained = []
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=120)
    rejected = [t for t in study.trials if not t.user_attrs["feasible"]]
    assert objective.trained and rejected, "the budget should cut the space"
    assert all(spec_totals(s).macs <= 120e6 for s in objective.trained)
    assert all(t.user_attrs["macs"] > 120e6 and t.constraints["macs"] > 0 for t in rejected)
    assert all(t.constraints["macs"] <= 0 for t in study.trials if t.user_attrs["feasible"])
    assert len(objective.trained) == sum(1 for t in study.trials if t.user_attrs.get("trained"))
    assert all(s.clip == config.proxy.clip and s.num_classes == 10 for s in objective.trained)


def test_constrained_tpe_concentrates_on_the_feasible_region() -> None:
    """Told about violations, TPE proposes more feasible candidates than random sampling does."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = SearchConfig(budget=Budget(mflops=60), families=FAMILIES, proxy=ProxyConfig())

    def feasible_share(sampler: optuna.samplers.BaseSampler) -> float:
        objective = Recorder(config, ProxyData(None, None, 10, "motion"))
        objective.trained = []
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=80)
        late = study.trials[40:]
        return sum(t.user_attrs["feasible"] for t in late) / len(late)

    tpe = feasible_share(optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, n_startup_trials=10))
    rnd = feasible_share(optuna.samplers.RandomSampler(seed=0))
    assert tpe > rnd


def test_budget_round_trips_through_the_study_config() -> None:
    config = SearchConfig(budget=Budget(mflops=200, params=2e6, clip=(16, 112, 112)), families=("shufflenet",))
    assert SearchConfig.from_dict(config.to_dict()) == config
    assert dataclasses.replace(config, objective="pareto").directions == ["maximize", "minimize"]
