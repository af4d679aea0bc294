"""Finalization: a search selects on the validation split; its finalists are scored on the test split.

The top-k distinct searched architectures by validation accuracy and the best paper preset in the
budget (the baseline with the best validation accuracy; without trained baselines, the preset with
the most multiply-adds that fits, latency bound included) are retrained with ``seeds`` new seeds (the study's seed + 1 ...
+ N, never the seed that selected them) under the study's own proxy protocol, and scored on the test
split, which nothing before this step reads. Each candidate gets a verdict against the preset from
:mod:`search.stats` (Welch's t-test on the test accuracies over seeds, sample sd).

The runs are the trials of a second study in the same storage (``<study>.final``): several workers
share them, and an interruption keeps every finished run; finalizing again runs only the rest.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from search.results import finished, study_frame
from search.searchspace import preset_params
from search.stats import TEST, Summary, compare, summarize
from search.study import SearchConfig, open_study, presets_in_budget
from space.spec import E3DError, NetSpec

SUFFIX = ".final"
"""The finalization study of study ``s`` is ``s.final``, in the same storage."""
SEARCHED = ("search", "retry")


class FinalizeError(E3DError):
    """Nothing to finalize, or finalization asked of something that is not a search."""


@dataclass(frozen=True)
class Finalist:
    """One architecture to retrain and score on the test split."""

    label: str
    """``search #12`` (a searched trial) or ``preset mobilenetv2 0.45x``."""
    role: str
    """``candidate`` or ``preset``."""
    params: dict[str, Any]
    val_accuracy: float | None
    """Its validation accuracy in the search (None for a preset that was not trained there)."""


def final_seeds(config: SearchConfig, n: int) -> tuple[int, ...]:
    """The seeds of the final runs: ``seed + 1 .. seed + n`` of the study's ``seed``."""
    if n < 1:
        raise FinalizeError(f"--final-seeds must be at least 1, got {n}")
    return tuple(config.seed + i for i in range(1, n + 1))


def candidates(df: pd.DataFrame, *, top_k: int) -> list[Finalist]:
    """The ``top_k`` searched architectures with the best validation accuracy (distinct specs; the
    mean over an architecture's trials; ties go to fewer multiply-adds)."""
    done = finished(df)
    done = done[done["source"].isin(SEARCHED) & done["spec_json"].notna()]
    ranked = (
        done.groupby("spec_json", sort=False)
        .agg(accuracy=("accuracy", "mean"), macs=("macs", "first"), number=("number", "first"), params=("params_json", "first"))
        .sort_values(["accuracy", "macs", "number"], ascending=[False, True, True])
        .head(top_k)
    )
    return [
        Finalist(f"search #{int(r['number'])}", "candidate", json.loads(r["params"]), float(r["accuracy"])) for _, r in ranked.iterrows()
    ]


def best_preset(df: pd.DataFrame, config: SearchConfig, *, latency: Callable[[NetSpec], float] | None = None) -> Finalist | None:
    """The hand-scaled network to beat: the paper preset in budget with the best validation accuracy
    in the study, or, when the study trained none, the one with the most multiply-adds that fits the
    budget, its latency bound priced by ``latency`` (a bound with no ``latency`` is an error)."""
    done = finished(df)
    base = done[done["source"].isin(("baseline", "sweep"))]
    if len(base):
        top = base.sort_values(["accuracy", "macs"], ascending=[False, True]).iloc[0]
        family, width = str(top["family"]), float(top["width_mult"])
        return Finalist(f"preset {family} {width:g}x", "preset", preset_params(family, width), float(top["accuracy"]))
    if config.budget.latency_ms is not None and latency is None:
        raise FinalizeError("the budget bounds latency: the preset to beat needs a latency meter or table")
    fits = presets_in_budget(config, latency=latency)
    if not fits:
        return None
    family, width, _ = max(fits, key=lambda f: f[2])
    return Finalist(f"preset {family} {width:g}x", "preset", preset_params(family, width), None)


def finalists(
    study: optuna.Study, config: SearchConfig, *, top_k: int = 3, latency: Callable[[NetSpec], float] | None = None
) -> list[Finalist]:
    """The candidates and the best preset of a search study (:func:`candidates`, :func:`best_preset`
    with ``latency``)."""
    if config.kind != "search":
        raise FinalizeError(f"study {study.study_name!r} is a {config.kind}, not a search: nothing to finalize")
    df = with_params(study)
    chosen = candidates(df, top_k=top_k)
    if not chosen:
        raise FinalizeError(f"study {study.study_name!r} has no completed searched trial to finalize yet")
    preset = best_preset(df, config, latency=latency)
    return [*chosen, *([preset] if preset else [])]


def with_params(study: optuna.Study) -> pd.DataFrame:
    """:func:`search.results.study_frame` with each trial's Optuna params as ``params_json``."""
    df = study_frame(study)
    params = {t.number: json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)}
    return df.assign(params_json=df["number"].map(params))


def final_config(config: SearchConfig) -> SearchConfig:
    """The settings of the finalization study: the search's protocol, enqueued runs only, no pruning."""
    return dataclasses.replace(config, kind="final", pruner="none", objective="accuracy", baselines=False, lag=0)


def open_final(study: optuna.Study, config: SearchConfig, chosen: list[Finalist], seeds: tuple[int, ...]) -> optuna.Study:
    """Create or join ``<study>.final`` and enqueue every (finalist, seed) run it does not hold yet,
    in any state (a run stopped by Ctrl-C is re-enqueued by the worker: ``requeue_interrupted``)."""
    final, _, _ = open_study(study.study_name + SUFFIX, study._storage, final_config(config))
    held = {(t.user_attrs.get("label"), t.user_attrs.get("seed")) for t in final.get_trials(deepcopy=False)}
    for f in chosen:
        for seed in seeds:
            if (f.label, seed) not in held:
                attrs = {"source": "final", "label": f.label, "role": f.role, "seed": seed, "val_accuracy": f.val_accuracy}
                final.enqueue_trial(f.params, user_attrs=attrs)
    return final


def final_table(final: optuna.Study, chosen: list[Finalist], seeds: tuple[int, ...], *, chance: float) -> pd.DataFrame:
    """One row per finalist: cost, validation accuracy, test accuracy over the seeds (mean, sample sd,
    n, each seed's) and each candidate's verdict against the preset (:func:`search.stats.compare`)."""
    runs: dict[str, dict[int, float]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for t in final.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        if a.get("source") == "final" and a.get("test_accuracy") is not None and a.get("seed") in seeds:
            runs.setdefault(a["label"], {})[int(a["seed"])] = float(a["test_accuracy"])
            meta[a["label"]] = a
    preset = next((f for f in chosen if f.role == "preset"), None)
    base = list(runs.get(preset.label, {}).values()) if preset else []
    rows = [_row(f, runs.get(f.label, {}), meta.get(f.label, {}), base, chance) for f in chosen]
    return pd.DataFrame(rows)


def _row(f: Finalist, runs: dict[int, float], attrs: dict[str, Any], base: list[float], chance: float) -> dict[str, Any]:
    accs = [runs[s] for s in sorted(runs)]
    s = summarize(accs) if accs else None
    v = compare(accs, base, chance=chance) if f.role == "candidate" and accs and base else None
    return {
        "label": f.label,
        "role": f.role,
        "summary": attrs.get("summary"),
        "macs": attrs.get("macs"),
        "params": attrs.get("params"),
        "val_accuracy": f.val_accuracy,
        "test_mean": s.mean if s else None,
        "test_sd": s.sd if s else None,
        "n": s.n if s else 0,
        "test_per_seed": ";".join(f"{a:.2f}" for a in accs),
        "verdict": v.outcome if v else "",
        "verdict_text": v.format() if v else "",
        "diff_pp": v.diff if v else None,
        "p": v.p if v else None,
        "test": v.reason if v else "",
        "spec_json": attrs.get("spec"),
    }


def format_table(table: pd.DataFrame, *, seeds: tuple[int, ...], test_videos: int | None) -> str:
    """The finalization summary printed at the end of a search (and written to ``final.md``)."""
    split = f"test split ({test_videos} videos)" if test_videos else "test split"
    lines = [
        f"finalists on the {split}, retrained with seeds {', '.join(map(str, seeds))}; mean ± sample sd (n); "
        + (f"verdicts against the preset by {TEST}" if (table["role"] == "preset").any() else "no preset fits the budget: no verdicts"),
        "",
        "| finalist | macs M | val % (search) | test % | verdict vs preset |",
        "|---|---:|---:|---|---|",
    ]
    for _, r in table.iterrows():
        test = Summary(r["test_mean"], r["test_sd"], int(r["n"])).format() if r["n"] else "not run yet"
        val = f"{r['val_accuracy']:.1f}" if pd.notna(r["val_accuracy"]) else "-"
        macs = f"{r['macs'] / 1e6:.1f}" if pd.notna(r["macs"]) else "-"
        verdict = "(the preset)" if r["role"] == "preset" else (r["verdict_text"] or "-")
        lines.append(f"| {r['label']} {r['summary'] or ''} | {macs} | {val} | {test} | {verdict} |")
    return "\n".join(lines)
