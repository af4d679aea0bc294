"""Latency tables in the search: which networks a table must cover, and the table a study screens with.

A table (:mod:`profiler.latency_table`) is built from the blocks of :func:`space_specs`: the
Table 8 presets, the corners of each family's space, and random candidates, at the table's clip;
it is calibrated on whole networks of every family (:func:`calibration_specs`). A study made with
``--latency-table`` stores the table's settings and fingerprint on its budget
(:attr:`search.budget.Budget.latency_table`); every worker must screen with that same table
(:func:`study_latency`), and a worker with another one is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from profiler.latency import PAPER_BATCH
from profiler.latency_table import LatencyTable
from search.budget import Budget
from search.searchspace import SPACE, Clip, paper_presets, preset_params, spec_from_params, stage_keys
from space.paper import table8
from space.registry import paper_spec
from space.spec import NetSpec, SpecError

CLASSES = (10, 600)
"""Head sizes a table covers: the built-in proxy tasks' and the paper's (others in between interpolate)."""


def extreme_params(family: str) -> list[dict[str, Any]]:
    """The corners of a family's space: every combination of the lowest and highest width, stage
    factors, depths, expansion, temporal kernel and SE, every group count (channel rounding depends
    on it) and every head activation. Small networks with many units hold the smallest residual maps, large ones
    with few units the largest single layers, so the corners bound what candidates contain."""
    import itertools

    fs = SPACE[family]
    depths, mults = stage_keys(family)
    options: list[list[dict[str, Any]]] = [
        [{f"{family}.width_mult": w} for w in fs.width],
        [dict.fromkeys(mults, m) for m in (min(fs.stage_mults), max(fs.stage_mults))],
        [{key: d[k] for key, d in zip(depths, fs.depths, strict=True)} for k in (0, 1)],
    ]
    if fs.expansions:
        options.append([{f"{family}.expansion": e} for e in (min(fs.expansions), max(fs.expansions))])
    if fs.t_kernels:
        options.append([{f"{family}.t_kernel": t} for t in (min(fs.t_kernels), max(fs.t_kernels))])
    if fs.se:
        options.append([{f"{family}.se": v} for v in (False, True)])
    if fs.groups:
        options.append([{f"{family}.groups": g} for g in fs.groups])
    if fs.head_acts:
        options.append([{f"{family}.head_act": a} for a in fs.head_acts])
    return [{"family": family, **{k: v for part in combo for k, v in part.items()}} for combo in itertools.product(*options)]


def random_params(families: Sequence[str], n: int, *, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` candidates drawn uniformly from the space (Optuna's random sampler, seeded with ``seed``'s low 32 bits; no SGS)."""
    import optuna

    from search.searchspace import sample_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed & 0xFFFFFFFF))  # NumPy's seeds are 32-bit
    for _ in range(n):
        yield sample_params(study.ask(), families)


def at_clip(params: dict[str, Any], clip: Clip, *, num_classes: int = 600) -> NetSpec | None:
    """The candidate's spec at ``clip``, or None when it cannot run there."""
    try:
        return spec_from_params(params, clip=clip, num_classes=num_classes)
    except SpecError:  # a candidate that cannot run at this clip: the search rejects it too
        return None


def calibration_specs(families: Sequence[str], clip: Clip, *, n: int, seed: int) -> list[NetSpec]:
    """``n`` random candidates that run at ``clip``, taken from each family in turn (so every family's
    blocks calibrate the overhead, not the family drawn most), 600 classes; family ``i`` draws with seed
    ``1000 * seed + i``, apart from the seeds of the table's and the bench's random candidates."""
    draws = {f: (at_clip(p, clip) for p in random_params([f], 20 * n, seed=1000 * seed + i)) for i, f in enumerate(families)}
    out: list[NetSpec] = []
    while len(out) < n and draws:
        for f in list(draws):
            spec = next((s for s in draws[f] if s is not None), None)
            if spec is None:  # this family cannot run at the clip (or ran out)
                del draws[f]
            elif len(out) < n:
                out.append(spec)
    return out


def table8_specs(clip: Clip, *, num_classes: int = 600) -> list[NetSpec]:
    """The 21 Table 8 presets at ``clip`` (those that can run there)."""
    out = []
    for row in table8():
        try:
            spec = paper_spec(row.model, width_mult=row.width_mult, num_classes=num_classes)
            out.append(spec.replace(clip=clip))
        except SpecError:
            continue
    return out


def space_specs(families: Sequence[str], clip: Clip, *, samples: int, seed: int = 0, classes: Sequence[int] = CLASSES) -> list[NetSpec]:
    """The networks a table for ``families`` at ``clip`` is built from: Table 8's presets, every
    family's presets and corners (:func:`extreme_params`), then ``samples`` random candidates, each
    with every head size of ``classes``."""
    params = [preset_params(f, w) for f, w in paper_presets(families)]
    for f in families:
        params += extreme_params(f)
    params += list(random_params(families, samples, seed=seed))
    specs = [s for c in classes for s in table8_specs(clip, num_classes=c)]
    specs += [s for c in classes for p in params if (s := at_clip(p, clip, num_classes=c)) is not None]
    return list(dict.fromkeys(specs))


def table_identity(path: str | Path, budget: Budget, mode: str, *, sgs: bool = False) -> dict[str, Any]:
    """Load the table a new study will screen with, check it fits the study, and return its identity
    (:class:`profiler.latency_table.LatencyTableError` naming any mismatch)."""
    from profiler.latency_table import LatencyTableError

    if budget.latency_ms is None:
        raise LatencyTableError("--latency-table prices the latency bound; give --budget-latency-ms too")
    if sgs:
        raise LatencyTableError("a latency table cannot price Similarity Guided Sampling (its cost depends on the clip); drop --sgs")
    table = LatencyTable.load(path)
    table.check(clip=budget.clip, batch_size=PAPER_BATCH, precision="fp32", mode=mode)
    return table.identity()


def study_latency(budget: Budget, mode: str, path: str | Path | None) -> Callable[[NetSpec], float] | None:
    """The table predictor a worker screens with when the study was made with a table (``path`` must
    be that same table), else None (latency is measured on this machine)."""
    from search.study import StudyConfigError

    stored = budget.latency_table
    if stored is None:
        if path is not None:
            raise StudyConfigError("this study was made without a latency table (it measures latency here); drop --latency-table")
        return None
    if path is None:
        raise StudyConfigError(
            f"this study screens latency with a table measured on {stored['device_name']} (sha256 {stored['sha256'][:12]}); "
            "pass that file with --latency-table"
        )
    table = LatencyTable.load(path)
    if table.identity() != stored:
        since = f", recalibrated {table.recalibrated}" if table.recalibrated else ""
        raise StudyConfigError(
            f"{path} (sha256 {table.fingerprint()[:12]}, {table.settings.device_name}{since}) is not the latency table this study "
            f"screens with (sha256 {stored['sha256'][:12]}, {stored['device_name']}): a study cannot mix tables"
        )
    return table.predictor(mode)
