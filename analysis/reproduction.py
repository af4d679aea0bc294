"""The numbers of docs/REPRODUCTION.md: the paper's findings (i)-(viii) checked on two proxy-task sweeps
and on latency measured on this machine.

    e3d sweep --task motion --seeds 2 --epochs 3 --train-samples 1200 --val-samples 300 --no-latency --out runs/sweep-motion
    e3d sweep --task digits --seeds 2 --epochs 3 --train-samples 1200 --val-samples 300 --no-latency --out runs/sweep-digits
    e3d profile --paper-table --json --repeats 5 > docs/results/paper_table.json
    python -m analysis.reproduction --motion runs/sweep-motion --digits runs/sweep-digits --latency docs/results/paper_table.json

Prints markdown: one table of the 17 efficient presets (accuracy per task over seeds, multiply-adds,
parameters, clips/s here and on the paper's platforms), then each finding computed on the whole sweep
and on each seed alone (the spread). Arithmetic only: it trains and times nothing. Every mean ± sd
comes from :mod:`search.stats` (sample sd).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from statistics import fmean
from typing import cast

import pandas as pd

import analysis
from analysis.load import trained_on
from profiler.report import signed
from search.results import finished
from search.stats import compare_agreement, sample_sd
from space.paper import table8

LEVELS = 4
"""Table 8 lists four complexity levels of four models each (then SqueezeNet and the ResNets)."""
_SPEEDS = ("clips_per_s", "optimized_clips_per_s", "titanxp_clips_s", "tx2_clips_s")
"""Clips/s columns: eager and optimized on this machine, then the paper's Titan Xp and TX2."""


def presets() -> pd.DataFrame:
    """Table 8's 17 efficient rows, with their complexity level (1-4; SqueezeNet: 4, its only level)."""
    rows = [r for r in table8() if not r.model.startswith("res")]
    df = pd.DataFrame([r.__dict__ for r in rows])
    df["level"] = [min(i // 4 + 1, LEVELS) for i in range(len(df))]
    return df


def accuracy(trials: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample sd and per-seed top-1 of every (family, width) of a sweep."""
    done = finished(trials).astype({"seed": int})
    g = done.groupby(["family", "width_mult"])["accuracy"]
    seeds = done.pivot_table(index=["family", "width_mult"], columns="seed", values="accuracy")
    out = pd.DataFrame({"mean": g.mean(), "sd": g.agg(sample_sd), "n": g.size()}).join(seeds.add_prefix("seed"))
    return out.reset_index().rename(columns={"family": "model"})


def by_seed(trials: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """The sweep split by seed."""
    return {int(cast(float, s)): g for s, g in trials.groupby("seed")}


def width_line(trials: pd.DataFrame) -> str:
    """(iv): how much steeper accuracy falls per 0.1 of width below 0.5x than at or above it."""

    def one(df: pd.DataFrame) -> str:
        s = analysis.width_summary(analysis.width_drops(df))
        both = f"{signed(s.below)} / {signed(s.above)}"
        return f"{both} pp per 0.1x ({s.below / s.above:.1f}x)" if s.above else both

    parts = [f"all seeds {one(trials)}"] + [f"seed {k} {one(g)}" for k, g in by_seed(trials).items()]
    return "; ".join(parts)


def depth_line(trials: pd.DataFrame) -> str:
    """(i): deeper families against each shallower model at no more multiply-adds."""

    def one(df: pd.DataFrame) -> str:
        d = analysis.depth_comparison(df)
        return f"{int((d['gain'] > 0).sum())} of {len(d)} wins, mean {signed(d['gain'].mean(), 1)} pp"

    return "; ".join([f"all seeds {one(trials)}"] + [f"seed {k} {one(g)}" for k, g in by_seed(trials).items()])


def mobilenetv2_rank(table: pd.DataFrame, column: str) -> str:
    """(ii): MobileNetV2's rank among the four models of each complexity level (1 = best)."""
    ranks = []
    for level in range(1, LEVELS + 1):
        four = table[(table["level"] == level) & (table["model"] != "squeezenet")]
        order = four.sort_values(column, ascending=False)["model"].tolist()
        ranks.append(order.index("mobilenetv2") + 1)
    return ", ".join(map(str, ranks))


def spearman(table: pd.DataFrame, x: str, y: str) -> str:
    """Spearman's rho of two columns, with n."""
    c = analysis.rank_correlation(table, x, y)
    return f"{c.rho:.2f} (n={c.n})"


def main_figure(trials: dict[str, pd.DataFrame], stem: Path) -> None:
    """Accuracy vs width multiplier per family: the two proxy tasks (mean ± sd over seeds) above the
    paper's Jester and Kinetics-600 (Table 8), 0.5x marked on each."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for ax, (task, df) in zip(axes[0], trials.items(), strict=True):
        analysis.plot_width_curves(df, title=f"{task} proxy task, 3 epochs\n{trained_on(df)}", ax=ax)
    for ax, (dataset, title) in zip(axes[1], (("jester", "Jester (paper)"), ("kinetics600", "Kinetics-600 (paper)")), strict=True):
        analysis.plot_width_curves(analysis.paper_frame(dataset), title=title, ax=ax)
    analysis.plots.save_figure(fig, stem.parent, stem.name)


def main(argv: list[str] | None = None) -> int:
    """Print the tables and the findings."""
    args = _parser().parse_args(argv)
    trials = {"motion": analysis.load_csv(args.motion).trials, "digits": analysis.load_csv(args.digits).trials}
    if args.figure:
        main_figure(trials, args.figure)
    table = _with_latency(_with_accuracy(presets(), trials), args.latency)
    for line in _lines(table, trials):
        print(line)
    return 0


def _parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--motion", type=Path, required=True, help="run folder or trials.csv of the motion sweep")
    p.add_argument("--digits", type=Path, required=True, help="run folder or trials.csv of the digits sweep")
    p.add_argument("--latency", type=Path, required=True, help="e3d profile --paper-table --json output")
    p.add_argument("--figure", type=Path, help="also write the main figure here (stem; .png and .svg)")
    return p


def _with_accuracy(table: pd.DataFrame, trials: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``table`` with each task's accuracy columns (``<task>_mean``, ``<task>_sd``, ``<task>_seed<k>``...)."""
    for task, df in trials.items():
        acc = accuracy(df).rename(columns=lambda c, t=task: c if c in ("model", "width_mult") else f"{t}_{c}")
        table = table.merge(acc, on=["model", "width_mult"], how="left")
    return table


def _with_latency(table: pd.DataFrame, latency: Path) -> pd.DataFrame:
    """``table`` with the counts and speeds measured here, and the time per clip (``ms_<speed>``) of every speed."""
    measured = ["model", "width_mult", "macs_m", "params_m", "clips_per_s", "optimized_clips_per_s"]
    timed = pd.DataFrame(json.loads(latency.read_text()))[measured]
    table = table.merge(timed.rename(columns={"params_m": "our_params_m"}), on=["model", "width_mult"], how="left")
    for col in _SPEEDS:
        table[f"ms_{col}"] = 1000 / table[col]
    return table


def _lines(table: pd.DataFrame, trials: dict[str, pd.DataFrame]) -> Iterator[str]:
    """Every printed line, each computed just before it is printed: the presets table, then findings (i)-(viii)."""
    yield from _preset_lines(table, trials)
    yield from _depth_lines(trials)
    yield from _rank_lines(table, trials)
    yield from _transfer_lines(table)
    yield from _width_lines(trials)
    yield from _squeezenet_cost_lines(table)
    yield from _speed_lines(table)
    yield from _squeezenet_speed_lines(table)
    yield from _shufflenet_lines(table)
    mean_gap = fmean(table["motion_mean"].dropna()) - fmean(table["digits_mean"].dropna())
    yield f"\nmean top-1 motion minus digits over the presets: {signed(mean_gap, 1)} pp"


def _preset_lines(table: pd.DataFrame, trials: dict[str, pd.DataFrame]) -> Iterator[str]:
    """The markdown table of the 17 presets."""
    yield "| level | model | width | macs M | params M | motion top-1 % | digits top-1 % | clips/s eager | optimized | Titan Xp | TX2 |"
    yield "|---:|---|---:|---:|---:|---|---|---:|---:|---:|---:|"
    for _, r in table.iterrows():
        yield "| " + " | ".join(_preset_cells(r, trials)) + " |"


def _preset_cells(r: pd.Series, tasks: Iterable[str]) -> list[str]:
    """One preset's cells: counts, accuracy per task (mean ± sd over seeds), then speeds."""
    return [
        f"{r['level']}",
        r["model"],
        f"{r['width_mult']:g}x",
        f"{r['macs_m']:.1f}",
        f"{r['our_params_m']:.2f}",
        *(f"{r[f'{t}_mean']:.1f} ± {r[f'{t}_sd']:.1f}" for t in tasks),
        f"{r['clips_per_s']:.1f}",
        f"{r['optimized_clips_per_s']:.1f}",
        f"{r['titanxp_clips_s']:g}",
        f"{r['tx2_clips_s']:g}",
    ]


def _depth_lines(trials: dict[str, pd.DataFrame]) -> Iterator[str]:
    """(i): deeper against shallower families, per task."""
    yield "\n**(i) depth**"
    for task, df in trials.items():
        yield f"- {task}: {depth_line(df)}"


def _rank_lines(table: pd.DataFrame, trials: dict[str, pd.DataFrame]) -> Iterator[str]:
    """(ii): MobileNetV2's rank per level, on each task's mean, the paper's datasets and each seed."""
    yield "\n**(ii) MobileNetV2's rank in its complexity level (levels 1-4; 1 = most accurate of four)**"
    for col in ("motion_mean", "digits_mean", "jester_top1", "kinetics600_top1"):
        yield f"- {col}: {mobilenetv2_rank(table, col)}"
    for task, df in trials.items():
        for s in sorted(by_seed(finished(df))):
            yield f"- {task} seed {s}: {mobilenetv2_rank(table, f'{task}_seed{s}')}"


def _transfer_lines(table: pd.DataFrame) -> Iterator[str]:
    """(iii): whether two tasks rank the presets alike, ours and the paper's."""
    yield "\n**(iii) do the two tasks rank the models alike? Spearman over the 17 presets**"
    yield f"- motion vs digits (ours): {spearman(table, 'motion_mean', 'digits_mean')}"
    yield f"- Kinetics-600 vs UCF-101 (paper): {spearman(table, 'kinetics600_top1', 'ucf101_top1')}"
    yield f"- Jester vs Kinetics-600 (paper): {spearman(table, 'jester_top1', 'kinetics600_top1')}"


def _width_lines(trials: dict[str, pd.DataFrame]) -> Iterator[str]:
    """(iv): the loss per 0.1 of width below and above 0.5x, per task."""
    yield "\n**(iv) width**"
    for task, df in trials.items():
        yield f"- {task}: {width_line(df)}"


def _squeezenet_cost_lines(table: pd.DataFrame) -> Iterator[str]:
    """(v): SqueezeNet's parameters and multiply-adds against the other models of the highest level."""
    top = table[table["level"] == LEVELS]
    sq = top[top["model"] == "squeezenet"].iloc[0]
    others = top[top["model"] != "squeezenet"]
    yield "\n**(v) SqueezeNet at the highest complexity level**"
    yield (
        f"- params {sq['our_params_m']:.2f} M vs {others['our_params_m'].min():.2f}-{others['our_params_m'].max():.2f} M; "
        f"macs {sq['macs_m']:.0f} M vs {others['macs_m'].min():.0f}-{others['macs_m'].max():.0f} M "
        f"(+{sq['macs_m'] - others['macs_m'].mean():.0f} M over their mean)"
    )


def _speed_lines(table: pd.DataFrame) -> Iterator[str]:
    """(vi): Spearman of multiply-adds with time per clip, and of the speeds with one another."""
    yield "\n**(vi) do multiply-adds predict time per clip? Spearman over the 17 presets**"
    for col in _SPEEDS:
        yield f"- {col}: {spearman(table, 'macs_m', f'ms_{col}')}"
    yield "- do they predict it better here than on the paper's GPUs? (Spearman here minus Spearman there)"
    for here in _SPEEDS[:2]:
        for paper in _SPEEDS[2:]:
            v = compare_agreement(table[f"ms_{here}"], table[f"ms_{paper}"], table["macs_m"])
            yield f"  - {here} vs {paper}: {v.format(unit='in Spearman', digits=2)}"
    yield f"- eager vs optimized speed ranks here: {spearman(table, 'clips_per_s', 'optimized_clips_per_s')}"
    yield (
        f"- this CPU (optimized) vs Titan Xp / TX2: {spearman(table, 'optimized_clips_per_s', 'titanxp_clips_s')} / "
        f"{spearman(table, 'optimized_clips_per_s', 'tx2_clips_s')}"
    )


def _squeezenet_speed_lines(table: pd.DataFrame) -> Iterator[str]:
    """(vii): SqueezeNet's speed rank among the 17 on every platform."""
    yield "\n**(vii) SqueezeNet's speed rank among the 17 (1 = fastest)**"
    for col in _SPEEDS:
        yield f"- {col}: {int(table[col].rank(ascending=False)[table['model'] == 'squeezenet'].iloc[0])}"


def _shufflenet_lines(table: pd.DataFrame) -> Iterator[str]:
    """(viii): ShuffleNetV1 against ShuffleNetV2 speeds at the two highest levels."""
    yield "\n**(viii) ShuffleNetV1 / ShuffleNetV2 clips/s at the two highest levels**"
    for level in (3, LEVELS):
        v1 = table[(table["level"] == level) & (table["model"] == "shufflenet")].iloc[0]
        v2 = table[(table["level"] == level) & (table["model"] == "shufflenetv2")].iloc[0]
        cols = ("titanxp_clips_s", "tx2_clips_s", "clips_per_s", "optimized_clips_per_s")
        yield f"- level {level}: " + "; ".join(f"{c} {v1[c]:.1f} / {v2[c]:.1f}" for c in cols)


if __name__ == "__main__":
    raise SystemExit(main())
