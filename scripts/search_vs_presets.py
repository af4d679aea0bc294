"""Search against hand-scaling: does the best architecture an ``e3d search`` found beat the best paper
preset that fits the same budget, trained the same way, over the same seeds?

    e3d sweep --task motion --seeds 2 --epochs 3 --train-samples 1200 --val-samples 300 --out runs/sweep-motion
    e3d search --task motion --budget-mflops 190 --no-baselines --trials 8 --epochs 3 \\
        --train-samples 1200 --val-samples 300 --out runs/search-190
    python scripts/search_vs_presets.py --search runs/search-190 --sweep runs/sweep-motion --seeds 2

The search trains each candidate once (its ``--seed``, 0 by default), so its best candidate is retrained
here with the other seeds of the sweep (1 .. N-1), under the search study's own proxy settings, in a
study of its own (``<search>/confirm.db``: interrupt and run again to continue). The presets are the
sweep's rows that fit the search's budget; the two studies must have trained with the same proxy
settings. Prints a markdown table and writes it to ``<search>/versus.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from statistics import fmean, pstdev
from typing import Any

import optuna
import pandas as pd
import torch

from search import study as st
from search.results import finished, read_trials_csv, study_frame

CONFIRM = "confirm"


def open_run(folder: Path) -> tuple[optuna.Study, st.SearchConfig]:
    """The one e3d study in a run folder's ``study.db``, with its stored settings."""
    db = folder / "study.db"
    if not db.exists():
        raise SystemExit(f"error: no study.db in {folder}")
    storage = st.open_storage(f"sqlite:///{db.resolve()}")
    names = st.list_studies(storage)
    if len(names) != 1:
        raise SystemExit(f"error: {db} holds {len(names)} studies ({', '.join(names)}); expected one")
    study, config, _ = st.open_study(names[0], storage, None, resume=True)
    return study, config


def spread(values: list[float]) -> str:
    """``mean ± sd (v1, v2, ...)`` in percent."""
    return f"{fmean(values):.1f} ± {pstdev(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"


def best_preset(sweep: pd.DataFrame, budget: Any) -> tuple[str, list[float], float] | None:
    """The preset that fits ``budget`` with the highest mean accuracy over its seeds: its summary, the
    accuracy of every seed (in seed order) and its multiply-adds."""
    done = finished(sweep)
    fits = done["macs"] <= budget.mflops * 1e6 if budget.mflops is not None else done["macs"] > 0
    if budget.params is not None:
        fits &= done["params"] <= budget.params
    groups = [g.sort_values("seed") for _, g in done[fits].groupby("summary")]
    if not groups:
        return None
    g = max(groups, key=lambda g: g["accuracy"].mean())
    return f"{g['family'].iloc[0]} {g['width_mult'].iloc[0]:g}x", g["accuracy"].tolist(), float(g["macs"].iloc[0])


def search_time(study: optuna.Study) -> tuple[float, float]:
    """Wall time from the first trial's start to the last trial's end, and the sum of trial durations (s)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    wall = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)  # type: ignore[type-var]
    busy = sum(((t.datetime_complete - t.datetime_start).total_seconds() for t in trials), 0.0)  # type: ignore[operator]
    return wall.total_seconds(), busy


def main(argv: list[str] | None = None) -> int:
    """Retrain the search's best candidate with more seeds and compare it with the sweep's best preset."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search", type=Path, required=True, help="run folder of e3d search")
    p.add_argument("--sweep", type=Path, required=True, help="run folder of e3d sweep (the presets, same proxy settings)")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 for the searched architecture (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    search, config = open_run(args.search)
    _, sweep_config = open_run(args.sweep)
    mine, theirs = config.shared()["proxy"], sweep_config.shared()["proxy"]
    if mine != theirs:
        diff = {k: (mine.get(k), theirs.get(k)) for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
        raise SystemExit(f"error: the search and the sweep trained differently (search, sweep): {diff}")

    df = finished(study_frame(search))
    searched = df[df["source"].isin(["search", "retry"])]
    if not len(searched):
        raise SystemExit(f"error: no finished searched trial in {args.search}")
    top = searched.sort_values(["accuracy", "macs"], ascending=[False, True]).iloc[0]
    best = search.trials[int(top["number"])]

    confirm_config = dataclasses.replace(config, kind="sweep", baselines=False, pruner="none")
    storage = st.open_storage(f"sqlite:///{(args.search / 'confirm.db').resolve()}")
    confirm, confirm_config, _ = st.open_study(CONFIRM, storage, confirm_config)
    queued = {t.user_attrs.get("seed") for t in confirm.get_trials(deepcopy=False)}
    for seed in range(args.seeds):
        if seed != int(top["seed"]) and seed not in queued:
            confirm.enqueue_trial(best.params, user_attrs={"source": "sweep", "seed": seed})
    if confirm.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        local = dataclasses.replace(confirm_config.proxy, threads=args.threads)
        data = st.load_proxy(local)
        config_here = dataclasses.replace(confirm_config, proxy=local)
        st.run_worker(confirm, config_here, data, n_trials=0, on_trial=lambda t: print(st.trial_line(t), file=sys.stderr))

    again = finished(study_frame(confirm))
    runs = sorted([(int(top["seed"]), float(top["accuracy"])), *zip(again["seed"].astype(int), again["accuracy"], strict=True)])
    preset = best_preset(read_trials_csv(args.sweep), config.budget)
    wall, busy = search_time(search)
    states = study_frame(search)
    rejected = int((states["feasible"] == False).sum())  # noqa: E712
    pruned = int((states["state"] == "PRUNED").sum())
    acc = [a for _, a in runs]
    lines = [
        f"search: {args.search} — budget {config.budget.describe()}; {config.proxy.describe()}",
        f"searched: {len(searched)} trained to the end, {pruned} pruned, {rejected} rejected by the budget; "
        f"{wall / 60:.1f} min wall, {busy / 60:.1f} min in trials",
        "",
        "| | architecture | macs M | top-1 % over seeds (mean ± sd, per seed) |",
        "|---|---|---:|---|",
        f"| searched (trial {int(top['number'])}) | {top['summary']} | {top['macs'] / 1e6:.1f} | {spread(acc)} |",
    ]
    if preset is None:
        lines.append("| best preset | none of the sweep's presets fits the budget | | |")
    else:
        name, pacc, pmacs = preset
        lines.append(f"| best preset | {name} | {pmacs / 1e6:.1f} | {spread(pacc)} |")
        gap = fmean(acc) - fmean(pacc)
        verdict = "beats" if gap > pstdev(acc) + pstdev(pacc) else "is behind" if -gap > pstdev(acc) + pstdev(pacc) else "ties with"
        lines += ["", f"the searched architecture {verdict} the best preset: {gap:+.1f} points in the mean"]
        lines.append("(a tie when the gap is within the sum of the two standard deviations)")
    text = "\n".join(lines)
    (args.search / "versus.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
