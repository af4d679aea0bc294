"""The decisive benchmark: does the search beat hand-scaling on data it never selected on?

Run: python -m bench.search_vs_presets --mode front   [--out runs/search-vs-presets] [--final-seeds 3] [--jobs 2]
     python -m bench.search_vs_presets --mode budgets [--budgets 100,200,500] [--cpu-minutes 45] [--jobs 2]

Both modes first train every Table 8 preset of ``--families`` once (seed 0) with the search's
proxy protocol (study ``presets``): that measures the CPU time of the hand-scaled set, which is
the front search's budget, and the cheapest preset's time is the floor below which a CPU budget
cannot pay for one trial (a one-line error, exit 2).

* ``front``: an ``--objective pareto`` search (accuracy vs multiply-adds, at most 1000 M per
  16x112x112 clip) runs until its trials have used the presets' CPU time (or ``--cpu-minutes``);
  ``--pruner rungs`` stops trials dominated at a rung (:mod:`search.pruning`), none by default.
  Then at most ``--max-members`` (8) members of its validation front, spread over cost, and every
  preset are retrained with ``--final-seeds`` new seeds and scored on the test split
  (:mod:`search.finalize`'s machinery). Reported: each group's hypervolume per seed
  (:mod:`search.front`, reference point chance accuracy and 1000 M) as mean ± sample sd with
  Welch's verdict (:mod:`search.stats`), and for each preset whether a searched network with no more
  multiply-adds is at least as accurate (mean test accuracy). ``--front-of STUDY`` takes the front
  of an existing pareto study in the storage instead of searching.
* ``budgets``: at each of ``--budgets`` (M multiply-adds) a single-objective search (with the
  paper's presets in budget as baselines, which do not count against the budget) runs for
  ``--cpu-minutes`` of trial CPU time, then is finalized as ``e3d search --finalize`` does: the
  top ``--top-k`` searched architectures and the best preset, test split, new seeds, verdicts.

Every step is a trial of a study in ``<out>/bench.db``: Ctrl-C loses only the runs in progress,
and the same command continues (a finished search is not searched again; finished final runs
are kept; a larger ``--final-seeds`` adds only the new seeds' runs). CPU time is the process CPU
time of each trial (:class:`search.fidelity.CpuTimed`), so ``--jobs`` N (N one-thread worker
processes side by side, :mod:`search.jobs`) shortens the wall time, not the budget. With ``--jobs`` N > 1 a
new search is lagged as ``e3d search --jobs N`` makes it (:mod:`search.lagged`): the seed decides its
trials; the CPU budget, where it stops. (Before commit 832879b it searched unlagged.) Writes
``<out>/<mode>.md`` (and CSVs; front mode also ``front.png``) and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState

from analysis.load import trained_on
from analysis.plots import plot_front_vs_presets, save_figure
from bench import machine_stamp
from e3d.cli import Parser, guarded, positive_float, positive_int, thread_count
from e3d.commands.search import jobs_arg
from search import finalize as fin
from search import front
from search.budget import Budget
from search.fidelity import CPU_ATTR, QUEUED_SOURCES, cpu_seconds
from search.jobs import JobSpec, run_jobs
from search.lagged import WAITED_ATTR, lag_for
from search.pruning import saved_cpu_seconds
from search.results import frame, trial_counts, trial_row
from search.searchspace import FAMILIES, check_families, paper_presets, preset_params
from search.stats import TEST, compare, holm, summarize
from search.study import (
    HEARTBEAT_S,
    PRUNERS,
    ProxyConfig,
    SearchConfig,
    load_proxy,
    open_storage,
    open_study,
    run_worker,
    search_pruner,
    sqlite_url,
    trial_line,
)
from space.files import check_writable, write_text
from space.spec import E3DError

TINY = ProxyConfig(clip=(8, 32, 32), train_samples=16, val_samples=16, test_samples=16, epochs=1, batch_size=8, threads=1)
FRONT_MFLOPS = 1000.0


class BenchError(E3DError):
    """A benchmark that cannot run as asked."""


# -- CPU time ---------------------------------------------------------------------------------------


def check_budget(budget_s: float, cheapest_s: float) -> None:
    """Refuse, in one line, a CPU budget that cannot pay for one trial (the cheapest preset's time)."""
    if budget_s <= 0 or budget_s < cheapest_s:
        raise BenchError(
            f"a CPU-time budget of {budget_s / 60:.3g} min cannot pay for one trial: the cheapest preset took "
            f"{cheapest_s / 60:.3g} CPU-min with this protocol"
        )


def run_trials(study: optuna.Study, config: SearchConfig, args: argparse.Namespace, *, budget_s: float | None = None) -> None:
    """Run the study's queue (``budget_s`` None), or search until its searched trials have used
    ``budget_s`` CPU seconds (counting those of earlier runs of this command): in this process, or in
    ``--jobs`` worker processes (:mod:`search.jobs`), which all finish before this returns."""
    n = 0 if budget_s is None else 10**9
    on_trial = None if args.quiet else (lambda t: print(trial_line(t), file=sys.stderr))
    if args.jobs > 1:
        run_jobs(
            study,
            JobSpec(args.url, study.study_name, config, n, None, HEARTBEAT_S, None, cpu_budget_s=budget_s),
            jobs=args.jobs,
            on_trial=on_trial,
        )
        return
    data = load_proxy(config.proxy, progress=not args.quiet, test=config.kind == "final")
    run_worker(study, config, data, n_trials=n, on_trial=on_trial, cpu_budget_s=budget_s)


def search_config(args: argparse.Namespace, proxy: ProxyConfig, *, mflops: float, **kw: Any) -> SearchConfig:
    """A new search of this benchmark, as ``e3d search --jobs`` makes it: lagged with ``--jobs`` > 1
    (:func:`search.lagged.lag_for`), so that its trials are those its seed decides, whatever the timing;
    its CPU budget still decides where it stops."""
    return SearchConfig(
        budget=Budget(mflops=mflops), families=args.families, proxy=proxy, pruner=args.pruner, seed=args.seed,
        lag=lag_for(args.jobs), **kw,
    )  # fmt: skip


# -- the presets, once ------------------------------------------------------------------------------


def presets(families: tuple[str, ...], *, tiny: bool = False) -> list[tuple[str, float]]:
    """The Table 8 presets of ``families``; with ``tiny`` only each family's lowest and highest width."""
    out = paper_presets(families)
    if not tiny:
        return out
    return [(f, w) for f in families for w in dict.fromkeys((min(x for g, x in out if g == f), max(x for g, x in out if g == f)))]


def presets_study(storage: Any, proxy: ProxyConfig, chosen: list[tuple[str, float]], args: argparse.Namespace) -> list[FrozenTrial]:
    """Train the ``chosen`` presets once (seed 0); returns their completed trials."""
    families = tuple(dict.fromkeys(f for f, _ in chosen))
    config = SearchConfig(budget=Budget(), families=families, proxy=proxy, pruner="none", baselines=False, kind="sweep")
    study, _, _ = open_study("presets", storage, config)
    held = {t.user_attrs.get("label") for t in study.get_trials(deepcopy=False)}
    for family, width in chosen:
        label = preset_label(family, width)
        if label not in held:
            study.enqueue_trial(preset_params(family, width), user_attrs={"source": "sweep", "seed": 0, "label": label})
    run_trials(study, config, args)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("trained")]


def preset_label(family: str, width: float) -> str:
    """``preset mobilenetv2 0.45x`` (the label :mod:`search.finalize` gives presets)."""
    return f"preset {family} {width:g}x"


# -- front mode -------------------------------------------------------------------------------------


def front_members(study: optuna.Study, k: int) -> list[fin.Finalist]:
    """At most ``k`` members of the study's validation front (accuracy vs macs), spread over cost."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("trained") and t.user_attrs.get("feasible", True) and t.user_attrs.get("source") not in QUEUED_SOURCES
    ]
    if not done:
        raise BenchError(f"study {study.study_name!r} has no completed searched trials: there is no front to benchmark")
    by_point = {(float(t.user_attrs["accuracy"]), float(t.user_attrs["macs"]) / 1e6): t for t in done}
    chosen = front.pick_members(front.pareto_front(by_point), k)
    return [fin.Finalist(f"search #{by_point[p].number}", "candidate", by_point[p].params, p[0]) for p in chosen]


def final_runs(final: optuna.Study, seeds: tuple[int, ...]) -> pd.DataFrame:
    """One row per finished final run: label, role, seed, test accuracy, macs (M), the CPU it ran on."""
    rows = [
        {
            "label": a["label"],
            "role": a["role"],
            "seed": int(a["seed"]),
            "test_accuracy": float(a["test_accuracy"]),
            "macs_m": a["macs"] / 1e6,
            "cpu": a.get("cpu", ""),
        }
        for t in final.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if (a := t.user_attrs).get("test_accuracy") is not None and a.get("seed") in seeds
    ]
    columns = ["label", "role", "seed", "test_accuracy", "macs_m", "cpu"]
    return pd.DataFrame(rows, columns=columns).drop_duplicates(["label", "seed"], keep="last")


def not_scored(final: optuna.Study) -> dict[str, str]:
    """Finalists none of whose final runs has a test accuracy (refused at the proxy clip, say): label -> why."""
    done = final.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    scored = {t.user_attrs.get("label") for t in done if t.user_attrs.get("test_accuracy") is not None}
    return {a["label"]: str(a.get("rejected_reason") or "no test accuracy") for t in done if (a := t.user_attrs).get("label") not in scored}


def front_report(runs: pd.DataFrame, *, chance: float) -> str:
    """Hypervolumes per seed of both groups with the verdict, and each preset's coverage."""
    hv = {
        role: front.hypervolumes_by_seed(
            [(r.label, r.seed, r.test_accuracy, r.macs_m) for r in runs[runs["role"] == role].itertuples()], ref_accuracy=chance
        )
        for role in ("candidate", "preset")
    }
    lines = [f"Hypervolume (reference: {chance:.1f}% accuracy, {front.REF_MACS:g} M), test split, per seed:", ""]
    for role, name in (("candidate", "searched front"), ("preset", "presets")):
        vals = list(hv[role].values())
        lines.append(f"- {name}: {summarize(vals).format(0) if vals else 'not run yet'} %·M")
    if hv["candidate"] and hv["preset"]:
        verdict = compare(list(hv["candidate"].values()), list(hv["preset"].values()))
        lines.append(f"- verdict, searched vs presets: {verdict.format('%·M', 0)}")
    mean = runs.groupby(["label", "role"]).agg(acc=("test_accuracy", "mean"), macs=("macs_m", "first")).reset_index()
    tuples = {role: [(r.label, r.acc, r.macs) for r in mean[mean["role"] == role].itertuples()] for role in ("candidate", "preset")}
    cov = front.coverage(tuples["preset"], tuples["candidate"])
    lines += [
        "",
        f"Presets matched by a searched network with no more multiply-adds: {sum(c.covered for c in cov)} of {len(cov)}",
        "",
        "| preset | macs M | test % | best searched at no more macs | its macs M | its test % | verdict |",
        "|---|---:|---|---|---:|---|---|",
    ]
    for c in sorted(cov, key=lambda c: c.preset_macs):
        accs = runs[runs["label"] == c.preset]["test_accuracy"].tolist()
        best = runs[runs["label"] == c.best]["test_accuracy"].tolist() if c.best else []
        outcome = compare(best, accs, chance=chance).format() if best and accs else "-"
        lines.append(
            f"| {c.preset} | {c.preset_macs:.1f} | {summarize(accs).format()} | {c.best or '-'} | "
            f"{'-' if c.best_macs is None else f'{c.best_macs:.1f}'} | {summarize(best).format() if best else '-'} | {outcome} |"
        )
    return "\n".join(lines)


def run_front(args: argparse.Namespace, storage: Any, proxy: ProxyConfig, trained: list[FrozenTrial]) -> str:
    """Search (unless ``--front-of``), finalize the front and the presets, report."""
    cheapest = min(float(t.user_attrs[CPU_ATTR]) for t in trained)
    budget_s = args.cpu_minutes * 60 if args.cpu_minutes is not None else cpu_seconds(trained, searched=False)
    if args.front_of:
        study, config, _ = open_study(args.front_of, storage, None, resume=True)
        if config.objective != "pareto":
            raise BenchError(f"study {args.front_of!r} is a single-objective search: a front needs --objective pareto")
    else:
        check_budget(budget_s, cheapest)
        config = search_config(args, proxy, mflops=FRONT_MFLOPS, objective="pareto", baselines=False)
        study, config, _ = open_study("front", storage, config)
        run_trials(study, config, args, budget_s=budget_s)
    members = front_members(study, args.max_members)
    presets_f = [fin.Finalist(preset_label(f, w), "preset", preset_params(f, w), None) for f, w in presets(args.families, tiny=args.tiny)]
    seeds = fin.final_seeds(config, args.final_seeds)
    final = fin.open_final(study, config, [*members, *presets_f], seeds)
    run_trials(final, fin.final_config(config), args)
    runs = final_runs(final, seeds)
    write_text(args.out / "front.csv", runs.to_csv(index=False))
    title = f"searched front vs the Table 8 presets, {args.task} task, test split\n{trained_on(runs)}"
    save_figure(plot_front_vs_presets(runs, chance=args.chance, title=title), args.out, "front", formats=("png",))
    spent = cpu_seconds(study.get_trials(deepcopy=False), searched=True)
    head = (
        f"Front search: {len(members)} front members (of {study.study_name!r}, {spent / 60:.1f} CPU-min of trials; "
        f"budget {budget_s / 60:.1f} CPU-min = the presets' once) and {len(presets_f)} presets, seeds {', '.join(map(str, seeds))}; "
        f"{TEST}"
    )
    skipped = "".join(f"\n\nNot scored: {label}: {why}" for label, why in not_scored(final).items())
    return head + skipped + "\n\n" + front_report(runs, chance=args.chance)


# -- budgets mode -----------------------------------------------------------------------------------


def run_budgets(args: argparse.Namespace, storage: Any, proxy: ProxyConfig, trained: list[FrozenTrial]) -> str:
    """A single-objective search per budget for ``--cpu-minutes``, finalized; one table per budget."""
    cheapest = min(float(t.user_attrs[CPU_ATTR]) for t in trained)
    budget_s = 60.0 * (args.cpu_minutes if args.cpu_minutes is not None else 45.0)
    check_budget(budget_s, cheapest)
    parts, tables = [], {}
    for mflops in args.budgets:
        config = search_config(args, proxy, mflops=mflops)
        study, config, created = open_study(f"budget{mflops:g}", storage, config)
        if created:
            from search.study import enqueue_baselines

            enqueue_baselines(study, config)
        run_trials(study, config, args, budget_s=budget_s)
        chosen = fin.finalists(study, config, top_k=args.top_k)
        seeds = fin.final_seeds(config, args.final_seeds)
        final = fin.open_final(study, config, chosen, seeds)
        run_trials(final, fin.final_config(config), args)
        table = fin.final_table(final, chosen, seeds, chance=args.chance)
        write_text(args.out / f"budget{mflops:g}.csv", table.to_csv(index=False))
        tables[mflops] = table
        top = table[table["role"] == "candidate"].iloc[0]
        parts.append(
            f"## {mflops:g} M multiply-adds: {search_line(study, budget_s, epochs=proxy.epochs, lag=config.lag)}; "
            f"verdict of the top candidate by validation: {top['verdict'] or 'not run yet'}\n\n"
            + fin.format_table(table, seeds=seeds, test_videos=proxy.test_samples)
        )
    return "\n\n".join([*parts, holm_line(tables)])


def holm_line(tables: dict[float, pd.DataFrame]) -> str:
    """The budgets' top candidates' verdicts against their presets corrected for the number of budgets
    (:func:`search.stats.holm`): each one's p, its adjusted p and whether the verdict stands."""
    tops = {m: t[t["role"] == "candidate"].iloc[0] for m, t in tables.items()}
    held = holm([float(r["p"]) if pd.notna(r["p"]) else float("nan") for r in tops.values()])
    parts = [
        f"{m:g} M: p={r['p']:.3g}, adjusted {adj:.3g}, {'stands' if ok else 'a tie'}"
        for (m, r), (adj, ok) in zip(tops.items(), held, strict=True)
    ]
    return f"Holm's correction for the {len(tops)} budgets' top candidates (search.stats.holm, alpha 0.05): " + "; ".join(parts)


def budgets_from_results(out: Path) -> str:
    """:func:`holm_line` of the ``budget<M>.csv`` tables a budgets run left in ``out``."""
    found = sorted(out.glob("budget*.csv"), key=lambda f: float(f.stem.removeprefix("budget")))
    if not found:
        raise BenchError(f"no budget<M>.csv in {out}: not the folder of a budgets run")
    return holm_line({float(f.stem.removeprefix("budget")): pd.read_csv(f) for f in found})


def search_line(study: optuna.Study, budget_s: float, *, epochs: int, lag: int) -> str:
    """What a budgeted search's searched trials (not its baselines) spent, how they ended, what pruning
    saved them, and (``lag`` > 0) how long its trials waited for those they learn from."""
    trials = study.get_trials(deepcopy=False)
    searched = [t for t in trials if t.user_attrs.get("source") not in QUEUED_SOURCES]
    stopped = sum("stopped" in t.user_attrs for t in searched)
    waited = sum(float(t.user_attrs.get(WAITED_ATTR, 0.0)) for t in trials)
    lagging = f"lagged by {lag} (its trials waited {waited:.1f} s in all); " if lag > 0 else "not lagged; "
    return (
        lagging + f"{cpu_seconds(searched) / 60:.1f} CPU-min of searched trials (budget {budget_s / 60:.1f}); "
        f"searched {trial_counts(frame(trial_row(t) for t in searched))} ({stopped} of the pruned stopped when the "
        "budget was spent); pruning saved them "
        f"~{saved_cpu_seconds(searched, epochs) / 60:.1f} CPU-min (each pruned trial's epochs not run, at its own rate)"
    )


# -- entry point ------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("front", "budgets"), required=True)
    p.add_argument("--out", type=Path, default=Path("runs/search-vs-presets"))
    p.add_argument("--task", default="motion")
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: the paper's five)")
    p.add_argument(
        "--cpu-minutes", type=positive_float, default=None, help="CPU budget of each search (front: the presets' time; budgets: 45)"
    )
    p.add_argument("--budgets", default="100,200,500", help="budgets mode: M multiply-adds per 16x112x112 clip")
    p.add_argument("--final-seeds", type=positive_int, default=3)
    p.add_argument("--max-members", type=positive_int, default=8, help="front mode: front members to retrain (default 8)")
    p.add_argument("--front-of", metavar="STUDY", help="front mode: take the front of this pareto study in the storage")
    p.add_argument("--top-k", type=positive_int, default=3, help="budgets mode: searched finalists per budget (default 3)")
    p.add_argument(
        "--pruner", choices=PRUNERS, default=None,
        help="the search's pruner (budgets: default median; front: default none, rungs applies search.pruning's dominance rule; "
        "median and hyperband cannot prune its pareto search)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", help="database URL (default: sqlite <out>/bench.db)")
    p.add_argument("--threads", type=thread_count, default=None, help="torch threads per trial (default: torch's; 1 with --jobs)")
    p.add_argument("--jobs", type=jobs_arg, default=1, help="worker processes training side by side, or auto (search.jobs; default 1)")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny clips and sets, 1 epoch, 2 presets per family")
    p.add_argument("--from-results", action="store_true", help="budgets mode: print the Holm line of the tables in --out, run nothing")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.families = check_families(args.families.split(","))
    if args.from_results and args.mode != "budgets":
        raise BenchError("--from-results reads a budgets run's tables; give --mode budgets")
    objective = "pareto" if args.mode == "front" else "accuracy"
    args.pruner = search_pruner(objective, args.pruner or ("none" if args.mode == "front" else None))
    try:
        args.budgets = [float(b) for b in args.budgets.split(",")]
    except ValueError:
        raise BenchError(f"--budgets takes numbers such as 100,200,500, got {args.budgets!r}") from None
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the benchmark; 2 on bad input, 130 after Ctrl-C."""
    command = "python -m bench.search_vs_presets " + shlex.join(sys.argv[1:] if argv is None else argv)
    return guarded(
        lambda: bench(parse(argv), command),
        interrupted=f"interrupted; finished runs are kept. Continue with:\n  {command}",
    )


def bench(args: argparse.Namespace, command: str) -> int:
    """The presets once, then the chosen mode; writes ``<out>/<mode>.md`` and prints it."""
    if args.from_results:
        print(budgets_from_results(args.out))
        return 0
    check_writable(args.out)
    base = TINY if args.tiny else ProxyConfig()
    proxy = dataclasses.replace(base, task=args.task, threads=args.threads or (1 if args.jobs > 1 else base.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    args.url = args.storage or sqlite_url(args.out / "bench.db")
    storage = open_storage(args.url)
    args.chance = 100.0 / load_proxy(proxy, progress=not args.quiet, test=True).num_classes  # and every split cached for the jobs
    trained = presets_study(storage, proxy, presets(args.families, tiny=args.tiny), args)
    if not trained:
        raise BenchError("no preset finished training: nothing to measure the CPU budget with")
    body = (run_front if args.mode == "front" else run_budgets)(args, storage, proxy, trained)
    threads = f"{proxy.threads or torch.get_num_threads()} torch threads per trial" + (f", {args.jobs} jobs" if args.jobs > 1 else "")
    head = f"# Search vs presets, {args.mode} ({machine_stamp(threads=threads)})"
    text = f"{head}\n\n`{command}`\n\nproxy: {proxy.describe()}; task {proxy.task}\n\n{body}\n"
    write_text(args.out / f"{args.mode}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
