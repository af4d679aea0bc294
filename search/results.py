"""Results of a study as data: one row per trial, the Pareto front, and the run-folder files.

The same rows come from a live study (:func:`study_frame`) and from ``trials.csv``; analysis reads
both. Columns (``COLUMNS``) are followed by the spec's fields flattened as ``spec.<path>``, e.g.
``spec.stages.0.channels``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

COLUMNS = [
    "number",  # trial number in the study
    "state",  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    "source",  # baseline (a paper preset), search (sampled), sweep, retry (re-run of a dead worker's trial)
    "feasible",  # within the budget (False: rejected before training)
    "rejected_reason",
    "family",
    "width_mult",
    "summary",  # one-line spec summary
    "macs",  # multiply-adds per clip at the budget clip
    "params",
    "paper_mflops",  # the paper's Table 8 convention, millions
    "activations",
    "latency_ms",  # measured per batch of 8 at the budget clip, if measured
    "accuracy",  # proxy top-1 (%) on the held-out split after the trial's training
    "best_accuracy",  # best epoch's proxy top-1 (%)
    "epochs",
    "duration_s",
    "seed",
    "task",
    "worker",
    "spec_json",
]
"""The fixed columns of ``trials.csv``, in order."""

_ATTRS = ("source", "feasible", "rejected_reason", "family", "width_mult", "summary", "macs", "params", "paper_mflops", "activations")
_RUN_ATTRS = ("latency_ms", "accuracy", "best_accuracy", "epochs", "seed", "task", "worker")


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Flatten nested dicts/lists into ``{"prefix.a.0.b": v}``."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}"))
        return out
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            return {prefix: "x".join(map(str, value)) if prefix.endswith(("clip", "stride", "kernel")) else json.dumps(value)}
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a row of :data:`COLUMNS` plus the flattened spec."""
    a = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    for key in _ATTRS + _RUN_ATTRS:
        row[key] = a.get(key)
    if row["accuracy"] is None and trial.state == TrialState.COMPLETE and trial.values and a.get("feasible", True):
        row["accuracy"] = trial.values[0]
    end = trial.datetime_complete
    row["duration_s"] = (end - trial.datetime_start).total_seconds() if end and trial.datetime_start else None
    row["spec_json"] = a.get("spec")
    if row["spec_json"]:
        row.update(flatten(json.loads(row["spec_json"]), "spec"))
    return row


def frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with :data:`COLUMNS` first (missing ones empty)."""
    df = pd.DataFrame(list(rows))
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    extra = sorted(c for c in df.columns if c not in COLUMNS)
    return df[COLUMNS + extra]


def study_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial of a study, one row each."""
    return frame(trial_row(t) for t in study.get_trials(deepcopy=False))


def pareto_mask(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """Which points no other point dominates (at least as good in every objective, better in one).

    Points with a NaN are never on the front. Equal points do not dominate each other, so ties
    are all kept.
    """
    sign = [1.0 if m else -1.0 for m in maximize]
    pts = [[s * v for s, v in zip(sign, p, strict=True)] for p in points]
    ok = [not any(math.isnan(v) for v in p) for p in pts]
    mask = []
    for i, p in enumerate(pts):
        if not ok[i]:
            mask.append(False)
            continue
        dominated = any(
            ok[j] and all(q >= v for q, v in zip(pts[j], p, strict=True)) and any(q > v for q, v in zip(pts[j], p, strict=True))
            for j in range(len(pts))
            if j != i
        )
        mask.append(not dominated)
    return mask


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials that were trained (feasible) and have an accuracy."""
    done = df[(df["state"] == "COMPLETE") & (df["feasible"].astype("boolean").fillna(True)) & df["accuracy"].notna()]
    return done


def pareto_front(df: pd.DataFrame, costs: Sequence[str] = ("macs",)) -> pd.DataFrame:
    """The finished trials on the accuracy-vs-``costs`` Pareto front, sorted by the first cost."""
    done = finished(df)
    done = done[done[list(costs)].notna().all(axis=1)]
    points = done[["accuracy", *costs]].astype(float).values.tolist()
    mask = pareto_mask(points, [True] + [False] * len(costs))
    return done[mask].sort_values(list(costs))


def write_outputs(df: pd.DataFrame, out: Path, *, costs: Sequence[str] = ("macs",)) -> dict[str, Path]:
    """Write ``trials.csv``, ``best.json`` (best finished trial's spec) and ``pareto.json``.

    Files are written to a temporary name and renamed, so an interrupted write never leaves a
    truncated file.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"trials": out / "trials.csv", "best": out / "best.json", "pareto": out / "pareto.json"}
    _atomic(paths["trials"], df.to_csv(index=False))
    done = finished(df)
    if len(done):
        best = done.sort_values(["accuracy", "macs"], ascending=[False, True]).iloc[0]
        _atomic(paths["best"], _pretty_spec(best["spec_json"]))
        front = pareto_front(df, costs)
        keep = ["number", "family", "width_mult", "accuracy", "macs", "params", "paper_mflops", "latency_ms", "summary"]
        entries = [{**{k: _plain(r[k]) for k in keep}, "spec": json.loads(r["spec_json"])} for _, r in front.iterrows() if r["spec_json"]]
        _atomic(
            paths["pareto"], json.dumps({"objectives": ["accuracy (max)", *[f"{c} (min)" for c in costs]], "trials": entries}, indent=1)
        )
    return paths


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _pretty_spec(spec_json: str) -> str:
    from space.spec import NetSpec

    return NetSpec.from_json(spec_json).to_json() + "\n"


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_trials_csv(path: str | Path) -> pd.DataFrame:
    """Read a ``trials.csv`` back (analysis checks its columns)."""
    return pd.read_csv(path)
