"""The search space: every sample is a valid spec inside the declared ranges; presets are in it."""

from __future__ import annotations

import optuna
import pytest

import space
from search.budget import validate_for_clip
from search.searchspace import (
    FAMILIES,
    SPACE,
    corner_params,
    factory_kwargs,
    parse_families,
    preset_params,
    sample_params,
    spec_from_params,
)
from space.spec import SpecError


def test_space_covers_the_five_families() -> None:
    assert set(FAMILIES) == {"squeezenet", "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2"}


@pytest.mark.parametrize("seed", range(4))
def test_samples_are_valid_specs_inside_the_declared_ranges(seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    seen = set()
    for _ in range(150):
        trial = study.ask()
        params = sample_params(trial, FAMILIES)
        family = params["family"]
        seen.add(family)
        fs = SPACE[family]
        assert fs.width[0] <= params[f"{family}.width_mult"] <= fs.width[1]
        for i, (lo, hi) in enumerate(fs.depths):
            assert lo <= params[f"{family}.depth{i}"] <= hi
            assert params[f"{family}.mult{i}"] in fs.stage_mults
        assert set(trial.params) == set(params)
        spec = spec_from_params(params)  # valid at the budget clip, or it raises
        assert [s.repeats for s in spec.stages] == [params[f"{family}.depth{i}"] for i in range(len(fs.depths))]
        validate_for_clip(spec, (16, 48, 48))  # and at the default proxy clip
        study.tell(trial, 0.0)
    assert seen == set(FAMILIES)


@pytest.mark.parametrize("row", [r for r in space.table8() if r.model in SPACE], ids=lambda r: f"{r.model}-{r.width_mult}")
def test_every_paper_preset_is_a_point_of_the_space(row: space.PaperRow) -> None:
    params = preset_params(row.model, row.width_mult)
    fs = SPACE[row.model]
    assert fs.width[0] <= row.width_mult <= fs.width[1]
    assert all(lo <= d <= hi for (lo, hi), d in zip(fs.depths, fs.paper_depths, strict=True))
    assert spec_from_params(params) == space.paper_spec(row.model, width_mult=row.width_mult)


@pytest.mark.parametrize("family", FAMILIES)
def test_corners_are_the_cheapest_candidates(family: str) -> None:
    from profiler.counting import spec_totals

    corner = min(spec_totals(spec_from_params(p)).macs for p in corner_params(family))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        trial = study.ask()
        params = sample_params(trial, [family])
        assert spec_totals(spec_from_params(params)).macs >= corner
        study.tell(trial, 0.0)


def test_factory_kwargs_expand_the_knobs() -> None:
    family, kw = factory_kwargs(preset_params("mobilenetv2", 0.45))
    assert family == "mobilenetv2" and kw["expansions"] == [1.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
    assert factory_kwargs(preset_params("shufflenet", 1.0))[1]["groups"] == 3


def test_squeezenet_head_activation_is_a_knob_and_the_preset_keeps_the_papers() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {sample_params(study.ask(), ["squeezenet"])["squeezenet.head_act"] for _ in range(20)}
    assert drawn == set(SPACE["squeezenet"].head_acts) == {"none", "relu"}
    preset = preset_params("squeezenet", 1.0)
    assert preset["squeezenet.head_act"] == "relu" and spec_from_params(preset).head.act == "relu"
    bare = spec_from_params({**preset, "squeezenet.head_act": "none"})
    assert bare.head.act == "none" and bare.stages == spec_from_params(preset).stages
    older = {k: v for k, v in preset.items() if k != "squeezenet.head_act"}  # a study from before the knob
    assert spec_from_params(older) == spec_from_params(preset)
    assert {p["squeezenet.head_act"] for p in corner_params("squeezenet")} == {"none"}


def test_price_candidates_equals_pricing_each_spec_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import search.searchspace as ss
    from profiler.counting import spec_totals

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    params = [sample_params(study.ask(), FAMILIES, sgs=True) for _ in range(40)]
    clip = (16, 64, 64)
    expected = [spec_totals(spec_from_params(p, clip=clip, num_classes=10)) for p in params]
    collecting = []

    def watched(spec: space.NetSpec) -> object:
        collecting.append(gc.isenabled())
        return spec_totals(spec)

    monkeypatch.setattr(ss, "spec_totals", watched)
    assert ss.price_candidates(iter(params), clip=clip, num_classes=10, chunk=7) == expected  # 5 full chunks and a part
    assert collecting == [False] * len(params)
    assert gc.isenabled()
    bad = {**preset_params("mobilenet", 1.0), "mobilenet.width_mult": -1.0}
    with pytest.raises(space.SpecError):
        ss.price_candidates([params[1], bad])
    assert gc.isenabled()


def test_families_given_as_text_are_all_named() -> None:
    assert parse_families(None) == FAMILIES and parse_families("mobilenet,mobilenet") == ("mobilenet",)
    for text in ("", "shufflenet,", ",mobilenet", "mobilenet,,shufflenet"):
        with pytest.raises(SpecError, match=r"families: (none given|an empty family name)"):
            parse_families(text)  # '' was all families
