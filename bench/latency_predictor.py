"""How well a latency table predicts whole networks it was not fitted on, eager and optimized.

Run (after ``e3d latency-table --out TABLE ...``):
    python -m bench.latency_predictor --table TABLE [--specs 100] [--seed 2] [--recalibrate] [--also TABLE2]
        [--out docs/results/latency]

Networks: ``--specs`` random candidates of the table's families (seed ``--seed``; the table's own
random candidates use seed 0 and its calibration networks seeds 1000-1004 by default, and calibration
networks are left out here, so none of these was used in fitting) plus the 21 Table 8 presets, all at
the table's clip with 600 classes. Each is predicted from the table and measured whole on this machine
with the table's settings (batch, threads, warm-up, repeats), on every path the table has, all of them in
one random order (seed ``--seed``: the machine's drift is not confounded with a group or family), in a child process as
``e3d latency-table`` measures (``profiler.measuring``; the peak memory of both is reported). Reports
Spearman, MAPE and the share within +-10% (all, random, Table 8), multiply-adds alone's Spearman, and
the predictor's specs per second. On the same measurements, other predictors side by side, each with the verdict
of Welch's test (``search.stats``) on its per-network absolute errors against the table's own: one overhead for
all families (row ``all, one overhead``); the class regressions as they were until 2026-12-05, without their size
term (``all, three-term regressions``); with ``--recalibrate``, a copy of the table whose calibration networks were
timed again just before the networks were measured (``all, recalibrated``:
:func:`profiler.latency_table.recalibrate`; the table file is left as it is); every table given with ``--also``
(another build, an older one: ``all, table PATH``). Then (unless ``--no-remeasure``) every network is measured
once more, after all of them were, and that second measurement is scored as if it predicted the first (row
``all, measured again``): the floor that measurement noise puts under any predictor's error. Writes
``latency_predictor.json``, ``latency_predictor.md`` and the scatter ``latency_predictor.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from analysis.latency import plot_predicted_vs_measured
from analysis.plots import save_figure
from bench import load_average
from e3d.cli import Parser, positive_int
from profiler.cpu import detect_cpu
from profiler.latency_table import (
    Comparison,
    LatencyTable,
    LatencyTableError,
    UnpricedLayerError,
    accuracy,
    compare,
    measure_spec,
    noise_floor,
    percent_errors,
    predictions_per_second,
    recalibrate,
)
from profiler.measuring import NETWORKS_EVERY, MeasuringProcess
from profiler.memory import lifetime_peaks_gib
from search import stats
from search.latency import at_clip, random_params, table8_specs
from search.searchspace import FAMILIES
from space.files import write_text
from space.spec import E3DError, NetSpec


def bench_specs(table: LatencyTable, families: tuple[str, ...], n: int, seed: int) -> list[tuple[str, str, NetSpec]]:
    """(name, group, spec): ``n`` random candidates that run at the table's clip, then Table 8's presets."""
    fitted = {s.to_json() for s, _ in table.networks}
    out: list[tuple[str, str, NetSpec]] = []
    for params in random_params(families, 4 * n, seed=seed):
        spec = at_clip(params, table.settings.clip)
        if spec is not None and spec.to_json() not in fitted:
            out.append((spec.summary(), "random", spec))
        if len(out) == n:
            break
    out += [(f"{s.family} {s.width_mult:g}x", "table8", s) for s in table8_specs(table.settings.clip)]
    return out


def repriced(rows: list[Comparison], specs: dict[str, NetSpec], predict: Callable[[NetSpec, str], float]) -> list[Comparison]:
    """``rows`` with every priced network predicted again by ``predict(spec, mode)``: another predictor on the
    same measurements, side by side (one it cannot price: unpriced)."""

    def again(r: Comparison) -> Comparison:
        try:
            return dataclasses.replace(r, predicted_ms=predict(specs[r.name], r.mode))
        except UnpricedLayerError:
            return dataclasses.replace(r, predicted_ms=None)

    return [again(r) if r.predicted_ms is not None else r for r in rows]


def one_overhead(rows: list[Comparison], table: LatencyTable, specs: dict[str, NetSpec]) -> list[Comparison]:
    """``rows`` re-predicted with one overhead fitted on all calibration networks instead of each family's."""
    return repriced(rows, specs, lambda spec, mode: table.predict(spec, mode, per_family=False))


def without_size_term(rows: list[Comparison], table: LatencyTable, specs: dict[str, NetSpec]) -> list[Comparison]:
    """``rows`` re-predicted with the three-term class regressions (``LatencyTable.size_term`` off), the
    overheads fitted again with them."""
    return repriced(rows, specs, dataclasses.replace(table, size_term=False).predict)


def report(
    rows: list[Comparison], table: LatencyTable, specs: dict[str, NetSpec], *, tables: Mapping[str, LatencyTable] | None = None
) -> dict[str, Any]:
    """Accuracy per path and group, as a dict; ``all, one overhead``: every network, priced with one
    overhead for all families (:func:`one_overhead`); ``all, three-term regressions``: every network,
    priced without the regressions' size term (:func:`without_size_term`); a row per entry of ``tables``:
    every network priced by that table (a recalibrated copy, another build); each of these with its verdict
    against ``all`` (:func:`against`); ``all, measured again``: the second measurement scored as if it were the
    prediction of the first (:func:`noise_floor`), when there is one."""
    out: dict[str, Any] = {}
    for mode in table.settings.modes:
        of_mode = [r for r in rows if r.mode == mode]
        others = {
            "all, one overhead": one_overhead(of_mode, table, specs),
            "all, three-term regressions": without_size_term(of_mode, table, specs),
            **{name: repriced(of_mode, specs, t.predict) for name, t in (tables or {}).items()},
        }
        out[mode] = {
            "all": accuracy(of_mode).as_dict(),
            "random": accuracy([r for r in of_mode if r.group == "random"]).as_dict(),
            "table8": accuracy([r for r in of_mode if r.group == "table8"]).as_dict(),
            **{name: {**accuracy(alt).as_dict(), "vs_all": against(alt, of_mode)} for name, alt in others.items()},
        }
        if any(r.remeasured_ms is not None for r in of_mode):
            out[mode]["all, measured again"] = noise_floor(of_mode).as_dict()
    return out


ERRORS = {"win": "smaller", "tie": "tie", "loss": "larger"}
"""A verdict of :func:`against`, as the markdown says it of the other row's errors."""


def against(other: list[Comparison], rows: list[Comparison]) -> dict[str, Any]:
    """Whether ``other`` prices the same networks better than ``rows``: the project's test
    (:func:`search.stats.compare`, Welch's, two-sided, sample sd) on the two lists of per-network absolute
    percentage errors. ``win``: ``other``'s errors are smaller; ``mape_lower_by``: how much smaller on average."""
    v = stats.compare([-e for e in percent_errors(other)], [-e for e in percent_errors(rows)])
    return {"outcome": v.outcome, "mape_lower_by": v.diff, "p": v.p, "test": v.reason}


def markdown(result: dict[str, Any]) -> str:
    """The accuracy table as markdown."""
    lines = [
        "| path | group | priced | Spearman | MAPE | within +-10% | macs-alone Spearman | errors vs `all` (Welch) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for mode, groups in result["accuracy"].items():
        for group, a in groups.items():
            v = a.get("vs_all")
            verdict = f"{ERRORS[v['outcome']]} (p {v['p']:.2f})" if v else ""
            lines.append(
                f"| {mode} | {group} | {a['networks']} (+{a['unpriced']} unpriced) | {a['spearman']:.3f} | {a['mape']:.1f}% "
                f"| {a['within_10']:.0f}% | {a['macs_spearman']:.3f} | {verdict} |"
            )
    lines.append(f"\npredictor: {result['specs_per_second']:,.0f} specs/s (one core, spec already traced)")
    for mode, repeat in result["table"].get("repeat", {}).items():
        lines.append(f"\nthe table's build, timing again ({mode}): {repeat}")
    peak = result["peak_memory_gib"]
    lines.append(
        f"\npeak resident memory: {peak['bench']:.1f} GiB in the bench, {peak['measuring']:.1f} GiB in its largest measuring process"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Predict and measure, then write the results; 2 on bad input (a missing or corrupt table, one line)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--specs", type=positive_int, default=100, help="random candidates (default 100)")
    p.add_argument("--seed", type=int, default=2, help="seed of the random candidates (default 2)")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--out", type=Path, default=Path("docs/results/latency"))
    p.add_argument(
        "--remeasure", action=argparse.BooleanOptionalAction, default=True,
        help="measure every network a second time after the first pass, and score that against the first: the noise floor (default on)",
    )  # fmt: skip
    p.add_argument(
        "--recalibrate", action="store_true",
        help="also score a copy of the table whose calibration networks are timed again first (row 'all, recalibrated')",
    )  # fmt: skip
    p.add_argument(
        "--also", type=Path, action="append", default=[], metavar="TABLE",
        help="also score another table of the same settings on the same measurements (row 'all, table TABLE'); repeatable",
    )  # fmt: skip
    args = p.parse_args(argv)
    try:
        table = LatencyTable.load(args.table)
        result, rows = run(table, args)
    except E3DError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write(args.out, result, rows, table)
    return 0


def run(table: LatencyTable, args: argparse.Namespace) -> tuple[dict[str, Any], list[Comparison]]:
    """Predict and measure ``args.specs`` random candidates and Table 8 with ``table``: the result to
    write and its rows."""
    also = {f"all, table {path}": same_settings(LatencyTable.load(path), table, path) for path in args.also}
    specs = bench_specs(table, tuple(args.families.split(",")), args.specs, args.seed)
    rate = predictions_per_second(table, [s for _, _, s in specs], table.settings.modes[-1])
    started = time.time()
    tables, recalibrated = dict(also), None
    with MeasuringProcess(every=NETWORKS_EVERY) as proc:  # as the table's build measured its networks (profiler.measuring)
        measure = functools.partial(proc, measure_spec)
        if args.recalibrate:
            copy = tables["all, recalibrated"] = LatencyTable.from_dict(table.to_dict())
            recalibrated = recalibration(copy, recalibrate(copy, measure_network=measure))
            moved = ", ".join(f"{m} {r:.3f}x" for m, r in recalibrated["drift"].items())
            print(f"calibration networks timed again: {moved} their time in the table", file=sys.stderr)
        rows = compare(table, specs, measure=measure, remeasure=args.remeasure, seed=args.seed)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "cpu": detect_cpu().describe(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores, load average {load_average()} at the end",
        "torch": torch.__version__,
        "table": {
            "path": str(args.table),
            **table.identity(),
            "allocator": table.allocator,
            "repeat": {m: r.describe() for m, r in table.repeat.items()},
        },
        "also": {name: t.identity() for name, t in also.items()},
        "bench_seconds": round(time.time() - started, 1),
        "specs_per_second": rate,
        "peak_memory_gib": dict(zip(("bench", "measuring"), lifetime_peaks_gib(), strict=True)),
        "recalibrated": recalibrated,
        "accuracy": report(rows, table, {n: s for n, _, s in specs}, tables=tables),
        "rows": [r.__dict__ for r in rows],
    }
    return result, rows


def same_settings(other: LatencyTable, table: LatencyTable, path: Path) -> LatencyTable:
    """``other``, when it was measured with ``table``'s clip, batch, precision and paths; else a one-line error."""
    s = table.settings
    try:
        for mode in s.modes:
            other.check(clip=s.clip, batch_size=s.batch_size, precision=s.precision, mode=mode)
    except LatencyTableError as e:
        raise LatencyTableError(f"--also {path}: {e}") from None
    return other


def recalibration(table: LatencyTable, drift: dict[str, float]) -> dict[str, Any]:
    """When the copy was recalibrated, how far its networks moved, and their new times (to price it again)."""
    return {"at": table.recalibrated, "drift": drift, "networks": [{"summary": s.summary(), "ms": ms} for s, ms in table.networks]}


def write(out: Path, result: dict[str, Any], rows: list[Comparison], table: LatencyTable) -> None:
    """``latency_predictor.json``, ``.md`` and the scatter ``.png`` in ``out``; prints the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "latency_predictor.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "latency_predictor.md", markdown(result))
    fig = plot_predicted_vs_measured(rows, title=f"{table.settings.describe()}; {result['date']}")
    save_figure(fig, out, "latency_predictor", formats=("png",))
    print(markdown(result))


if __name__ == "__main__":
    raise SystemExit(main())
