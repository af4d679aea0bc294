"""Scaling studies: sizing steps by cost, planning (axes, compound, expansion), resuming, proxy data at every size."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
from optuna.trial import TrialState

import search.data.proxy as proxy
import space
from search import scale as sc
from search.data import proxy_dataset
from space.spec import SpecError


def shufflenet() -> space.NetSpec:
    return space.paper_spec("shufflenet", width_mult=0.5, num_classes=10)


def shufflenetv2() -> space.NetSpec:
    """A family without an expansion axis."""
    return space.paper_spec("shufflenetv2", width_mult=0.5, num_classes=10)


def results(points: list[sc.Point], accuracy: Callable[[sc.Point], float]) -> dict[str, sc.Result]:
    return {p.id: sc.Result((accuracy(p),), 1, False) for p in points}


# -- sizing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("axis", "ratio"), [("width", 2.0), ("width", 0.5), ("depth", 2.0), ("frames", 2.0), ("resolution", 0.5)])
def test_a_factor_is_found_for_a_cost_ratio(axis: str, ratio: float) -> None:
    found = sc.factor_for_cost(shufflenet(), axis, ratio)
    assert found is not None
    factor, spec = found
    assert (factor > 1) == (ratio > 1)
    assert sc.macs(spec) / sc.macs(shufflenet()) == pytest.approx(ratio, rel=0.12)


def test_a_cost_the_axis_cannot_reach_gives_none() -> None:
    assert sc.factor_for_cost(shufflenet(), "depth", 0.25) is None  # one unit per stage still costs more
    assert sc.factor_for_cost(shufflenet(), "frames", 0.5) is None  # ShuffleNetV1 needs 16 frames


def test_the_proxy_clip_scales_with_the_clip() -> None:
    base = shufflenet()
    assert sc.proxy_clip_for(base, base, (16, 48, 48)) == (16, 48, 48)
    assert sc.proxy_clip_for(base.replace(clip=(32, 112, 112)), base, (16, 48, 48)) == (32, 48, 48)
    wide = sc.proxy_clip_for(base.replace(clip=(16, 224, 224)), base, (16, 48, 48))
    assert wide[0] == 16 and abs(wide[1] - 96) <= 3 and wide[1] == wide[2]


def test_the_proxy_clip_is_one_the_points_can_train_at_in_the_proxys_batches() -> None:
    from search.budget import check_batch_norms

    base = space.paper_spec("mobilenet", width_mult=0.5)
    assert sc.proxy_clip_for(base, base, (16, 32, 32)) == (16, 32, 32)  # last maps 1x1x1: fine for batches of 2 or more
    alone = sc.proxy_clip_for(base, base, (16, 32, 32), batch_size=1)
    assert alone != (16, 32, 32) and abs(alone[1] - 32) <= 3
    check_batch_norms(base.replace(clip=alone), batch_size=1)
    cfg = sc.ScaleConfig(base.to_json(), "axes", ("width",), ratios=(2.0,), proxy_clip=(16, 32, 32), batch_size=1)
    assert {p.proxy_clip for p in sc.plan(cfg, {}).points} == {alone}  # the base and its wider point


# -- planning ----------------------------------------------------------------------------------------


def test_axes_mode_plans_the_base_and_each_reachable_ratio_and_notes_the_others() -> None:
    cfg = sc.ScaleConfig(shufflenet().to_json(), "axes", ("width", "depth"), ratios=(0.25, 2.0))
    plan = sc.plan(cfg, {})
    assert [p.id for p in plan.points] == ["base/0/base", "axes/0/width@0.25", "axes/0/width@2", "axes/0/depth@2"]
    assert plan.notes == ["depth: no factor gives 0.25x the base cost; left out"] and not plan.finished
    assert sc.plan(cfg, results(plan.points, lambda p: 50.0)).finished


def test_factors_are_used_as_given_and_a_bad_one_names_the_axis() -> None:
    cfg = sc.ScaleConfig(shufflenet().to_json(), "axes", ("frames",), factors=(2.0,))
    assert [p.spec.clip for p in sc.plan(cfg, {}).points] == [(16, 112, 112), (32, 112, 112)]
    for bad in (0.25, -1.0):
        with pytest.raises(SpecError) as e:
            sc.plan(sc.ScaleConfig(shufflenet().to_json(), "axes", ("frames",), factors=(bad,)), {})
        assert e.value.field == "frames"


def test_a_config_with_an_axis_the_family_lacks_is_refused() -> None:
    with pytest.raises(SpecError, match=r"^expansion: shufflenetv2 has no expansion axis"):
        sc.ScaleConfig(shufflenetv2().to_json(), "axes", ("width", "expansion"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"axes": ("width", "width"), "factors": (2.0,)}, "axis width is given twice"),
        ({"axes": ("width",), "factors": (2.0, 2.0)}, "factor 2 is given twice"),
        ({"axes": ("width",), "ratios": (0.5, 2.0, 2.0)}, "ratio 2 is given twice"),
        ({"axes": ("width", "width"), "mode": "expand", "to_macs": 3e8}, "axis width is given twice"),
    ],
)
def test_a_repeated_axis_factor_or_ratio_is_refused(settings: dict[str, object], message: str) -> None:
    """Each made its point twice under one id: twice in points.csv, a stray pruned trial, "2 of 2" steps."""
    with pytest.raises(sc.ScaleError, match=f"^{message}; give each once$"):
        sc.ScaleConfig(shufflenet().to_json(), **settings)  # type: ignore[arg-type]


def test_the_config_round_trips_through_its_dict() -> None:
    cfg = sc.ScaleConfig(shufflenet().to_json(), "expand", ("width", "depth:1"), to_macs=3e8, seeds=2, proxy_clip=(8, 32, 32))
    assert sc.ScaleConfig.from_dict(cfg.to_dict()) == cfg


def test_the_expansion_keeps_the_best_gain_per_multiply_add_until_the_target() -> None:
    base = shufflenet()
    cfg = sc.ScaleConfig(base.to_json(), "expand", ("width", "depth", "resolution"), to_macs=5 * sc.macs(base))
    favourite = {1: "depth", 2: "resolution", 3: "width"}  # the toy accuracy rewards one axis per step

    def accuracy(p: sc.Point) -> float:
        return 40.0 + 10 * p.step + (5.0 if favourite.get(p.step) == p.curve else 0.0)

    done: dict[str, sc.Result] = {}
    for _ in range(10):
        plan = sc.plan(cfg, done)
        if plan.finished:
            break
        done = results(plan.points, accuracy)
    assert plan.finished
    assert [p.curve for p in plan.path] == ["base", "depth", "resolution", "width"]
    ratios = [b.macs / a.macs for a, b in zip(plan.path, plan.path[1:], strict=False)]
    assert ratios[:2] == [pytest.approx(2.0, rel=0.1)] * 2  # each step about doubles the cost ...
    assert plan.path[-1].macs == pytest.approx(cfg.to_macs, rel=0.1)  # ... and the last lands on the target
    assert len(plan.points) == 1 + 3 * 3 and not plan.notes


def test_an_axis_the_step_cannot_size_is_left_out_with_a_note() -> None:
    cfg = sc.ScaleConfig(shufflenet().to_json(), "expand", ("width", "frames"), to_macs=3 * sc.macs(shufflenet()), step=1.5)
    plan = sc.plan(cfg, {"base/0/base": sc.Result((50.0,), 1, False)})
    assert [p.id for p in plan.points] == ["base/0/base", "expand/1/width"]  # ShuffleNetV1 takes 16 or 32 frames, not 24
    assert plan.notes == ["step 1: no frames factor gives 1.50x the cost of base/0/base (the strides' sizes); left out"]


def test_an_expansion_step_that_would_not_grow_the_network_is_no_candidate() -> None:
    """A 2% step of frames rounds to the same 16 frames: the unchanged network is not a step (was chosen
    at every step, gain 0, forever)."""
    base = space.paper_spec("mobilenetv2", width_mult=0.2, num_classes=10)
    cfg = sc.ScaleConfig(base.to_json(), "expand", ("frames",), to_macs=57.4e6)
    plan = sc.plan(cfg, {"base/0/base": sc.Result((50.0,), 1, False)})
    assert [p.id for p in plan.points] == ["base/0/base"] and plan.finished
    assert plan.notes[-1].startswith("step 1: no axis can grow mobilenetv2")


def test_an_unfinished_step_waits_for_all_its_seeds() -> None:
    cfg = sc.ScaleConfig(shufflenet().to_json(), "expand", ("width",), to_macs=4 * sc.macs(shufflenet()), seeds=2)
    one_seed = {"base/0/base": sc.Result((50.0,), 1, False)}
    assert [p.id for p in sc.plan(cfg, one_seed).points] == ["base/0/base"]
    both = {"base/0/base": sc.Result((50.0, 52.0), 2, False)}
    assert [p.id for p in sc.plan(cfg, both).points] == ["base/0/base", "expand/1/width"]


# -- compound ----------------------------------------------------------------------------------------


def test_the_compound_grid_splits_one_step_between_the_axes() -> None:
    combos = sc.compound_grid(shufflenet(), ("width", "depth", "resolution"), step=2.0, grid=2)
    assert len(combos) == 6  # (1,0,0) x3 and (1/2,1/2,0) x3
    for c in combos:
        cost = sc.macs(sc.scale_many(shufflenet(), c)) / sc.macs(shufflenet())
        assert 1.7 < cost < 2.4


def test_compound_exponents_are_fitted_on_a_toy_objective() -> None:
    spec = shufflenet()
    axes = ("width", "depth", "resolution")
    combos = sc.compound_grid(spec, axes, step=2.0, grid=2)

    def toy(c: dict[str, float]) -> float:  # best when width and resolution share the step
        return -abs(math.log2(c.get("width", 1.0)) - 0.35) - abs(math.log2(c.get("resolution", 1.0)) - 0.2) - math.log2(c.get("depth", 1.0))

    exponents = sc.fit_compound(combos, [toy(c) for c in combos], step=2.0)
    best = max(combos, key=toy)
    assert set(best) == {"width", "resolution"}
    assert exponents == {a: pytest.approx(math.log2(f)) for a, f in best.items()}
    assert sc.fit_compound(combos, [math.nan] * (len(combos) - 1) + [0.0]) == {
        a: pytest.approx(math.log2(f)) for a, f in combos[-1].items()
    }
    phi, scaled = sc.compound_spec(spec, exponents, ratio=4.0, step=2.0)
    assert sc.macs(scaled) / sc.macs(spec) == pytest.approx(4.0, rel=0.1) and phi > 1
    assert scaled.clip[1] > spec.clip[1] and scaled.width_mult > spec.width_mult and scaled.stages[0].repeats == spec.stages[0].repeats


def test_compound_mode_trains_the_grid_then_the_targets() -> None:
    cfg = sc.ScaleConfig(shufflenet().to_json(), "compound", ("width", "resolution"), ratios=(4.0,), grid=2)
    grid = sc.plan(cfg, {})
    assert [p.mode for p in grid.points] == ["base", "grid", "grid", "grid"] and not grid.exponents
    done = results(grid.points, lambda p: 60.0 if p.factors.keys() == {"width", "resolution"} else 50.0)
    final = sc.plan(cfg, done)
    assert set(final.exponents) == {"width", "resolution"} and final.points[-1].id == "compound/2/compound@4"


# -- the study -----------------------------------------------------------------------------------------


def test_points_are_enqueued_once_per_seed_and_an_interrupted_one_is_requeued_whole() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    cfg = sc.ScaleConfig(shufflenet().to_json(), "axes", ("width",), ratios=(2.0,), seeds=2)
    points = sc.plan(cfg, {}).points
    assert sc.enqueue(study, cfg, points) == 4 and sc.enqueue(study, cfg, points) == 0
    trial = study.ask()  # the first queued point
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    assert sc.requeue_interrupted_points(study) == 1 and sc.requeue_interrupted_points(study) == 0
    again = study.get_trials(states=(TrialState.WAITING,))[-1]
    first = study.trials[0]
    assert {k: again.user_attrs[k] for k in sc.POINT_ATTRS} == {k: first.user_attrs[k] for k in sc.POINT_ATTRS}
    assert sc.results_of(study.trials)[first.user_attrs["point"]].pending


# -- proxy tasks at every scale -----------------------------------------------------------------------------


def _difference(task: str, video: tuple[int, int, int]) -> float:
    """Mean absolute difference (grey levels) between the reference render and one of another shape,
    brought back to 32 frames of 56 x 56 (nearest frames, area average)."""
    opts = proxy.ProxyOptions(noise=0.0)
    ref, labels = proxy.generate(task, "val", num_samples=8, video=(32, 56, 56), seed=1, options=opts)
    other, other_labels = proxy.generate(task, "val", num_samples=8, video=video, seed=1, options=opts)
    assert (labels == other_labels).all()
    x = F.adaptive_avg_pool2d(torch.from_numpy(other).float(), (56, 56))
    x = x[:, np.round(np.linspace(0, video[0] - 1, 32)).astype(int)]
    return float((x - torch.from_numpy(ref).float()).abs().mean())


@pytest.mark.parametrize("video", [(32, 112, 112), (64, 56, 56), (16, 56, 56)], ids=["2x-side", "2x-frames", "half-frames"])
@pytest.mark.parametrize("task", ["motion", "digits"])
def test_a_video_of_another_shape_shows_the_same_scene(task: str, video: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _difference(task, video) < 3.0
    monkeypatch.setattr(proxy, "_units", lambda frames, canvas: (1.0, 1.0))  # motions in pixels per frame, as before
    assert _difference(task, video) > 5.0


def test_proxy_data_is_cached_per_size(tmp_path: Path) -> None:
    small = proxy_dataset("motion", split="val", clip=(8, 32, 32), num_samples=8, cache_dir=tmp_path, progress=False)
    large = proxy_dataset("motion", split="val", clip=(16, 64, 64), num_samples=8, cache_dir=tmp_path, progress=False)
    assert small.path != large.path and small.videos.shape[1:] == (16, 38, 38) and large.videos.shape[1:] == (32, 75, 75)
    again = proxy_dataset("motion", split="val", clip=(16, 64, 64), num_samples=8, cache_dir=tmp_path, progress=False)
    assert again.path == large.path and again.path.stat().st_mtime_ns == large.path.stat().st_mtime_ns
    assert large[0][0].shape == (3, 16, 64, 64)


def test_versus_trains_one_axis_alone_at_each_chosen_steps_cost() -> None:
    base = shufflenet()
    cfg = sc.ScaleConfig(base.to_json(), "expand", ("depth", "resolution"), to_macs=3 * sc.macs(base), versus="width")
    done: dict[str, sc.Result] = {}
    for _ in range(10):
        plan = sc.plan(cfg, done)
        if plan.finished:
            break
        done = results(plan.points, lambda p: 40.0 + p.macs / 1e7)
    versus = [p for p in plan.points if p.mode == "versus"]
    assert [p.step for p in versus] == [p.step for p in plan.path[1:]] and len(versus) == 2
    for v, p in zip(versus, plan.path[1:], strict=True):
        assert set(v.factors) == {"width"} and v.curve == "width only" and v.spec.stages[0].repeats == base.stages[0].repeats
        assert v.macs == pytest.approx(p.macs, rel=0.1)
    unfinished = {k: r for k, r in done.items() if not k.startswith("versus/2")}
    assert not sc.plan(cfg, unfinished).finished  # the last comparison is still to train
    with pytest.raises(SpecError, match=r"^expansion: shufflenetv2 has no expansion axis to compare with"):
        sc.ScaleConfig(shufflenetv2().to_json(), "expand", ("depth",), to_macs=3e8, versus="expansion")


def test_a_run_is_reused_only_for_the_same_network_proxy_clip_and_seed() -> None:
    """Specs that differ only in their width label build one network (MobileNetV2 0.3419x and 0.3428x did)."""
    a = space.paper_spec("mobilenetv2", width_mult=0.2)
    attrs = {"spec": a.to_json(), "proxy_clip": [16, 48, 48], "seed": 0, "accuracy": 41.0}
    done = optuna.trial.create_trial(state=TrialState.COMPLETE, value=41.0, user_attrs=attrs)
    failed = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={**attrs, "accuracy": None})
    relabelled = a.replace(width_mult=0.2003).to_json()
    assert sc.trained_before([failed, done], relabelled, (16, 48, 48), 0) is done
    assert sc.trained_before([failed], relabelled, (16, 48, 48), 0) is None  # no result to reuse
    assert sc.trained_before([done], relabelled, (16, 48, 48), 1) is None  # another seed
    assert sc.trained_before([done], relabelled, (32, 48, 48), 0) is None  # another proxy clip
    wider = space.paper_spec("mobilenetv2", width_mult=0.35).to_json()
    assert sc.trained_before([done], wider, (16, 48, 48), 0) is None  # another network


def test_a_point_queued_twice_is_trained_once() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    cfg = sc.ScaleConfig(shufflenet().to_json(), "axes", ("width",), ratios=(2.0,), seeds=1)
    base = sc.plan(cfg, {}).points[:1]
    for _ in range(2):  # two workers planned the same step at once
        study.enqueue_trial({}, user_attrs=base[0].attrs(0))
    first = study.ask()
    assert sc.taken_by(study.trials, first.number, base[0].id, 0) is None
    assert sc.taken_by(study.trials, first.number + 1, base[0].id, 0) == first.number  # the twin, while the first runs
    assert sc.taken_by(study.trials, first.number + 1, base[0].id, 1) is None  # another seed is not a twin
    study.tell(first, state=TrialState.FAIL)  # a failed run gives the point up
    assert sc.taken_by(study.trials, first.number + 1, base[0].id, 0) is None
