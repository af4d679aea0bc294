"""Tables and findings as text: the Pareto table ``e3d analyze`` prints, its ``summary.md``, and the
paper's findings that ``e3d paper`` prints. Pipe tables, readable in a terminal and as Markdown."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.findings import (
    DEEPER,
    SHALLOWER,
    WIDTH_THRESHOLD,
    RankCorrelation,
    WidthSummary,
    depth_comparison,
    speed_rank_correlation,
    width_curves,
    width_drops,
    width_summary,
)
from analysis.load import Results, trained_on
from analysis.paper import DATASETS, PLATFORMS, PaperFindings
from analysis.pareto import cost_info, pareto_table
from profiler.report import signed
from search.results import trial_counts

Column = tuple[str, Callable[[pd.Series], str]]
"""A table column: its header and how to write one row's cell."""


def table(df: pd.DataFrame, columns: Sequence[Column]) -> str:
    """``df`` as an aligned pipe table; numbers right-aligned."""
    head = [h for h, _ in columns]
    cells = [[fn(r) for _, fn in columns] for _, r in df.iterrows()]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    right = [any(c[i].strip() not in ("", "-") for c in cells) and all(_numeric(c[i]) for c in cells) for i in range(len(head))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(head), rule, *(line(c) for c in cells)])


def _numeric(text: str) -> bool:
    t = text.split("±")[0].split("(")[0].strip().rstrip("%x").replace(",", "")  # "42.00 ± 2.83 (2)" is a number
    if t in ("", "-"):
        return True
    try:
        float(t)
    except ValueError:
        return False
    return True


COST_FORMATS = {"macs": ".1f", "params": ".2f", "latency_ms": ".1f"}
"""How every table prints each cost (in its unit: M multiply-adds, M parameters, ms)."""


def _f(col: str, fmt: str, scale: float = 1.0) -> Callable[[pd.Series], str]:
    def cell(r: pd.Series) -> str:
        v = r[col]
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return "-"
        return signed(float(v) * scale, int(fmt[2:-1])) if fmt.startswith("+.") else format(float(v) * scale, fmt)

    return cell


def _accuracy(r: pd.Series) -> str:
    if int(r["n"]) > 1 and not math.isnan(float(r["accuracy_std"])):
        return f"{r['accuracy']:.2f} ± {r['accuracy_std']:.2f} ({int(r['n'])})"
    return f"{r['accuracy']:.2f}"


def pareto_text(df: pd.DataFrame, *, cost: str = "macs") -> str:
    """The accuracy-vs-``cost`` front as a table (one row per architecture, cheapest first)."""
    front = pareto_table(df, cost=cost)
    if not len(front):
        return f"(no finished trial with a known {cost_info(cost).label.split(' (')[0]})"
    columns: list[Column] = [
        ("trial(s)", lambda r: str(r["trials"])),
        ("source", lambda r: str(r["source"])),
        ("top-1 %", _accuracy),
        ("macs M", _f("macs", COST_FORMATS["macs"], 1e-6)),
        ("params M", _f("params", COST_FORMATS["params"], 1e-6)),
        ("latency ms", _f("latency_ms", COST_FORMATS["latency_ms"])),
        ("architecture", lambda r: str(r["summary"])),
    ]
    if cost not in COST_FORMATS:
        columns.insert(3, (cost, _f(cost, ".4g")))
    return table(front, columns)


def width_text(df: pd.DataFrame, *, threshold: float = WIDTH_THRESHOLD) -> str:
    """Accuracy per family and width (mean, spread, runs), then the drops between adjacent widths."""
    curves = width_curves(df)
    if not len(curves):
        return "(no finished trials)"
    curve_table = table(
        curves,
        [
            ("family", lambda r: str(r["family"])),
            ("width", lambda r: f"{r['width_mult']:.3g}x"),
            ("runs", lambda r: str(int(r["n"]))),
            ("top-1 mean %", _f("accuracy_mean", ".2f")),
            ("sd", _f("accuracy_std", ".2f")),
            ("min", _f("accuracy_min", ".2f")),
            ("max", _f("accuracy_max", ".2f")),
            ("macs M", _f("macs", ".1f", 1e-6)),
        ],
    )
    drops = width_drops(df, threshold=threshold)
    if not len(drops):
        return curve_table + "\n\n(no family has two widths, so no drops between widths)"
    drop_table = table(
        drops,
        [
            ("family", lambda r: str(r["family"])),
            ("from -> to", lambda r: f"{r['wide']:.3g}x -> {r['narrow']:.3g}x"),
            ("drop pp", _f("drop", "+.2f")),
            ("per 0.1x", _f("drop_per_tenth", "+.2f")),
            (f"ends below {threshold:g}x", lambda r: "yes" if r["below"] else ""),
        ],
    )
    verdict = width_line(width_summary(drops, threshold=threshold))
    return f"{curve_table}\n\nAccuracy lost from each width to the next narrower one:\n\n{drop_table}\n\n{verdict}"


def width_line(s: WidthSummary) -> str:
    """One sentence comparing the loss per 0.1 of width below and above the threshold."""
    if s.n_below == 0 or s.n_above == 0:
        return f"(needs width steps both below and at or above {s.threshold:g}x to compare: {s.n_below} below, {s.n_above} above)"
    ratio = "" if math.isnan(s.ratio) else f": {s.ratio:.1f}x steeper below {s.threshold:g}x"
    return (
        f"Per 0.1 of width, steps that end below {s.threshold:g}x lose {signed(s.below)} pp on average ({s.n_below} steps), "
        f"steps at or above it {signed(s.above)} pp ({s.n_above} steps){ratio}."
    )


def depth_text(df: pd.DataFrame, *, cost: str = "macs") -> str:
    """:func:`analysis.findings.depth_comparison` as a table and a one-line verdict."""
    d = depth_comparison(df, cost=cost)
    info = cost_info(cost)
    if not len(d):
        return f"(needs finished trials of a shallower family: {', '.join(SHALLOWER)})"
    columns: list[Column] = [
        ("shallower model", lambda r: f"{r['family']} {r['width_mult']:.3g}x"),
        (f"{cost} {info.unit}".rstrip(), _f("cost", COST_FORMATS.get(cost, ".4g"), info.scale)),
        ("top-1 %", _f("accuracy", ".2f")),
        (
            "best deeper model, no costlier",
            lambda r: "-" if pd.isna(r["deeper_family"]) else f"{r['deeper_family']} {r['deeper_width']:.3g}x",
        ),
        (f"its {cost} {info.unit}".rstrip(), _f("deeper_cost", COST_FORMATS.get(cost, ".4g"), info.scale)),
        ("its top-1 %", _f("deeper_accuracy", ".2f")),
        ("gain pp", _f("gain", "+.2f")),
    ]
    return f"{table(d, columns)}\n\n{depth_line(d)}"


def depth_line(d: pd.DataFrame) -> str:
    """How often the deeper family wins at equal budget, and by how much on average."""
    compared = d[d["gain"].notna()]
    if not len(compared):
        return f"(no deeper-family model ({', '.join(DEEPER)}) is as cheap as any shallower one)"
    wins = int((compared["gain"] > 0).sum())
    return f"A deeper family is more accurate in {wins} of {len(compared)} comparisons; mean gain {signed(compared['gain'].mean())} pp."


def correlation_line(c: RankCorrelation) -> str:
    """One sentence about FLOPs against measured time."""
    return c.describe() + " (rho 1: more FLOPs always slower)"


def summary_markdown(
    results: Results, *, figures: Sequence[Path] = (), command: str = "", latency_note: str | None = None, paper: bool = True
) -> str:
    """``summary.md`` of ``e3d analyze``: the trials, the Pareto fronts, the findings and the figures."""
    df = results.trials
    lines = [f"# Analysis of {results.name}", ""]
    if command:
        lines += [f"Written by `{command}`.", ""]
    lines += ["## Trials", "", f"{_counts(df)} Trials {trained_on(df)}.", ""]
    lines += [_budget_line(results), ""]
    proxy = (results.config or {}).get("proxy")
    if proxy:
        lines += [
            f"Accuracy: proxy top-1 (%) on the {proxy.get('data') or proxy.get('task')} task, {proxy.get('val_samples')} held-out "
            f"clips of {'x'.join(map(str, proxy.get('clip', [])))}, after {proxy.get('epochs')} epoch(s) of training per trial.",
            "",
        ]
    for cost in ("macs", "params", "latency_ms"):
        lines += [f"## Pareto front: accuracy vs {cost_info(cost).label}", "", pareto_text(df, cost=cost), ""]
    lines += ["## Width multiplier", "", width_text(df), ""]
    lines += [f"## Deeper ({', '.join(DEEPER)}) vs shallower ({', '.join(SHALLOWER)}) families at equal multiply-adds", ""]
    lines += [depth_text(df, cost="macs"), ""]
    corr = speed_rank_correlation(df)
    lines += ["## Do multiply-adds predict measured latency?", ""]
    lines += [correlation_line(corr) if corr.n else "(no latency measured; run e3d analyze with --measure-latency)", ""]
    if latency_note:
        lines += [latency_note, ""]
    if paper:
        from analysis.paper import paper_findings

        lines += ["## The paper's Table 8, for comparison (`e3d paper`)", "", paper_headlines(paper_findings()), ""]
    if figures:
        lines += ["## Figures", "", *(f"- [{p.name}]({p.name})" for p in figures), ""]
    return "\n".join(lines)


def _counts(df: pd.DataFrame) -> str:
    sources = df["source"].fillna("search").astype(str).value_counts().to_dict()  # a surplus trial stops before it records one
    src = ", ".join(f"{v} {k}" for k, v in sorted(sources.items(), key=lambda kv: str(kv[0])))
    return trial_counts(df) + (f" (by source: {src})." if src else ".")


def _budget_line(results: Results) -> str:
    clip = f" per {'x'.join(map(str, results.budget_clip))} clip" if results.budget_clip else ""
    if results.budget_mflops is None and results.config is not None:
        return f"Budget: none on multiply-adds in the study's settings; multiply-adds are counted{clip or ' on the spec clip'}."
    if results.budget_mflops is None:
        return f"Budget: unknown (give --budget-mflops to draw it); multiply-adds are counted{clip or ' on the spec clip'}."
    return f"Budget: multiply-adds <= {results.budget_mflops:g} M{clip}."


def paper_headlines(f: PaperFindings) -> str:
    """The paper's findings in a few lines (the full tables are in :func:`paper_text`)."""
    names = " / ".join(DATASETS.values())
    w = [f.datasets[k].widths for k in DATASETS]
    d = [f.datasets[k].depth for k in DATASETS]
    ratios = " / ".join(f"{s.ratio:.1f}x" for s in w)
    wins = " / ".join(f"{int((x['gain'] > 0).sum())} of {int(x['gain'].notna().sum())}" for x in d)
    gains = " / ".join(f"{signed(x['gain'].mean())}" for x in d)
    speed = ", ".join(f"{PLATFORMS[k]} {c.rho:.2f}" for k, c in f.speed.items())
    return "\n".join(
        [
            f"- (iv) Width: per 0.1 of width, steps ending below 0.5x lose {' / '.join(f'{s.below:.2f}' for s in w)} pp and the others "
            f"{' / '.join(f'{s.above:.2f}' for s in w)} pp ({names}): {ratios} steeper.",
            f"- (i) Depth: at no more MFLOPs, a deeper family beats each shallower model in {wins} cases, mean gain {gains} pp.",
            f"- (vi) Spearman rho of MFLOPs with time per clip over the 17 efficient models: {speed}.",
        ]
    )


def paper_text(f: PaperFindings) -> str:
    """Everything ``e3d paper`` prints: the three findings' tables and verdicts, then two correlations."""
    keys = list(DATASETS)
    out = [
        "The paper's findings recomputed from its Table 8 alone (17 efficient models; accuracies are top-1 %, "
        "MFLOPs and speeds as printed in the table; speeds are clips/s at batch 8).",
        "",
    ]
    out += _paper_width(f, keys)
    out += _paper_depth(f, keys)
    out += _paper_speed(f)
    return "\n".join(out)


def _paper_width(f: PaperFindings, keys: list[str]) -> list[str]:
    """(iv): the accuracy lost between adjacent widths on every dataset, then each dataset's verdict."""
    merged = f.datasets[keys[0]].drops[["family", "wide", "narrow", "below"]].copy()
    for k in keys:
        merged[k] = f.datasets[k].drops["drop"].to_numpy()
    cols: list[Column] = [
        ("family", lambda r: str(r["family"])),
        ("from -> to", lambda r: f"{r['wide']:g}x -> {r['narrow']:g}x"),
        *[(DATASETS[k], _f(k, "+.2f")) for k in keys],
        ("ends below 0.5x", lambda r: "yes" if r["below"] else ""),
    ]
    return [
        "(iv) Width multiplier: accuracy lost from each width to the next narrower one, percentage points",
        "",
        table(merged, cols),
        "",
        *(_dataset_line(k, width_line(f.datasets[k].widths)) for k in keys),
    ]


def _paper_depth(f: PaperFindings, keys: list[str]) -> list[str]:
    """(i): the best deeper model at no more MFLOPs than each shallower one, per dataset, then each verdict."""
    depth = f.datasets[keys[0]].depth[["family", "width_mult", "cost"]].copy()
    for k in keys:
        depth[k] = [_deeper_cell(r) for _, r in f.datasets[k].depth.iterrows()]
    cols: list[Column] = [
        ("shallower model", lambda r: f"{r['family']} {r['width_mult']:g}x"),
        ("MFLOPs", lambda r: f"{r['cost']:g}"),
        *[(DATASETS[k], _cell(k)) for k in keys],
    ]
    return [
        "",
        f"(i) Deeper ({', '.join(DEEPER)}) vs shallower ({', '.join(SHALLOWER)}) families at equal budget: for each shallower "
        "model, the most accurate deeper model with no more MFLOPs, and its gain in percentage points",
        "",
        table(depth, cols),
        "",
        *(_dataset_line(k, depth_line(f.datasets[k].depth)) for k in keys),
    ]


def _deeper_cell(r: pd.Series) -> str:
    """A depth comparison row's deeper model, its MFLOPs and its gain (``-`` when there is none)."""
    if pd.isna(r["deeper_family"]):
        return "-"
    return f"{r['deeper_family']} {r['deeper_width']:g}x ({r['deeper_cost']:g}): {signed(r['gain'])}"


def _paper_speed(f: PaperFindings) -> list[str]:
    """(vi): MFLOPs against time per clip on each platform, as a table; then (viii) and (iii) in a line each."""
    rows = pd.DataFrame(
        [
            {"platform": PLATFORMS[k], "models": m, "c": c}
            for m, group in (("17 efficient", f.speed), ("all 21, with ResNets", f.speed_with_resnets))
            for k, c in group.items()
        ]
    )
    cols: list[Column] = [
        ("platform", lambda r: str(r["platform"])),
        ("models", lambda r: str(r["models"])),
        ("rho", lambda r: f"{r['c'].rho:.2f}"),
        ("p", lambda r: f"{r['c'].pvalue:.2g}"),
        ("pairs where more FLOPs run faster", lambda r: f"{100 * r['c'].discordant:.0f}%"),
    ]
    return [
        "",
        "(vi) Do FLOPs predict speed? Spearman's rank correlation of MFLOPs with time per clip (1 / clips per second)",
        "",
        table(rows, cols),
        "",
        f"(viii) Speed ranks on Titan Xp vs Jetson TX2: {f.platforms.describe()}.",
        f"(iii) Kinetics-600 vs UCF-101 top-1 ranks: {f.transfer.describe()}.",
    ]


def _dataset_line(key: str, line: str) -> str:
    """``line`` (a verdict sentence) after its dataset's name, its first letter lowered."""
    return f"{DATASETS[key]}: {line[0].lower()}{line[1:]}"


def _cell(col: str) -> Callable[[pd.Series], str]:
    def cell(r: pd.Series) -> str:
        return str(r[col])

    return cell
