"""Scaling curves: what a scaling study (``e3d scale``) learned, as tables first and a figure second.

A run folder holds ``points.csv`` (one row per point: its axis, factors, cost and accuracy over seeds),
``path.csv`` (an expansion's chosen steps) and ``scale.json`` (the study's settings). From them:
:func:`curves` groups the points into curves (one per axis, the compound targets, the expansion path;
the base belongs to each), :func:`slopes` fits accuracy against log2 multiply-adds per curve (points
of top-1 per doubling of the cost), :func:`plot_curves` draws them with a log x axis and
:func:`summary_markdown` writes the summary. Several studies side by side: :func:`compare_studies` (which
axis each expansion chose and gained by, early and late) and :func:`write_comparison`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analysis.load import AnalysisError, read_table, trained_on
from analysis.plots import save_figure, set_suptitle, set_title
from space.files import write_text

POINTS, PATH, CONFIG = "points.csv", "path.csv", "scale.json"
PATH_CURVE = "expansion path"
AXIS_COLORS = {"width": "tab:blue", "width only": "tab:cyan", "depth": "tab:orange", "frames": "tab:green", "resolution": "tab:red",
               "expansion": "tab:purple", "compound": "tab:brown", PATH_CURVE: "black"}  # fmt: skip
"""One colour per axis, the same on every scaling figure."""


@dataclass
class ScaleRun:
    """A scaling study's results: its points, its expansion path (may be empty) and its settings."""

    points: pd.DataFrame
    path: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)


KEYS = {POINTS: ("point", "mode", "axis", "macs"), PATH: ("step", "point", "axis", "macs")}
"""Columns every row of each table fills; with ``accuracy_mean`` (empty until trained), those it needs."""


def load_scale(folder: str | Path) -> ScaleRun:
    """Read a scale run folder (``points.csv``, ``path.csv``, ``scale.json``); :class:`AnalysisError` in one
    line for a file that is missing, unreadable, lacks a column, has a row cut short or a non-number cost or
    accuracy."""
    root = Path(folder)
    if not (root / POINTS).is_file():
        raise AnalysisError(f"{root} holds no {POINTS}: not an e3d scale run folder")
    points = _checked(read_table(root / POINTS), root / POINTS)
    path = _checked(read_table(root / PATH), root / PATH) if (root / PATH).is_file() else points.iloc[0:0]
    unknown = path[~path["point"].isin(points["point"])]
    if len(unknown):
        raise AnalysisError(f"{root / PATH}: row {unknown.index[0] + 2}: point {unknown.iloc[0]['point']!r} is not in {POINTS}")
    return ScaleRun(points, path, _settings(root / CONFIG) if (root / CONFIG).is_file() else {})


def _checked(df: pd.DataFrame, p: Path) -> pd.DataFrame:
    """``df`` with numeric ``macs`` and ``accuracy_mean`` (:func:`_in_range`) and each point once, or
    :class:`AnalysisError` naming what is wrong."""
    keys = KEYS[p.name]
    missing = [c for c in (*keys, "accuracy_mean") if c not in df]
    if missing:
        raise AnalysisError(f"{p} lacks the columns {', '.join(missing)}")
    with p.open(newline="") as f:
        widths = [len(row) for row in csv.reader(f)]
    short = [i for i, n in enumerate(widths) if 0 < n < widths[0]]
    if short:
        raise AnalysisError(f"{p}: row {short[0] + 1} has {widths[short[0]]} of {widths[0]} fields (cut short?)")
    blank = df[df[list(keys)].isna().any(axis=1)]
    if len(blank):
        raise AnalysisError(f"{p}: row {blank.index[0] + 2} lacks {', '.join(c for c in keys if pd.isna(blank.iloc[0][c]))}")
    for column in ("macs", "accuracy_mean"):
        numbers = pd.to_numeric(df[column], errors="coerce")
        bad = df[numbers.isna() & df[column].notna()]
        if len(bad):
            raise AnalysisError(f"{p}: row {bad.index[0] + 2}: {column} {bad.iloc[0][column]!r} is not a number")
        df = df.assign(**{column: numbers})
    twice = df[df["point"].duplicated()]
    if len(twice):
        raise AnalysisError(f"{p}: row {twice.index[0] + 2}: point {twice.iloc[0]['point']!r} is there twice")
    return _in_range(df, p)


def _in_range(df: pd.DataFrame, p: Path) -> pd.DataFrame:
    """``df``, or :class:`AnalysisError` for a cost that is not positive or an accuracy outside 0-100 (%)."""
    checks = (("macs", df["macs"] > 0, "a positive number"), ("accuracy_mean", df["accuracy_mean"].between(0, 100), "0-100"))
    for column, ok, what in checks:
        bad = df[~ok & df[column].notna()]
        if len(bad):
            raise AnalysisError(f"{p}: row {bad.index[0] + 2}: {column} {bad.iloc[0][column]:g} is not {what}")
    return df


def _settings(p: Path) -> dict[str, Any]:
    """A ``scale.json``; :class:`AnalysisError` for one that is not the JSON object ``e3d scale`` writes."""
    try:
        settings = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AnalysisError(f"{p} is not readable JSON: {e}") from None
    if not isinstance(settings, dict) or "mode" not in settings:
        raise AnalysisError(f"{p} is not the settings of an e3d scale run (no mode)")
    return settings


def curves(points: pd.DataFrame, path: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Curve name -> its points sorted by cost, each starting from the base. Single-axis points make one
    curve per axis, compound targets one (``compound``), an expansion's chosen steps one (``expansion
    path``). An expansion's candidates are steps from the path, not curves: see :func:`step_gains`."""
    base = points[points["mode"] == "base"]
    out: dict[str, pd.DataFrame] = {}
    for axis, rows in points[points["mode"] == "axes"].groupby("axis", sort=False):
        out[str(axis)] = rows
    for axis, rows in points[points["mode"] == "versus"].groupby("axis", sort=False):
        out[str(axis)] = rows  # "<axis> only": the base scaled along one axis to the path's costs
    compound = points[points["mode"] == "compound"]
    if len(compound):
        out["compound"] = compound
    if path is not None and len(path):
        out[PATH_CURVE] = points.set_index("point").loc[list(path["point"])].reset_index()
    return {k: pd.concat([base, v]).drop_duplicates("point").sort_values("macs") for k, v in out.items()}


def slope(macs: pd.Series, accuracy: pd.Series) -> float:
    """Least-squares slope of accuracy against log2(macs): top-1 points per doubling of the cost (NaN
    with fewer than two distinct costs with an accuracy)."""
    ok = accuracy.notna() & (macs > 0)
    x, y = np.log2(macs[ok].astype(float)), accuracy[ok].astype(float)
    if len(set(x)) < 2:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


GAIN_COLUMNS = ("step", "axis", "macs_from", "macs_to", "accuracy_from", "accuracy_to", "gain_per_doubling", "chosen")
"""The columns of :func:`step_gains`' table."""


def step_gains(points: pd.DataFrame, path: pd.DataFrame) -> pd.DataFrame:
    """An expansion's steps: for each step and axis, the candidate's accuracy gain over the path point it
    grew from, per doubling of multiply-adds, and whether it was chosen (no rows, the columns still, for a
    path without steps)."""
    if not len(path):
        return pd.DataFrame(columns=list(GAIN_COLUMNS))
    by_id = points.set_index("point")
    chain = list(path["point"])
    rows = []
    for _, c in points[points["mode"] == "expand"].iterrows():
        step = int(c["step"])
        if not 1 <= step <= len(chain):
            continue  # a step after the path's last point (cannot happen in a finished plan)
        start = by_id.loc[chain[step - 1]]
        doublings = math.log2(c["macs"] / start["macs"])
        gain = (c["accuracy_mean"] - start["accuracy_mean"]) / doublings if doublings > 0 else math.nan
        rows.append({
            "step": step, "axis": c["axis"], "macs_from": start["macs"], "macs_to": c["macs"], "accuracy_from": start["accuracy_mean"],
            "accuracy_to": c["accuracy_mean"], "gain_per_doubling": gain, "chosen": step < len(chain) and chain[step] == c["point"],
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(GAIN_COLUMNS)).sort_values(["step", "axis"]).reset_index(drop=True)


def versus_table(points: pd.DataFrame, path: pd.DataFrame) -> pd.DataFrame:
    """Each expansion step against the base scaled along one axis alone to the same cost (``--versus``):
    the accuracy difference and Welch's two-sided p over seeds (:mod:`search.stats`; NaN with one seed)."""
    from search.stats import ALPHA, Summary, welch_p

    versus = points[points["mode"] == "versus"].set_index("step")
    rows = []
    for _, p in path[path["step"] > 0].iterrows():
        if p["step"] not in versus.index:
            continue
        v = versus.loc[p["step"]]
        a = Summary(p["accuracy_mean"], p["accuracy_sd"], int(points.set_index("point").loc[p["point"], "seeds_done"]))
        b = Summary(v["accuracy_mean"], v["accuracy_sd"], int(v["seeds_done"]))
        pval = welch_p(a, b) if a.n >= 2 and b.n >= 2 else math.nan
        untested = "n/a (one seed)" if min(a.n, b.n) < 2 else "n/a (no spread)"
        verdict = untested if math.isnan(pval) else "tie" if pval >= ALPHA else ("path" if a.mean > b.mean else str(v["axis"]))
        rows.append({
            "step": int(p["step"]), "path_axis": p["axis"], "macs_m": p["macs"] / 1e6, "versus_macs_m": v["macs"] / 1e6,
            "path_accuracy": a.mean, "versus_accuracy": b.mean, "difference": a.mean - b.mean, "p": pval, "better": verdict,
        })  # fmt: skip
    return pd.DataFrame(rows)


SLOPE_COLUMNS = ("curve", "points", "macs_min_m", "macs_max_m", "accuracy_min", "accuracy_max", "slope_per_doubling")
"""The columns of :func:`slopes`' table."""


def slopes(points: pd.DataFrame, path: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per curve: points, cost range, accuracy range and the slope per doubling of multiply-adds,
    steepest first. For an expansion, each axis also gets a row ``<axis> (steps)``: the mean of its
    candidates' gains per doubling over the steps (:func:`step_gains`), each measured from the path; its
    ranges span the steps' both ends, the path points they grew from included."""
    rows = []
    if path is not None and len(path):
        for axis, g in step_gains(points, path).groupby("axis", sort=False):
            done = g[g["gain_per_doubling"].notna()]
            ends = pd.concat([done["accuracy_from"], done["accuracy_to"]])
            rows.append({
                "curve": f"{axis} (steps)", "points": len(done), "macs_min_m": g["macs_from"].min() / 1e6,
                "macs_max_m": g["macs_to"].max() / 1e6, "accuracy_min": ends.min(), "accuracy_max": ends.max(),
                "slope_per_doubling": done["gain_per_doubling"].mean() if len(done) else math.nan,
            })  # fmt: skip
    for name, c in curves(points, path).items():
        done = c[c["accuracy_mean"].notna()]
        rows.append({
            "curve": name, "points": len(done), "macs_min_m": c["macs"].min() / 1e6, "macs_max_m": c["macs"].max() / 1e6,
            "accuracy_min": done["accuracy_mean"].min() if len(done) else math.nan,
            "accuracy_max": done["accuracy_mean"].max() if len(done) else math.nan,
            "slope_per_doubling": slope(c["macs"], c["accuracy_mean"]),
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=list(SLOPE_COLUMNS))  # no curve (no point trained): the columns still
    return table.sort_values("slope_per_doubling", ascending=False, na_position="last").reset_index(drop=True)


def plot_curves(points: pd.DataFrame, path: pd.DataFrame | None = None, *, ax: Axes | None = None, title: str = "") -> Figure:
    """Accuracy (mean ± sd over seeds) against multiply-adds on a log axis, one labelled line per curve."""
    if ax is None:
        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        root = ax.get_figure(root=True)
        assert isinstance(root, Figure)
        fig = root
    for name, c in curves(points, path).items():
        done = c[c["accuracy_mean"].notna()]
        sd = done["accuracy_sd"].fillna(0.0) if "accuracy_sd" in done else None
        style: dict[str, Any] = {"lw": 2.2, "marker": "s"} if name == PATH_CURVE else {"lw": 1.2, "marker": "o", "alpha": 0.85}
        color = AXIS_COLORS.get(name.split(":")[0])
        ax.errorbar(done["macs"] / 1e6, done["accuracy_mean"], yerr=sd, label=name, color=color, capsize=2, **style)
    if path is not None and len(path):
        labelled: set[str] = set()
        for _, g in step_gains(points, path).iterrows():
            axis = str(g["axis"])
            ax.plot([g["macs_from"] / 1e6, g["macs_to"] / 1e6], [g["accuracy_from"], g["accuracy_to"]], ls="--", marker="o", lw=1,
                    color=AXIS_COLORS.get(axis.split(":")[0]), alpha=0.8, label=None if axis in labelled else f"{axis} (step)")  # fmt: skip
            labelled.add(axis)
    base = points[points["mode"] == "base"]
    if len(base) and base["accuracy_mean"].notna().any():
        ax.scatter(base["macs"] / 1e6, base["accuracy_mean"], s=90, facecolors="none", edgecolors="black", zorder=5, label="base")
    ax.set_xscale("log")
    ax.set_xlabel("multiply-adds per clip (M, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    set_title(ax, title or f"accuracy vs multiply-adds per scaling axis\n{trained_on(points)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.2f}"
    return "" if v is None else str(v)


def _table(df: pd.DataFrame, columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in df.iterrows():
        cells = [_cell(r[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _in_millions(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(macs_m=df["macs"] / 1e6)


def summary_markdown(run: ScaleRun) -> str:
    """The run's summary: settings, the slope per curve, the expansion path, and every point."""
    cfg = run.config
    lines = ["# Scaling study", "", f"Points {trained_on(run.points)}.", "", *unfinished(run)]
    if cfg:
        base = json.loads(cfg["base"]) if "base" in cfg else {}
        lines += [f"Base: {base.get('family', '?')} at width {base.get('width_mult', '?')}; mode `{cfg.get('mode')}`, "
                  f"axes {', '.join(cfg.get('axes', []))}; {cfg.get('seeds', 1)} seed(s); proxy clip "
                  f"{'x'.join(map(str, cfg.get('proxy_clip', [])))}.", ""]  # fmt: skip
        lines += [f"- note: {n}" for n in cfg.get("notes", [])] + ([""] if cfg.get("notes") else [])
    sl = slopes(run.points, run.path)
    lines += ["## Accuracy per doubling of multiply-adds", "",
              "Least-squares slope of top-1 (%) against log2(multiply-adds), base included in every curve; for "
              "`<axis> (steps)`, the mean of that axis's candidate gains per doubling, each from the path point it grew "
              "from (ranges: both ends of those steps).", ""]  # fmt: skip
    lines += _table(sl, ["curve", "points", "macs_min_m", "macs_max_m", "accuracy_min", "accuracy_max", "slope_per_doubling"])
    if len(run.path):
        lines += ["", "## Expansion path", ""]
        lines += _table(_in_millions(run.path), ["step", "axis", "factors", "macs_m", "accuracy_mean", "accuracy_sd", "summary"])
        lines += [
            "",
            "## Every expansion step",
            "",
            "Each candidate's gain over the path point it grew from, per doubling of multiply-adds.",
            "",
        ]
        gains = step_gains(run.points, run.path).assign(macs_from=lambda d: d["macs_from"] / 1e6, macs_to=lambda d: d["macs_to"] / 1e6)
        cols = ["step", "axis", "from_m", "to_m", "accuracy_from", "accuracy_to", "gain_per_doubling", "chosen"]
        renamed = gains.rename(columns={"macs_from": "from_m", "macs_to": "to_m"})
        lines += _table(renamed, cols) if len(gains) else ["(no expansion steps: the path is the base alone)"]
    versus = versus_table(run.points, run.path) if len(run.path) else pd.DataFrame()
    if len(versus):
        test = "Welch's two-sided t-test over seeds, alpha 0.05 (search.stats); `better` names the winner, or says tie."
        lines += ["", "## The path against one axis alone at equal cost", "", test, ""]
        lines += _table(versus, list(versus.columns))
    lines += ["", "## Every point", ""]
    cols = ["point", "factors", "macs_m", "cost_ratio", "accuracy_mean", "accuracy_sd", "seeds_done", "summary"]
    points = _in_millions(run.points)
    lines += _table(points, [c for c in cols if c in points])
    return "\n".join(lines) + "\n"


def unfinished(run: ScaleRun, name: str = "") -> list[str]:
    """A paragraph saying how much of the plan (of study ``name``) is trained, when not all of it is (none when it is)."""
    seeds = int(run.config.get("seeds", 1))
    done = run.points["seeds_done"] >= seeds if "seeds_done" in run.points else run.points["accuracy_mean"].notna()
    if done.all():
        return []
    return [f"**Unfinished{f' ({name})' if name else ''}:** {int(done.sum())} of the {len(done)} points planned so far have all "
            f"{seeds} seed(s); later steps are planned as earlier ones finish (`e3d scale --resume` continues).", ""]  # fmt: skip


def write_report(folder: str | Path) -> dict[str, Path]:
    """Write ``curves.png`` and ``summary.md`` into a scale run folder; returns their paths."""
    root = Path(folder)
    run = load_scale(root)
    fig = plot_curves(run.points, run.path)
    (curves_png,) = save_figure(fig, root, "curves", formats=("png",))
    return {"curves": curves_png, "summary": write_text(root / "summary.md", summary_markdown(run))}


EARLY = 2
"""Expansion steps that :func:`compare_studies` counts as early. X3D found depth and frames the most
efficient expansions of its first steps and width among the last; these tables ask whether a study agrees."""


def axis_gains(run: ScaleRun) -> pd.DataFrame:
    """One row per axis of an expansion: the mean gain per doubling of its candidates (:func:`step_gains`) over
    the early steps (at most :data:`EARLY`) and the later ones (NaN where it has none), the steps it was
    tried at and the steps that chose it."""
    from search.stats import summarize

    gains = step_gains(run.points, run.path)
    gains = gains[gains["gain_per_doubling"].notna()]
    rows = []
    for axis, g in gains.groupby("axis", sort=True):
        early, late = (g.loc[sel, "gain_per_doubling"] for sel in (g["step"] <= EARLY, g["step"] > EARLY))
        rows.append({
            "axis": axis, "early": summarize(early).mean if len(early) else math.nan,
            "late": summarize(late).mean if len(late) else math.nan, "tried": len(g), "chosen": int(g["chosen"].sum()),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["axis", "early", "late", "tried", "chosen"])


def compare_studies(runs: Mapping[str, ScaleRun]) -> pd.DataFrame:
    """One row per study: its expansion path (the axis of each step), its last point, and the path against
    one axis alone at equal cost (:func:`versus_table`): at how many steps the path was ahead by mean, and
    the verdicts (Welch's test over seeds) for the path, ties and the axis alone."""
    rows = []
    for name, run in runs.items():
        steps = run.path[run.path["step"] > 0]
        versus = versus_table(run.points, run.path).reindex(columns=["difference", "better"])
        last = run.path.iloc[-1] if len(run.path) else None
        rows.append({
            "study": name, "path": " > ".join(map(str, steps["axis"])) or "(none)",
            "last": "" if last is None else f"{last['macs'] / 1e6:,.0f} M: {last['accuracy_mean']:.1f}%",
            "compared": len(versus), "ahead": int((versus["difference"] > 0).sum()),
            "path_wins": int((versus["better"] == "path").sum()), "ties": int((versus["better"] == "tie").sum()),
            "alone_wins": int((~versus["better"].isin(["path", "tie", "n/a (one seed)"])).sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def comparison_markdown(runs: Mapping[str, ScaleRun], *, command: str = "") -> str:
    """The studies side by side: each path against one axis alone, then each axis's gain per doubling early
    and late in every study (``early / late``, with how often it was chosen of the steps it was tried at)."""
    lines = ["# Scaling studies compared", "", f"{len(runs)} studies, {_trained_on_all(runs)}.", ""]
    lines += [f"Made by `{command}`.", ""] if command else []
    lines += [line for name, run in runs.items() for line in unfinished(run, name)]
    lines += ["## Each expansion path against one axis alone at equal cost", "",
              "`ahead`: steps where the path's mean accuracy is higher; the verdicts are Welch's two-sided t-test over seeds, "
              "alpha 0.05 (search.stats).", ""]  # fmt: skip
    lines += _table(compare_studies(runs), ["study", "path", "last", "compared", "ahead", "path_wins", "ties", "alone_wins"])
    lines += ["", f"## Gain per doubling of multiply-adds by axis: steps 1-{EARLY} / steps {EARLY + 1}+", "",
              "Each cell: the mean over steps of the axis's candidate gain in top-1 points per doubling, measured from the "
              "path point it grew from (early / late), then how many steps chose the axis of those it was tried at.", ""]  # fmt: skip
    cells: dict[str, dict[str, str]] = {}
    for name, run in runs.items():
        for _, g in axis_gains(run).iterrows():
            cells.setdefault(str(g["axis"]), {})[name] = (
                f"{_cell(g['early']) or '-'} / {_cell(g['late']) or '-'} ({g['chosen']} of {g['tried']})"
            )
    table = pd.DataFrame([{"axis": axis, **{n: by.get(n, "") for n in runs}} for axis, by in sorted(cells.items())])
    lines += _table(table, ["axis", *runs]) if len(table) else ["(no expansion steps)"]
    return "\n".join(lines) + "\n"


def plot_gains(runs: Mapping[str, ScaleRun], *, title: str = "") -> Figure:
    """One panel per study: each axis's mean gain per doubling early (solid) and late (hatched)."""
    fig = Figure(figsize=(3.2 * max(len(runs), 1), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(runs), 1), sharey=True, squeeze=False)[0]
    for ax, (name, run) in zip(axes, runs.items(), strict=False):
        g = axis_gains(run)
        x = np.arange(len(g))
        colors = [AXIS_COLORS.get(str(a).split(":")[0], "grey") for a in g["axis"]]
        ax.bar(x - 0.2, g["early"].fillna(0.0), 0.4, color=colors)
        ax.bar(x + 0.2, g["late"].fillna(0.0), 0.4, color=colors, hatch="//", alpha=0.6)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, list(g["axis"]), rotation=45, ha="right", fontsize=8)
        set_title(ax, name, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("top-1 gain (points) per doubling of multiply-adds")
    keys = [Patch(color="grey", label=f"steps 1-{EARLY}"), Patch(color="grey", alpha=0.6, hatch="//", label=f"steps {EARLY + 1}+")]
    axes[0].legend(handles=keys, fontsize=7)
    set_suptitle(fig, title or f"gain per doubling by axis, early and late steps\n{_trained_on_all(runs)}", fontsize=10)
    return fig


def write_comparison(folders: list[Path], out: Path, *, command: str = "") -> dict[str, Path]:
    """Write ``summary.md`` (naming the ``command`` that made it) and ``gains.png`` comparing the scale run
    ``folders`` (named by folder) into ``out``."""
    runs = {Path(f).name: load_scale(f) for f in folders}
    if len(runs) != len(folders):
        raise AnalysisError("two of the scale runs have the same folder name; name each study's folder apart")
    fig = plot_gains(runs)
    (gains_png,) = save_figure(fig, out, "gains", formats=("png",))
    return {"summary": write_text(out / "summary.md", comparison_markdown(runs, command=command)), "gains": gains_png}


def _trained_on_all(runs: Mapping[str, ScaleRun]) -> str:
    """:func:`trained_on` over the points of every run."""
    return trained_on(pd.concat([r.points for r in runs.values()], ignore_index=True))
