"""Results of a study as data: one row per trial, the Pareto front, and the run-folder files.

The same rows come from a live study (:func:`study_frame`) and from ``trials_full.csv``; analysis
reads both. Columns (``COLUMNS``) are followed by the spec's fields flattened as ``spec.<path>``,
e.g. ``spec.stages.0.channels``. ``trials.csv`` is the short table a person opens
(:data:`SHORT_COLUMNS`: a status, the numbers one compares, the spec as one line of JSON).
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

from search.front import pareto_mask
from space.files import write_text

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
    "cpu_seconds",  # process CPU time of the trial (search.fidelity.CpuTimed): what CPU budgets count
    "seed",
    "task",
    "worker",
    "cpu",  # the worker's CPU (profiler.cpu): where its latency was measured
    "precision",  # what the trial trained with: fp32/bf16/fp16, eager or channels-last (profiler.precision)
    "lag_wait_s",  # a lagged search (search.lagged): seconds the trial waited for the trials it learns from
    "surplus",  # a lagged search's searched trial after its n-th trained one: not run
    "interrupted",  # stopped by Ctrl-C or SIGTERM while it ran, in training or before (state FAIL): a resumed run runs it again
    "spec_json",
]
"""The fixed columns of ``trials.csv``, in order."""

_ATTRS = ("source", "feasible", "rejected_reason", "family", "width_mult", "summary", "macs", "params", "paper_mflops", "activations")
_RUN_ATTRS = (
    "latency_ms",
    "accuracy",
    "best_accuracy",
    "epochs",
    "cpu_seconds",
    "seed",
    "task",
    "worker",
    "cpu",
    "precision",
    "lag_wait_s",
    "surplus",
    "interrupted",
)


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


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials that were trained (feasible) and have an accuracy."""
    done = df[(df["state"] == "COMPLETE") & (df["feasible"].astype("boolean").fillna(True)) & df["accuracy"].notna()]
    return done


def trial_counts(df: pd.DataFrame) -> str:
    """How a study's trials ended, in words: ``"8 trials: 5 trained, 1 pruned, 1 failed, 1 rejected by
    the budget"``, then any still running or queued and a lagged search's surplus trials (pruned
    untrained: :mod:`search.lagged`). Trained: :func:`finished`; rejected: refused
    before training (``feasible`` False); pruned and failed by state."""
    states = df["state"].astype(str).value_counts().to_dict()
    rejected = int((df["feasible"].astype("boolean") == False).sum())  # noqa: E712  (nullable boolean)
    rest = "".join(f", {n} {str(s).lower()}" for s, n in sorted(states.items()) if s not in ("COMPLETE", "PRUNED", "FAIL"))
    surplus = int((df["surplus"].astype("boolean") == True).sum()) if "surplus" in df else 0  # noqa: E712
    rest += f", {surplus} not run (surplus)" if surplus else ""
    stopped = int((df["interrupted"].astype("boolean") == True).sum()) if "interrupted" in df else 0  # noqa: E712
    failed = f"{states.get('FAIL', 0) - stopped} failed" + (f", {stopped} interrupted" if stopped else "")
    head = f"{len(df)} trial{'' if len(df) == 1 else 's'}: {len(finished(df))} trained"
    return f"{head}, {states.get('PRUNED', 0) - surplus} pruned, {failed}, {rejected} rejected by the budget{rest}"


def pareto_front(df: pd.DataFrame, costs: Sequence[str] = ("macs",)) -> pd.DataFrame:
    """The finished trials on the accuracy-vs-``costs`` Pareto front, sorted by the first cost."""
    done = finished(df)
    done = done[done[list(costs)].notna().all(axis=1)]
    points = done[["accuracy", *costs]].astype(float).values.tolist()
    mask = pareto_mask(points, [True] + [False] * len(costs))
    return done[mask].sort_values(list(costs))


SHORT_COLUMNS = [
    "number",
    "status",  # trained, pruned, rejected (over budget, never trained), surplus (not run), interrupted, failed, running, queued
    "source",
    "family",
    "width_mult",
    "accuracy",
    "macs_m",  # multiply-adds per clip at the budget clip, millions
    "params_m",  # millions
    "paper_mflops",
    "latency_ms",
    "epochs",
    "seed",
    "precision",  # fp32/bf16/fp16, eager or channels-last
    "duration_s",
    "cpu_seconds",
    "summary",
    "note",  # why a candidate was rejected, or what an interrupted one awaits
    "spec",  # the spec as one line of JSON (NetSpec.from_json reads it)
]
"""The columns of the short ``trials.csv``; ``trials_full.csv`` holds every column of :func:`frame`."""

INT_COLUMNS = ("number", "macs", "params", "activations", "epochs", "seed", "duration_s")
"""Columns written as integers (a row without a value leaves the cell empty)."""
_FLOAT_LEAVES = ("width_mult", "expansion", "bin_width", "dropout")
"""Spec fields that are floats even when they hold a whole number."""


def status(row: Mapping[str, Any]) -> str:
    """What happened to a trial, in one word: trained, pruned, rejected, surplus (a lagged search's
    trial numbered after its last counted one, not run: :mod:`search.lagged`), interrupted (stopped by Ctrl-C or
    SIGTERM while it ran), failed, running or queued."""
    if str(row.get("surplus")).lower() == "true":
        return "surplus"
    if str(row.get("interrupted")).lower() == "true":
        return "interrupted"
    feasible = row.get("feasible")
    if feasible is not None and not (isinstance(feasible, float) and math.isnan(feasible)) and str(feasible).lower() in ("false", "0"):
        return "rejected"
    state = str(row.get("state") or "").upper()
    return _STATUS.get(state, state.lower())


INTERRUPTED_NOTE = "stopped by Ctrl-C or SIGTERM; a resumed run trains it again"
"""The note of an interrupted trial in the short ``trials.csv``."""
_STATUS = {"COMPLETE": "trained", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "queued"}


def short_table(df: pd.DataFrame) -> pd.DataFrame:
    """The short ``trials.csv``: :data:`SHORT_COLUMNS`, one row per trial, numbers rounded for reading."""
    out = pd.DataFrame(index=df.index)
    out["number"] = df["number"]
    out["status"] = [status({str(k): v for k, v in r.items()}) for r in df.to_dict("records")]
    for col in ("source", "family", "width_mult", "paper_mflops", "latency_ms", "epochs", "seed", "summary"):
        out[col] = df[col]
    out["width_mult"] = pd.to_numeric(df["width_mult"], errors="coerce").round(4)
    out["paper_mflops"] = pd.to_numeric(df["paper_mflops"], errors="coerce").round(1)
    out["accuracy"] = pd.to_numeric(df["accuracy"], errors="coerce").round(2)
    out["macs_m"] = (pd.to_numeric(df["macs"], errors="coerce") / 1e6).round(1)
    out["params_m"] = (pd.to_numeric(df["params"], errors="coerce") / 1e6).round(3)
    out["latency_ms"] = pd.to_numeric(df["latency_ms"], errors="coerce").round(1)
    out["duration_s"] = pd.to_numeric(df["duration_s"], errors="coerce").round(0)
    out["cpu_seconds"] = pd.to_numeric(df["cpu_seconds"], errors="coerce").round(1) if "cpu_seconds" in df else None
    out["note"] = df["rejected_reason"].where(out["status"] == "rejected")
    out.loc[out["status"] == "interrupted", "note"] = INTERRUPTED_NOTE
    out["precision"] = df.get("precision")
    out["spec"] = [_compact(v) for v in df["spec_json"]]
    return _integers(out[SHORT_COLUMNS])


def _compact(spec_json: Any) -> Any:
    if not isinstance(spec_json, str) or not spec_json.strip():
        return None
    return json.dumps(json.loads(spec_json), separators=(",", ":"))


def _integers(df: pd.DataFrame) -> pd.DataFrame:
    """A copy where :data:`INT_COLUMNS` and the spec's whole-number fields are nullable integers, so
    that a row still missing a value (a running trial) does not turn the others into floats."""
    out = df.copy()
    for col in out.columns:
        leaf = str(col).rsplit(".", 1)[-1]
        if not (col in INT_COLUMNS or (str(col).startswith("spec.") and leaf not in _FLOAT_LEAVES)):
            continue
        values = pd.to_numeric(out[col], errors="coerce")
        if out[col].dtype == bool or (out[col].notna() & values.isna()).any():
            continue  # booleans and text stay as they are
        known = values.dropna()
        if len(known) and (known == known.round()).all():
            out[col] = values.round().astype("Int64")
    return out


def costs_of(config: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The costs of a study's Pareto front: macs, and latency for a latency-bounded ``pareto`` search."""
    config = config or {}
    latency = (config.get("budget") or {}).get("latency_ms") is not None
    return ("macs", "latency_ms") if latency and config.get("objective") == "pareto" else ("macs",)


def recipe(config: Mapping[str, Any], best: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """How the search trained its candidates (``recipe.json``): what ``e3d train`` needs to train a
    spec of this run the same way. ``best`` (a row) adds the best trial's seed and accuracy."""
    proxy = config.get("proxy") or {}
    keys = [*("task", "data", "data_format", "clip", "train_samples", "val_samples", "epochs", "batch_size"), "lr", "schedule", "warmup"]
    keys += ["data_seed", "precision"]
    out: dict[str, Any] = {"format": "e3d.recipe/1", "made_by": f"e3d {config.get('kind', 'search')}"}
    out.update({k: proxy.get(k) for k in keys})
    out["seed"] = int(best["seed"]) if best is not None and _plain(best.get("seed")) is not None else config.get("seed", 0)
    if best is not None and _plain(best.get("accuracy")) is not None:
        out["best_accuracy"] = round(float(best["accuracy"]), 2)
    return out


def write_outputs(
    df: pd.DataFrame, out: Path, *, costs: Sequence[str] = ("macs",), config: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``trials.csv`` (short, :func:`short_table`), ``trials_full.csv`` (every column),
    ``best.json`` (best finished trial's spec), ``pareto.json`` and, with the study's ``config``,
    ``recipe.json`` (:func:`recipe`).

    Each file is written to a unique temporary name in ``out`` and renamed, so an interrupted write
    never leaves a truncated file and workers sharing ``out`` never collide.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "trials": out / "trials.csv",
        "full": out / "trials_full.csv",
        "best": out / "best.json",
        "pareto": out / "pareto.json",
        "recipe": out / "recipe.json",
    }
    write_text(paths["full"], _integers(df).to_csv(index=False))
    write_text(paths["trials"], short_table(df).to_csv(index=False))
    done = finished(df)
    best = done.sort_values(["accuracy", "macs"], ascending=[False, True]).iloc[0] if len(done) else None
    if config is not None:
        write_text(paths["recipe"], json.dumps(recipe(config, None if best is None else best.to_dict()), indent=1) + "\n")
    if best is not None:
        write_text(paths["best"], _pretty_spec(best["spec_json"]))
        front = pareto_front(df, costs)
        keep = ["number", "family", "width_mult", "accuracy", "macs", "params", "paper_mflops", "latency_ms", "summary"]
        entries = [{**{k: _plain(r[k]) for k in keep}, "spec": json.loads(r["spec_json"])} for _, r in front.iterrows() if r["spec_json"]]
        write_text(
            paths["pareto"], json.dumps({"objectives": ["accuracy (max)", *[f"{c} (min)" for c in costs]], "trials": entries}, indent=1)
        )
    return paths


def export_results(study: optuna.Study, out: Path) -> dict[str, Path]:
    """Rebuild every result file of ``out`` from the study (the source of truth), so that the files
    hold every trial the study holds; the costs and the recipe come from its stored settings."""
    from search.study import CONFIG_ATTR

    config = study.user_attrs.get(CONFIG_ATTR)
    return write_outputs(study_frame(study), out, costs=costs_of(config), config=config)


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _pretty_spec(spec_json: str) -> str:
    from space.spec import NetSpec

    return NetSpec.from_json(spec_json).to_json() + "\n"


def full_csv(path: str | Path) -> Path:
    """The full record for ``path``: a run folder or its ``trials.csv`` gives ``trials_full.csv``
    when that exists (runs written before the short table existed have only ``trials.csv``)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if p.is_dir() or p.name == "trials.csv":
        full = folder / "trials_full.csv"
        if full.is_file():
            return full
    return p / "trials.csv" if p.is_dir() else p
