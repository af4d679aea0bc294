"""SEVNet and SGS in the search: sampled like the other knobs, screened and recorded at the mean cost."""

from __future__ import annotations

import optuna
import pytest
import torch

import space
from profiler.counting import spec_totals
from profiler.datacost import data_cost, dataset_bins
from search.budget import Budget, check_batch_norms, screen, validate_for_clip
from search.searchspace import FAMILIES, SPACE, corner_params, preset_params, sample_params, spec_from_params
from search.study import Objective, ProxyConfig, SearchConfig, load_proxy
from space.sgs import with_sgs
from space.spec import SpecError


@pytest.mark.parametrize("width", space.model_info("sevnet").paper_widths)
def test_sevnet_presets_are_points_of_the_space(width: float) -> None:
    params = preset_params("sevnet", width)
    assert params["sevnet.sgs"] == -1 and params["sevnet.groups"] == 4 and params["sevnet.t_kernel"] == 3 and not params["sevnet.se"]
    assert spec_from_params(params) == space.paper_spec("sevnet", width_mult=width)


def test_sevnet_and_sgs_samples_are_valid_at_both_clips() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    placements: dict[str, set[int]] = {}
    for _ in range(120):
        trial = study.ask()
        params = sample_params(trial, [*FAMILIES, "sevnet"], sgs=True)
        family = params["family"]
        assert set(trial.params) == set(params)
        placements.setdefault(family, set()).add(params[f"{family}.sgs"])
        spec = spec_from_params(params)
        after = params[f"{family}.sgs"]
        assert [s.after_stage for s in spec.sgs] == ([after] if after >= 0 else [])
        assert [s.bin_width for s in spec.sgs] == ([params[f"{family}.sgs_bin_width"]] if after >= 0 else [])
        validate_for_clip(spec, (16, 48, 48))
        if family == "sevnet":
            assert {s.t_kernel for s in spec.stages} == {params["sevnet.t_kernel"]}
            assert {s.se for s in spec.stages} == {params["sevnet.se"]}
        study.tell(trial, 0.0)
    assert placements["sevnet"] == {-1, *SPACE["sevnet"].sgs_after}
    assert all(-1 in p and len(p) > 1 for p in placements.values())
    plain = sample_params(optuna.create_study().ask(), ["mobilenet"])
    assert "mobilenet.sgs" not in plain, "without sgs=True the space is the one it was"


def test_sevnet_corners_are_its_cheapest() -> None:
    corner = min(spec_totals(spec_from_params(p)).macs for p in corner_params("sevnet"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        assert spec_totals(spec_from_params(sample_params(trial, ["sevnet"]))).macs >= corner
        study.tell(trial, 0.0)


def test_the_screen_uses_the_mean_over_clips_when_given() -> None:
    spec = with_sgs(space.paper_spec("sevnet", width_mult=0.5), 0)
    bins = [(2,), (4,), (12,)]
    mean = data_cost(spec, bins).mean_macs
    upper = spec_totals(spec).macs
    assert mean < upper
    budget = Budget(mflops=(mean + upper) / 2 / 1e6)
    assert screen(spec, budget, bins=bins).feasible
    assert screen(spec, budget, bins=bins).cost.macs == round(mean)
    assert not screen(spec, budget).feasible, "without measured clips: the most expensive clip"


def test_sgs_inside_a_search_trial() -> None:
    """A real trial: the candidate is screened at the mean over the proxy validation clips of the
    untrained network, trained, and recorded at the trained network's mean."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    proxy = ProxyConfig(train_samples=16, val_samples=8, epochs=1, batch_size=8)
    config = SearchConfig(budget=Budget(mflops=500), families=("sevnet",), proxy=proxy, sgs=True, pruner="none")
    data = load_proxy(proxy, progress=False)
    params = {**preset_params("sevnet", 0.25), "sevnet.sgs": 0, "sevnet.sgs_bin_width": 0.25}
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params, user_attrs={"seed": 3})
    study.optimize(Objective(config, data), n_trials=1)
    t = study.trials[0]
    a = t.user_attrs
    assert t.state.name == "COMPLETE" and a["trained"] and a["feasible"] and a["accuracy"] is not None
    spec = space.NetSpec.from_json(a["spec"])
    assert spec.sgs[0].bin_width == 0.25 and t.params["sevnet.sgs"] == 0
    # the screen's number: the untrained network (seed 3) on the 8 validation clips, counted at the budget clip
    torch.manual_seed(3)
    untrained = space.build(validate_for_clip(spec, proxy.clip))
    expected = data_cost(spec, dataset_bins(untrained, data.val)).mean_cost().macs
    assert a["macs_untrained"] == expected
    assert a["macs_min"] <= a["macs"] <= a["macs_max"] <= a["macs_upper_bound"] == spec_totals(spec).macs
    assert len(a["sgs_mean_bins"]) == 1 and 1 <= a["sgs_mean_bins"][0] <= spec.sgs[0].bins


def test_sgs_over_budget_after_training_is_infeasible_to_the_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The untrained network keeps one bin of every clip (cheap: within budget), the trained one all
    of them (over it): the study's constraint must say over budget, not the screen's estimate."""
    from search import study as st
    from tests.search.test_study import fake_fit

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    proxy = ProxyConfig(train_samples=16, val_samples=8, epochs=1, batch_size=8)
    params = {**preset_params("sevnet", 0.25), "sevnet.sgs": 0, "sevnet.sgs_bin_width": 0.25}
    spec = spec_from_params(params, clip=(16, 112, 112), num_classes=10)
    cheap, full = data_cost(spec, [(1,)]).mean_macs, spec_totals(spec).macs
    budget = Budget(mflops=(cheap + full) / 2 / 1e6)
    config = SearchConfig(budget=budget, families=("sevnet",), proxy=proxy, sgs=True, pruner="none")
    data = load_proxy(proxy, progress=False)
    monkeypatch.setattr(st.Objective, "_sgs_bins", lambda self, spec, seed: [(1,)] * 8)
    monkeypatch.setattr(st, "dataset_bins", lambda model, dataset, **_: [(spec.sgs[0].bins,)] * 8)
    monkeypatch.setattr("search.train.fit", fake_fit([50.0]))
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params)
    study.optimize(Objective(config, data), n_trials=1)
    t = study.trials[0]
    assert t.user_attrs["macs_untrained"] == round(cheap) and t.user_attrs["macs"] == full
    assert t.user_attrs["feasible"] is False and "after training" in t.user_attrs["rejected_reason"]
    assert t.constraints["macs"] == pytest.approx(full / (budget.mflops * 1e6) - 1) and t.constraints["macs"] > 0


SGS_AFTER_FIRST = ["mobilenet", "mobilenetv2", "shufflenetv2", "squeezenet", "sevnet"]
"""The families whose network with SGS after its first stage can be built at a 16x32x32 clip."""


@pytest.mark.parametrize("family", SGS_AFTER_FIRST)
def test_an_sgs_network_that_would_normalise_one_position_per_clip_cannot_train_at_that_clip(family: str) -> None:
    spec = spec_from_params({**preset_params(family, 0.5), f"{family}.sgs": SPACE[family].sgs_after[0], f"{family}.sgs_bin_width": 0.5})
    with pytest.raises(SpecError, match=r"_bn would normalise a single value per channel \(a clip that keeps 1 bin\(s\) alone"):
        validate_for_clip(spec, (16, 32, 32))
    validate_for_clip(spec, (16, 48, 48))  # its last maps are 2x2 there
    check_batch_norms(spec, batch_size=16)  # and larger still at the budget clip
    check_batch_norms(validate_for_clip(spec_from_params(preset_params(family, 0.5)), (16, 32, 32)), batch_size=2)  # no SGS: whole batches


def test_a_search_rejects_such_a_candidate_instead_of_stopping_in_its_training() -> None:
    """A clip that keeps one bin runs on alone after the SGS layer; at 16x32x32 MobileNet's last maps are 1x1x1, and
    training stopped the whole search with PyTorch's "Expected more than 1 value per channel when training"."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    proxy = ProxyConfig(clip=(16, 32, 32), train_samples=16, val_samples=8, epochs=1, batch_size=8)
    config = SearchConfig(budget=Budget(mflops=500), families=("mobilenet",), proxy=proxy, sgs=True, pruner="none")
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({**preset_params("mobilenet", 0.5), "mobilenet.sgs": 0, "mobilenet.sgs_bin_width": 0.5})
    study.optimize(Objective(config, load_proxy(proxy, progress=False)), n_trials=1)
    a = study.trials[0].user_attrs
    assert "accuracy" not in a and not a["feasible"] and "single value per channel" in a["rejected_reason"]
