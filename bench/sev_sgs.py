"""Evidence for docs/SEV_SGS.md: SEVNet against the five families at equal multiply-adds, and every
family with and without Similarity Guided Sampling, on a proxy task, for a few seeds.

Each family is taken at the width whose multiply-adds per 16x112x112 clip are closest to
``--target-mflops`` (bisection over the family's search range; the stage depths and other knobs are
the presets'), and trained twice per seed: as it is, and with an SGS layer after its first stage.
Every run goes through the search's own trial code (``search.study.Objective`` in a sweep-kind study),
so an SGS network is measured exactly as a search measures it: ``macs`` is the trained network's
mean over the proxy validation clips (counted at 16x112x112), ``macs_untrained`` the untrained one's.

Run: python -m bench.sev_sgs [--task motion|digits] [--out runs/sev-sgs] [--bin-widths 0.5] [--seeds 2] [--families ...] [--tiny]

Writes ``<out>/<task>/trials.csv`` (the search's schema; ``e3d analyze --csv`` reads it), the extra SGS attributes
in ``sgs.csv``, and prints a summary table (mean and spread over seeds), SEVNet's verdicts against each family and
each family's with SGS against without (Welch's t-test over seeds, :mod:`search.stats`). Interrupt and run again to continue: the
study lives in ``<out>/<task>/study.db``. ``--tiny`` is a smoke run (a few videos, seconds a network).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import optuna
import pandas as pd
import torch

from bench import machine_stamp
from bench.proxy_fidelity import TINY
from e3d.cli import Parser, guarded, positive_float, positive_int, thread_count
from profiler.counting import spec_totals
from search import study as st
from search.budget import Budget
from search.results import finished, study_frame, write_outputs
from search.searchspace import SPACE, preset_params, spec_from_params
from search.stats import compare, summarize
from space.files import check_writable, write_text

TINY_CLIP = (16, 48, 48)
"""``--tiny``'s clip: the default proxy clip (TINY's has too few frames and positions for an SGS layer to train)."""

FAMILIES = ("squeezenet", "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "sevnet")


def matched_width(family: str, target_macs: float) -> float:
    """The width (a multiple of 0.005) whose preset-depth network has the multiply-adds closest to
    ``target_macs``: bisection, then the nearest of the widths around it (channels round in steps)."""
    lo, hi = SPACE[family].width

    def macs(w: float) -> int:
        return spec_totals(spec_from_params(preset_params(family, w))).macs

    for _ in range(30):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if macs(mid) < target_macs else (lo, mid)
    around = {round(round(lo / 0.005) * 0.005 + 0.005 * k, 3) for k in range(-12, 13)}
    return min((w for w in around if SPACE[family].width[0] <= w <= SPACE[family].width[1]), key=lambda w: abs(macs(w) - target_macs))


def runs(target_macs: float, bin_widths: list[float], *, families: Sequence[str] = FAMILIES) -> list[dict[str, Any]]:
    """The parameters of every network: each of ``families`` at its matched width, without SGS and with SGS
    after its first stage at each bin width."""
    out = []
    for family in families:
        params = preset_params(family, matched_width(family, target_macs))
        out.append(params)
        out += [{**params, f"{family}.sgs": SPACE[family].sgs_after[0], f"{family}.sgs_bin_width": w} for w in bin_widths]
    return out


def _key(params: dict[str, Any], seed: int | None) -> str:
    return json.dumps({**params, "seed": seed}, sort_keys=True)


def summary(df: pd.DataFrame, extra: dict[int, dict[str, Any]]) -> str:
    """Markdown table: per family and variant (no SGS, SGS at each bin width), mean and spread over
    seeds of top-1 and of the mean multiply-adds over the validation clips, and the bins kept."""
    lines = [
        "| family | width | SGS | top-1 % (mean ± sample sd (n)) | per seed | macs M (mean over val clips) | bins kept (of max) | s/run |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    done = finished(df).copy()
    done["variant"] = done["number"].map(lambda n: extra[n]["bin_width"] if extra[n]["sgs"] else -1.0)
    for family in FAMILIES:
        for variant in sorted(done[done["family"] == family]["variant"].unique()):
            rows = done[(done["family"] == family) & (done["variant"] == variant)].sort_values("seed")
            first = extra[int(rows["number"].iloc[0])]
            acc = [float(a) for a in rows["accuracy"]]
            macs = fmean(float(m) for m in rows["macs"]) / 1e6
            where, bins = "-", ""
            if variant >= 0:
                where = f"after stage {first['after']}, bin width {variant:g}"
                kept = [extra[n]["sgs_mean_bins"][0] for n in rows["number"] if extra[n].get("sgs_mean_bins")]
                bins = f"{fmean(kept):.1f} of {first['max_bins']}" if kept else "?"
            per_seed = ", ".join(f"{a:.1f}" for a in acc)
            seconds = fmean(float(d) for d in rows["duration_s"])
            lines.append(
                f"| {family} | {rows['width_mult'].iloc[0]:g} | {where} | {summarize(acc).format()} | {per_seed} "
                f"| {macs:.1f} | {bins} | {seconds:.0f} |"
            )
    return "\n".join(lines)


def verdicts(df: pd.DataFrame, extra: dict[int, dict[str, Any]]) -> str:
    """SEVNet against each other family, both without SGS, by :func:`search.stats.compare` over seeds."""
    done = finished(df)
    done = done[done["number"].map(lambda n: not extra[n]["sgs"])]
    acc = {str(f): [float(a) for a in g.sort_values("seed")["accuracy"]] for f, g in done.groupby("family")}
    if "sevnet" not in acc:
        return "(no verdicts: SEVNet without SGS has not trained)"
    lines = ["| SEVNet vs | verdict |", "|---|---|"]
    lines += [f"| {f} | {compare(acc['sevnet'], acc[f], chance=10.0).format()} |" for f in FAMILIES if f != "sevnet" and f in acc]
    return "\n".join(lines)


def sgs_verdicts(df: pd.DataFrame, extra: dict[int, dict[str, Any]]) -> str:
    """Each family with SGS at each bin width against the same network without SGS, by
    :func:`search.stats.compare` over seeds."""
    done = finished(df).copy()
    done["variant"] = done["number"].map(lambda n: extra[n]["bin_width"] if extra[n]["sgs"] else -1.0)
    lines = ["| with SGS vs without | bin width | verdict |", "|---|---:|---|"]
    for family in FAMILIES:
        mine = done[done["family"] == family]
        without = [float(a) for a in mine[mine["variant"] < 0].sort_values("seed")["accuracy"]]
        for variant in sorted(v for v in mine["variant"].unique() if v >= 0):
            if without:
                with_sgs = [float(a) for a in mine[mine["variant"] == variant].sort_values("seed")["accuracy"]]
                lines.append(f"| {family} | {variant:g} | {compare(with_sgs, without, chance=10.0).format()} |")
    return "\n".join(lines) if len(lines) > 2 else "(no SGS verdicts: no family trained both with and without SGS)"


def report(df: pd.DataFrame, extra: dict[int, dict[str, Any]]) -> str:
    """The summary table, SEVNet's verdicts and the SGS verdicts: what ``summary.md`` holds."""
    return "\n\n".join((summary(df, extra), verdicts(df, extra), sgs_verdicts(df, extra)))


def read_extra(path: Path) -> dict[int, dict[str, Any]]:
    """The per-trial SGS attributes of a written ``sgs.csv``, as :func:`sgs_attributes` collects them."""
    extra: dict[int, dict[str, Any]] = {}
    for r in pd.read_csv(path).to_dict("records"):
        e: dict[str, Any] = {str(k): (None if isinstance(v, float) and v != v else v) for k, v in r.items() if k != "number"}
        e["sgs"] = bool(r["sgs"])
        for k in ("after", "max_bins"):
            e[k] = None if e[k] is None else int(e[k])
        e["sgs_mean_bins"] = json.loads(e["sgs_mean_bins"]) if isinstance(e["sgs_mean_bins"], str) else None
        extra[int(str(r["number"]))] = e
    return extra


def from_results(folder: Path) -> str:
    """The summary and verdicts of a finished task folder (``trials.csv`` and ``sgs.csv``), rewritten
    to its ``summary.md``: how the published tables are regenerated without training."""
    df = pd.read_csv(folder / "trials.csv")
    extra = read_extra(folder / "sgs.csv")
    text = report(df, extra)
    write_text(folder / "summary.md", text + "\n")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (one-line errors, exit 2, for bad values)."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("motion", "digits"), default="motion")
    p.add_argument("--out", type=Path, default=Path("runs/sev-sgs"))
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="families to run (default: all six)")
    p.add_argument("--target-mflops", type=positive_float, default=150.0, help="multiply-adds per 16x112x112 clip, millions (default 150)")
    p.add_argument("--seeds", type=positive_int, default=2)
    p.add_argument("--bin-widths", type=bin_widths, default=[0.5], help="SGS bin widths, comma-separated (default 0.5, SGSSpec's)")
    p.add_argument("--train-samples", type=positive_int, default=600)
    p.add_argument("--val-samples", type=positive_int, default=200)
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--threads", type=thread_count, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--tiny", action="store_true", help="a smoke run: clip 16x48x48, 16 training and 16 validation videos, 2 epochs")
    p.add_argument("--from-results", type=Path, metavar="DIR", help="only rewrite DIR/summary.md from its trials.csv and sgs.csv")
    args = p.parse_args(argv)
    if args.from_results is not None:
        missing = [name for name in ("trials.csv", "sgs.csv") if not (args.from_results / name).is_file()]
        if missing:
            p.error(f"argument --from-results: {args.from_results} has no {' nor '.join(missing)} (a task folder of a finished run)")
    return args


def bin_widths(text: str) -> list[float]:
    """``0.1,0.5`` as ``[0.1, 0.5]``: each a number in (0, 1]."""
    try:
        widths = [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if not all(0 < w <= 1 for w in widths):
        raise argparse.ArgumentTypeError(f"bin widths must be in (0, 1], got {text!r}")
    return widths


def proxy_of(args: argparse.Namespace) -> st.ProxyConfig:
    """The proxy protocol the command line asks for (``--tiny``: TINY's clip and sizes, the task's own)."""
    if args.tiny:
        return dataclasses.replace(TINY, clip=TINY_CLIP, task=args.task, threads=args.threads)
    sizes = {k: getattr(args, k) for k in ("train_samples", "val_samples", "epochs", "batch_size", "lr", "threads")}
    return st.ProxyConfig(task=args.task, **sizes)


def enqueue(study: optuna.Study, args: argparse.Namespace) -> None:
    """Queue every run the study does not hold yet (more bin widths or seeds extend it)."""
    held = {_key(t.params or t.system_attrs.get("fixed_params", {}), t.user_attrs.get("seed")) for t in study.get_trials(deepcopy=False)}
    for seed in range(args.seeds):
        for params in runs(args.target_mflops * 1e6, args.bin_widths, families=args.families):
            if _key(params, seed) not in held:
                study.enqueue_trial(params, user_attrs={"source": "sweep", "seed": seed})


def sgs_attributes(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Per trial number: whether it has SGS, where and with how many bins, and its multiply-add attributes."""
    keys = ("macs_untrained", "macs_min", "macs_max", "macs_upper_bound", "sgs_mean_bins")
    extra: dict[int, dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False):
        layers = json.loads(t.user_attrs.get("spec", "{}")).get("sgs", [])
        first = layers[0] if layers else {}
        extra[t.number] = {
            "sgs": bool(layers),
            "after": first.get("after_stage"),
            "max_bins": first.get("bins"),
            "bin_width": first.get("bin_width", 0.5) if layers else None,
            **{k: t.user_attrs.get(k) for k in keys},
        }
    return extra


def run_task(args: argparse.Namespace) -> str:
    """Train every queued run of ``args.task`` (a progress line per trial), write the folder's outputs and
    return its summary and verdicts."""
    out = args.out / args.task
    check_writable(out, create=True)
    families = tuple(args.families)
    config = st.SearchConfig(
        budget=Budget(), families=families, proxy=proxy_of(args), pruner="none", baselines=False, kind="sweep", sgs=True
    )
    study, config, _ = st.open_study("sev-sgs", st.open_storage(st.sqlite_url(out / "study.db")), config)
    enqueue(study, args)
    data = st.load_proxy(config.proxy)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()

    def on_trial(t: optuna.trial.FrozenTrial) -> None:
        print(st.trial_line(t), f"[{time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
        write_outputs(study_frame(study), out)

    st.run_worker(study, config, data, n_trials=0, on_trial=on_trial)
    df = study_frame(study)
    write_outputs(df, out)
    extra = sgs_attributes(study)
    write_text(out / "sgs.csv", pd.DataFrame([{"number": n, **e} for n, e in extra.items()]).to_csv(index=False))
    text = report(df, extra)
    write_text(out / "summary.md", text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the evidence study of one task and print its summary."""
    args = parse_args(argv)
    if args.from_results:

        def rewrite() -> int:
            print(from_results(args.from_results))
            return 0

        return guarded(rewrite)
    command = "python -m bench.sev_sgs " + shlex.join(sys.argv[1:] if argv is None else argv)
    kept = f"interrupted; finished runs are kept in {args.out / args.task / 'study.db'}. Continue with:\n  {command}"

    def run() -> int:
        check_writable(args.out / args.task, create=True)  # before anything is printed or trained
        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"# {machine_stamp(threads=torch.get_num_threads())}", file=sys.stderr)
        print(run_task(args))
        return 0

    return guarded(run, interrupted=kept)


if __name__ == "__main__":
    raise SystemExit(main())
