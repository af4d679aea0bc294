"""Hand-made studies for analysis tests: trials with the user attributes ``e3d search`` stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from matplotlib.figure import Figure
from matplotlib.text import Text
from optuna.trial import FrozenTrial, TrialState

import space
from profiler import count_spec
from search.study import CONFIG_ATTR


@dataclass(frozen=True)
class T:
    """One hand-made trial."""

    family: str
    width: float
    accuracy: float | None
    macs: float | None = None
    """Defaults to e3d's count of the preset at ``width`` (16x112x112, 10 classes)."""
    params: float | None = None
    state: str = "COMPLETE"
    feasible: bool = True
    latency_ms: float | None = None
    seed: int = 0
    source: str = "search"
    cpu_seconds: float | None = None
    spec: bool = True
    """Store the preset's spec (trials of one family and width then share an architecture)."""


def trial(t: T) -> FrozenTrial:
    """A FrozenTrial whose user attributes follow ``search.study.Objective``."""
    spec = space.paper_spec(t.family, width_mult=t.width, num_classes=10)
    counts = count_spec(spec)
    attrs: dict[str, Any] = {
        "source": t.source,
        "family": t.family,
        "width_mult": t.width,
        "summary": spec.summary(),
        "macs": t.macs if t.macs is not None else counts.macs,
        "params": t.params if t.params is not None else counts.params,
        "paper_mflops": round(counts.paper_flops / 1e6, 3),
        "activations": 1000,
        "feasible": t.feasible,
        "rejected_reason": "" if t.feasible else "macs over budget",
        "latency_ms": t.latency_ms,
        "seed": t.seed,
        "task": "motion",
        "worker": "test:1",
    }
    if t.spec:
        attrs["spec"] = spec.to_json()
    if t.cpu_seconds is not None:
        attrs["cpu_seconds"] = t.cpu_seconds
    state = TrialState[t.state]
    if t.accuracy is not None and state != TrialState.FAIL and t.feasible:
        attrs["accuracy"] = t.accuracy
        attrs["best_accuracy"] = t.accuracy
        attrs["epochs"] = 1
    value = (t.accuracy if t.feasible else 0.0) if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(state=state, value=value, params={}, distributions={}, user_attrs=attrs)


def make_study(
    trials: Sequence[T], *, storage: str | None = None, name: str = "hand-made", budget_mflops: float | None = 60.0
) -> optuna.Study:
    """A study holding ``trials`` (in memory unless ``storage``), with e3d's stored config."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr(
        CONFIG_ATTR,
        {
            "budget": {"mflops": budget_mflops, "params": None, "latency_ms": None, "clip": [16, 112, 112]},
            "families": ["mobilenet", "mobilenetv2"],
            "proxy": {"task": "motion", "data": None, "clip": [8, 32, 32], "val_samples": 16, "epochs": 1},
        },
    )
    for t in trials:
        study.add_trial(trial(t))
    return study


MIXED = [
    T("mobilenetv2", 0.2, 30.0, source="baseline"),
    T("mobilenet", 0.5, 40.0),
    T("mobilenet", 0.5, 44.0, seed=1),
    T("mobilenet", 1.0, 55.0),
    T("shufflenet", 0.5, 50.0),
    T("mobilenet", 2.0, None, feasible=False),
    T("shufflenet", 1.0, 20.0, state="PRUNED"),
    T("shufflenetv2", 1.0, None, state="FAIL"),
]
"""Trained, repeated (two seeds), rejected, pruned and failed trials."""


LONG_CPU = "AMD EPYC (AVX512: avx2, avx512f, avx512_bf16)"
"""A CPU name as ``profiler.cpu`` describes this machine's: long enough to push a title past the figure."""


def assert_title_fits(fig: Figure, title: Text) -> None:
    """``title`` drawn inside ``fig`` (nothing of it cut off at an edge)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, (title.get_text(), box, fig.bbox)
