"""The paper's findings as computations that apply to Table 8 and to a user's results alike.

Each function takes trial rows (:mod:`analysis.load`'s schema; the paper's rows come from
:func:`analysis.paper.paper_frame`) and returns a small DataFrame or dataclass; nothing here draws or
prints. Only finished trials count (:func:`search.results.finished`), and repeated trials of one
family and width (a sweep's seeds) are averaged, their spread kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from analysis.pareto import architectures
from search.results import finished
from search.stats import sample_sd

DEEPER = ("shufflenet", "shufflenetv2", "mobilenetv2")
"""Families of about 50 conv/linear layers (the paper's Table 7: 50, 51 and 53)."""
SHALLOWER = ("squeezenet", "mobilenet")
"""Families of 18 and 28 conv/linear layers (Table 7)."""
WIDTH_THRESHOLD = 0.5
"""Below this width multiplier the paper sees accuracy collapse (finding iv)."""


def width_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against width multiplier per family, over the finished trials.

    One row per (family, width_mult): ``n`` trials, ``accuracy_mean``, ``accuracy_std`` (sample
    standard deviation, NaN for one trial), ``accuracy_min``, ``accuracy_max`` and the mean
    ``macs``. Trials of a search that share a width but not a depth are pooled; pass sweep or
    baseline rows for the paper's notion of a width curve. Sorted by family, then width.
    """
    done = finished(df)
    done = done[done["width_mult"].notna() & done["family"].notna()]
    cols = ["family", "width_mult", "n", "accuracy_mean", "accuracy_std", "accuracy_min", "accuracy_max", "macs"]
    if not len(done):
        return pd.DataFrame(columns=cols)
    out = (
        done.groupby(["family", "width_mult"])
        .agg(
            n=("accuracy", "size"),
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", sample_sd),
            accuracy_min=("accuracy", "min"),
            accuracy_max=("accuracy", "max"),
            macs=("macs", "mean"),
        )
        .reset_index()
    )
    return out.sort_values(["family", "width_mult"], kind="stable").reset_index(drop=True)[cols]


def width_drops(df: pd.DataFrame, *, threshold: float = WIDTH_THRESHOLD) -> pd.DataFrame:
    """Accuracy lost between adjacent widths of each family (from :func:`width_curves`).

    One row per step from a width ``wide`` down to the next narrower one ``narrow``: the mean
    accuracies, ``drop`` (percentage points, wide minus narrow; negative when the narrower one is
    better), ``drop_per_tenth`` (the drop per 0.1 of width, so steps of different size compare) and
    ``below`` (``narrow < threshold``). Sorted by family, widest step first.
    """
    curves = width_curves(df)
    rows = []
    for family, c in curves.groupby("family", sort=True):
        c = c.sort_values("width_mult", ascending=False)
        widths, accs = c["width_mult"].tolist(), c["accuracy_mean"].tolist()
        for (w_hi, a_hi), (w_lo, a_lo) in zip(zip(widths, accs, strict=True), zip(widths[1:], accs[1:], strict=True), strict=False):
            drop = a_hi - a_lo
            rows.append(
                {
                    "family": family,
                    "wide": w_hi,
                    "narrow": w_lo,
                    "accuracy_wide": a_hi,
                    "accuracy_narrow": a_lo,
                    "drop": drop,
                    "drop_per_tenth": drop / ((w_hi - w_lo) * 10),
                    "below": w_lo < threshold,
                }
            )
    cols = ["family", "wide", "narrow", "accuracy_wide", "accuracy_narrow", "drop", "drop_per_tenth", "below"]
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class WidthSummary:
    """Mean accuracy lost per 0.1 of width, on steps that end below the threshold and on the others."""

    threshold: float
    below: float
    """Mean ``drop_per_tenth`` of the steps whose narrower width is below ``threshold`` (NaN if none)."""
    n_below: int
    above: float
    """The same for steps that stay at or above ``threshold``."""
    n_above: int

    @property
    def ratio(self) -> float:
        """How many times steeper the loss is below the threshold (NaN when undefined)."""
        if math.isnan(self.below) or math.isnan(self.above) or self.above <= 0:
            return float("nan")
        return self.below / self.above


def width_summary(drops: pd.DataFrame, *, threshold: float = WIDTH_THRESHOLD) -> WidthSummary:
    """Summarise :func:`width_drops` (computed with the same ``threshold``)."""
    below = drops[drops["below"].astype(bool)]["drop_per_tenth"]
    above = drops[~drops["below"].astype(bool)]["drop_per_tenth"]
    nan = float("nan")
    return WidthSummary(
        threshold=threshold,
        below=float(below.mean()) if len(below) else nan,
        n_below=len(below),
        above=float(above.mean()) if len(above) else nan,
        n_above=len(above),
    )


def depth_comparison(
    df: pd.DataFrame, *, cost: str = "macs", deeper: Sequence[str] = DEEPER, shallower: Sequence[str] = SHALLOWER
) -> pd.DataFrame:
    """Deeper against shallower families at equal budget.

    For every architecture of a shallower family, the most accurate architecture of a deeper family
    that costs no more (``cost``), i.e. what the shallower model's budget buys among deeper ones.
    Columns: ``family``, ``width_mult``, ``cost``, ``accuracy`` (the shallower model), then
    ``deeper_family``, ``deeper_width``, ``deeper_cost``, ``deeper_accuracy`` and ``gain`` (deeper
    minus shallower, percentage points); the deeper columns are empty when no deeper model is that
    cheap. Accuracies are means over an architecture's trials. Sorted by cost.
    """
    arch = architectures(df, keep=(cost,))
    arch = arch[arch[cost].notna()]
    deep = arch[arch["family"].isin(list(deeper))]
    rows = []
    for _, s in arch[arch["family"].isin(list(shallower))].sort_values(cost, kind="stable").iterrows():
        fits = deep[deep[cost] <= s[cost]]
        row = {"family": s["family"], "width_mult": s["width_mult"], "cost": s[cost], "accuracy": s["accuracy"]}
        if len(fits):
            best = fits.sort_values(["accuracy", cost], ascending=[False, True], kind="stable").iloc[0]
            row |= {
                "deeper_family": best["family"],
                "deeper_width": best["width_mult"],
                "deeper_cost": best[cost],
                "deeper_accuracy": best["accuracy"],
                "gain": best["accuracy"] - s["accuracy"],
            }
        rows.append(row)
    cols = ["family", "width_mult", "cost", "accuracy", "deeper_family", "deeper_width", "deeper_cost", "deeper_accuracy", "gain"]
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rank correlation of two columns over the rows where both are known."""

    x: str
    y: str
    rho: float
    """Spearman's rho (NaN with fewer than 3 rows or a constant column)."""
    pvalue: float
    """Two-sided p-value of rho = 0 (scipy.stats.spearmanr)."""
    n: int
    discordant: float
    """Share of pairs (ties in either column left out) that the two columns order oppositely."""

    def describe(self) -> str:
        """One line, e.g. ``Spearman rho 0.58 (p 0.014, n 17); 23% of pairs ordered oppositely``."""
        if math.isnan(self.rho):
            return f"Spearman rho undefined (n {self.n})"
        return f"Spearman rho {self.rho:.2f} (p {self.pvalue:.2g}, n {self.n}); {100 * self.discordant:.0f}% of pairs ordered oppositely"


def rank_correlation(df: pd.DataFrame, x: str, y: str) -> RankCorrelation:
    """Spearman's rho between columns ``x`` and ``y`` of ``df`` (rows with both known; all rows
    count, so pass finished trials or one row per architecture)."""
    from scipy.stats import spearmanr

    both = df[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    xs, ys = both[x].tolist(), both[y].tolist()
    n = len(xs)
    concordant = discordant = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = (xs[i] - xs[j]) * (ys[i] - ys[j])
            concordant += s > 0
            discordant += s < 0
    share = discordant / (concordant + discordant) if concordant + discordant else float("nan")
    if n < 3 or both[x].nunique() < 2 or both[y].nunique() < 2:
        return RankCorrelation(x, y, float("nan"), float("nan"), n, share)
    res = spearmanr(xs, ys)
    return RankCorrelation(x, y, float(res.statistic), float(res.pvalue), n, share)


def speed_rank_correlation(df: pd.DataFrame, *, cost: str = "macs", latency: str = "latency_ms") -> RankCorrelation:
    """Do FLOPs predict speed? Spearman's rho between ``cost`` and measured ``latency`` over every
    architecture whose latency was measured, trained or not (a search measures latency before
    training and rejects what is too slow), one point per architecture with its latencies averaged.
    1 means the cheaper model is always the faster one; the paper's finding (vi) is that it is not."""
    arch = architectures(df, keep=(cost, latency), trained=False)
    return rank_correlation(arch, cost, latency)
