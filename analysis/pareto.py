"""Pareto fronts as data: accuracy against multiply-adds, parameters or measured latency.

Only trials that finished their training count (:func:`search.results.finished`): rejected
(infeasible), pruned, failed and running trials are left out, and so is a trial whose cost is
unknown (latency not measured). Trials of one architecture (identical specs, e.g. a sweep's seeds)
are one point, their accuracy averaged, so that a lucky seed does not make the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from search.front import pareto_mask
from search.results import finished
from search.stats import sample_sd


@dataclass(frozen=True)
class Cost:
    """A cost column: how to label it and the factor from its unit to the shown one."""

    column: str
    label: str
    scale: float = 1.0
    unit: str = ""


COSTS: dict[str, Cost] = {
    "macs": Cost("macs", "multiply-adds per clip (M)", 1e-6, "M"),
    "params": Cost("params", "parameters (M)", 1e-6, "M"),
    "latency_ms": Cost("latency_ms", "latency per batch of 8 (ms)", 1.0, "ms"),
    "paper_mflops": Cost("paper_mflops", "MFLOPs (Table 8 convention)", 1.0, "M"),
    "titanxp_latency_ms": Cost("titanxp_latency_ms", "Titan Xp, per batch of 8 (ms)", 1.0, "ms"),
    "tx2_latency_ms": Cost("tx2_latency_ms", "Jetson TX2, per batch of 8 (ms)", 1.0, "ms"),
}
"""The costs a front can be drawn against."""


def cost_info(column: str) -> Cost:
    """The :class:`Cost` of ``column`` (any other numeric column gets its own name as label)."""
    return COSTS.get(column, Cost(column, column))


def architectures(df: pd.DataFrame, *, keep: Sequence[str] = (), trained: bool = True) -> pd.DataFrame:
    """Finished trials (every trial with ``trained=False``), one row per architecture, sorted by ``macs``.

    Trials with identical ``spec_json`` (or, without a spec, the same family, width, macs and
    params) are one architecture. Columns: ``arch`` (the key), ``family``, ``width_mult``,
    ``summary``, ``source``, ``macs``, ``params``, ``paper_mflops`` (first trial's), ``latency_ms``
    (mean of the measured ones), ``accuracy`` (mean), ``accuracy_std`` (sample standard deviation,
    NaN for one trial), ``n`` (trials) and ``trials`` (their numbers, comma-separated), then the
    mean of each numeric column in ``keep``.
    """
    done = (finished(df) if trained else df).copy()
    cols = ["arch", "family", "width_mult", "summary", "source", "macs", "params", "paper_mflops", "latency_ms"]
    extra = [c for c in keep if c not in cols]
    if not len(done):
        return pd.DataFrame(columns=[*cols, "accuracy", "accuracy_std", "n", "trials", *extra])
    fallback = done[["family", "width_mult", "macs", "params"]].apply(lambda r: "|".join(map(str, r)), axis=1)
    done["arch"] = done["spec_json"].where(done["spec_json"].notna(), fallback).astype(str)
    grouped = done.groupby("arch", sort=False)
    out = grouped.agg(
        family=("family", "first"),
        width_mult=("width_mult", "first"),
        summary=("summary", "first"),
        source=("source", "first"),
        macs=("macs", "first"),
        params=("params", "first"),
        paper_mflops=("paper_mflops", "first"),
        latency_ms=("latency_ms", "mean"),
        accuracy=("accuracy", "mean"),
        accuracy_std=("accuracy", sample_sd),
        n=("accuracy", "size"),
        trials=("number", lambda s: ",".join(str(int(v)) for v in s)),
        **{c: (c, "mean") for c in extra},
    ).reset_index()
    return out.sort_values(["macs", "accuracy"], ascending=[True, False], kind="stable").reset_index(drop=True)


def pareto_points(df: pd.DataFrame, *, cost: str = "macs") -> pd.DataFrame:
    """:func:`architectures` whose ``cost`` is known, with a boolean ``on_front`` column: no other
    architecture is at least as accurate and at most as costly, and strictly better in one. Ties
    (equal accuracy and cost) are all on the front. Sorted by ``cost``."""
    if cost not in df.columns:
        raise KeyError(f"no cost column {cost!r}")
    arch = architectures(df, keep=(cost,))
    arch = arch[arch[cost].notna()].copy()
    points = arch[["accuracy", cost]].astype(float).values.tolist()
    arch["on_front"] = pareto_mask(points, [True, False]) if points else []
    arch["on_front"] = arch["on_front"].astype(bool)
    return arch.sort_values([cost, "accuracy"], ascending=[True, False], kind="stable").reset_index(drop=True)


def pareto_table(df: pd.DataFrame, *, cost: str = "macs") -> pd.DataFrame:
    """The architectures on the accuracy-vs-``cost`` front, cheapest first (accuracy rises along it)."""
    points = pareto_points(df, cost=cost)
    return points[points["on_front"]].drop(columns="on_front").reset_index(drop=True)
