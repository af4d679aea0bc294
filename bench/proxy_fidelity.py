"""How well does the search's proxy rank architectures? Train a fixed set under cheap and reference protocols.

Run: python -m bench.proxy_fidelity [--out runs/proxy-fidelity] [--seeds 2] [--reference-seeds 1]
                                    [--candidate NAME:epochs=5,train_samples=1200 ...] [--precision auto] [--tiny]

Trains the fixed stratified set of :func:`search.fidelity.architecture_set` (16 architectures: every
family at its lowest and highest Table 8 width, and 7 specs sampled from the search space with seed
0) under the search's default proxy protocol (``search.study.ProxyConfig()``, ``--seeds`` seeds),
under a reference protocol with 4x its training compute (twice the epochs and twice the videos; a
larger validation set; last, and skipped with ``--reference-seeds 0``), and under any ``--candidate``
protocols (e.g. ``auto:precision=auto``: another precision of the same protocol, whose ranking and
accuracies are also compared with the default's, architecture by architecture). Every run is a trial of a sweep
study (one per protocol, ``fidelity.<name>`` in ``<out>/fidelity.db``) run by the search's own
worker, so the per-epoch validation accuracies are the trial's intermediate values and Ctrl-C loses
only the run in progress: the same command continues.

Prints (and writes to ``<out>/fidelity.md``, with ``runs.csv`` and ``epochs.csv``) the fidelity of each
protocol against the reference (Spearman and Kendall of the mean rankings, the seed-to-seed noise
ceiling, CPU-minutes per pass, Spearman per CPU-minute; :mod:`search.fidelity`), how the default
protocol's epoch-e ranks agree with its final ranks and the rung schedule that follows, and every
architecture's accuracy. ``--tiny`` is a smoke run (3 small architectures, 8x32x32 clips, seconds).
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

from bench import machine_stamp
from e3d.cli import Parser, guarded, thread_count
from profiler.precision import PRECISIONS
from search import fidelity as fid
from search.budget import Budget
from search.pruning import Rungs, replay
from search.searchspace import FAMILIES, spec_from_params
from search.stats import compare, compare_paired, summarize
from search.study import (
    ProxyConfig,
    SearchConfig,
    load_proxy,
    open_storage,
    open_study,
    run_worker,
    sqlite_url,
    trial_line,
)
from space.files import check_writable, write_text
from space.spec import E3DError

DEFAULT = ProxyConfig()
REFERENCE = dataclasses.replace(DEFAULT, epochs=2 * DEFAULT.epochs, train_samples=2 * DEFAULT.train_samples, val_samples=400)
TINY = ProxyConfig(clip=(8, 32, 32), train_samples=16, val_samples=16, epochs=2, batch_size=8, threads=1)
TINY_REFERENCE = dataclasses.replace(TINY, epochs=3, train_samples=32, val_samples=16)
TINY_ARCHITECTURES = 3
"""``--tiny`` trains the cheapest architectures of the set that run at its clip, only."""
SETTINGS = {
    "epochs": int, "train_samples": int, "val_samples": int, "batch_size": int, "lr": float,
    "precision": str, "schedule": str, "warmup": float,
}  # fmt: skip


class ProtocolError(E3DError):
    """A ``--candidate`` protocol that cannot be parsed."""


def parse_candidate(text: str, base: ProxyConfig) -> tuple[str, ProxyConfig]:
    """``name:epochs=5,train_samples=1200,clip=16x64x64`` -> (name, ``base`` with those settings)."""
    name, _, spec = text.partition(":")
    if not name or not spec or name in ("default", "reference"):
        raise ProtocolError(f"--candidate takes NAME:key=value,... with a new name, got {text!r}")
    changes: dict[str, Any] = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        try:
            if key == "clip":
                t, h, w = (int(v) for v in value.lower().split("x"))
                changes[key] = (t, h, w)
            elif key == "precision" and value not in PRECISIONS:
                raise ValueError(value)
            elif key in SETTINGS:
                changes[key] = SETTINGS[key](value)
            else:
                raise ProtocolError(f"--candidate {name}: unknown setting {key!r} (use {', '.join([*SETTINGS, 'clip'])})")
        except ValueError:
            raise ProtocolError(f"--candidate {name}: bad value {value!r} for {key}") from None
    return name, dataclasses.replace(base, **changes)


def training_compute(p: ProxyConfig) -> float:
    """Relative training compute of a protocol: epochs x videos x clip voxels."""
    t, h, w = p.clip
    return float(p.epochs * p.train_samples * t * h * w)


def protocol_config(proxy: ProxyConfig) -> SearchConfig:
    """The sweep study's settings: enqueued runs only, no pruning, no budget."""
    return SearchConfig(budget=Budget(), families=FAMILIES, proxy=proxy, pruner="none", baselines=False, kind="sweep")


def enqueue_missing(study: optuna.Study, archs: list[tuple[str, dict[str, Any]]], seeds: tuple[int, ...]) -> int:
    """Enqueue every (architecture, seed) run the study holds no trial of, with the architecture's
    current spec (an interrupted one is re-enqueued by the worker); returns how many."""
    held = {(t.user_attrs.get("label"), t.user_attrs.get("seed")) for t in fid.current_trials(study.get_trials(deepcopy=False), archs)}
    n = 0
    for seed in seeds:
        for label, params in archs:
            if (label, seed) not in held:
                study.enqueue_trial(params, user_attrs={"source": "sweep", "seed": seed, "label": label})
                n += 1
    return n


def run_protocol(
    storage: Any, name: str, proxy: ProxyConfig, archs: list[tuple[str, dict[str, Any]]], seeds: tuple[int, ...], *, quiet: bool
) -> int:
    """Train what protocol ``name`` lacks; return the task's number of classes."""
    from tqdm import tqdm

    config = protocol_config(proxy)
    study, _, _ = open_study(f"fidelity.{name}", storage, config)
    todo = enqueue_missing(study, archs, seeds)
    total = len(archs) * len(seeds)
    print(f"{name}: {proxy.describe()}; {total - todo} of {total} runs held", file=sys.stderr)
    data = load_proxy(proxy, progress=not quiet)
    bar = tqdm(total=total, initial=total - todo, desc=name, unit="run", file=sys.stderr, disable=quiet or None)

    def on_trial(t: optuna.trial.FrozenTrial) -> None:
        bar.write(trial_line(t), file=sys.stderr)
        bar.update(1)

    try:
        run_worker(study, config, data, n_trials=0, on_trial=on_trial)  # every trial stores its CPU time
    finally:
        bar.close()
    return data.num_classes


def protocol_tables(storage: Any, protocols: list[str], archs: list[tuple[str, dict[str, Any]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and epochs tables of every protocol, read after all of them trained (another process of
    the same command may have finished a run of an earlier protocol since this one moved on)."""
    runs, epochs = [], []
    for name in protocols:
        study = optuna.load_study(study_name=f"fidelity.{name}", storage=storage)
        r, e = fid.trial_tables(fid.current_trials(study.get_trials(deepcopy=False), archs), name)
        runs.append(r)
        epochs.append(e)
    return pd.concat(runs, ignore_index=True), pd.concat(epochs, ignore_index=True)


def architecture_table(runs: pd.DataFrame, protocols: list[str]) -> str:
    """Markdown: each architecture's cost and accuracy (mean ± sample sd over seeds) per protocol."""
    head = "| architecture | macs M | " + " | ".join(f"{p} %" for p in protocols) + " |"
    lines = [head, "|---|---:|" + "---|" * len(protocols)]
    macs = runs.groupby("architecture")["macs"].first()
    for arch in macs.sort_values().index:
        cells = []
        for p in protocols:
            accs = runs[(runs["architecture"] == arch) & (runs["protocol"] == p)]["accuracy"]
            cells.append(summarize(accs).format() if len(accs) else "-")
        lines.append(f"| {arch} | {macs[arch] / 1e6:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def against_default(runs: pd.DataFrame, *, chance: float) -> list[str]:
    """Markdown: each candidate protocol's ranking against the default's, and how many architectures'
    accuracies differ from the default's (Welch's test per architecture, :func:`search.stats.compare`), and
    whether they differ on average (paired over the architectures, :func:`search.stats.compare_paired`)."""
    lines = [fid.format_fidelity(fid.fidelity_table(runs, "default"), "default"), ""]
    default = runs[runs["protocol"] == "default"]
    for name in dict.fromkeys(runs.loc[runs["protocol"] != "default", "protocol"]):
        rows = runs[runs["protocol"] == name]
        verdicts = {
            arch: compare(group["accuracy"], default.loc[default["architecture"] == arch, "accuracy"], chance=chance)
            for arch, group in rows.groupby("architecture")
        }
        differ = [f"{a} ({v.outcome} {v.diff:+.1f} pp, p={v.p:.2g})" for a, v in verdicts.items() if v.outcome != "tie"]
        mean_diff = summarize(v.diff for v in verdicts.values())
        means = rows.groupby("architecture")["accuracy"].mean()
        paired = compare_paired(means, default.groupby("architecture")["accuracy"].mean()[means.index])
        ran_as = ", ".join(f"{label} x{n}" for label, n in rows["precision"].value_counts().items())
        lines.append(
            f"{name} (ran as {ran_as or 'unknown'}) vs default: {len(verdicts) - len(differ)} of {len(verdicts)} architectures tie; "
            f"accuracy difference {mean_diff.format()} pp (mean ± sample sd over architectures); "
            f"over the architectures, {paired.format()}" + (f"; differ: {'; '.join(differ)}" if differ else "")
        )
    return lines


def replay_table(runs: pd.DataFrame, epochs: pd.DataFrame, final_epoch: int, *, protocol: str = "default") -> list[str]:
    """Markdown: what ``--pruner rungs`` (the defaults of :class:`Rungs`) with one rung at each epoch
    before ``final_epoch`` would have saved on ``protocol``'s runs, and whether the winners survive it
    (:func:`search.pruning.replay`, each seed in 50 random arrival orders)."""
    rows = runs[runs["protocol"] == protocol].set_index(["seed", "architecture"])
    curves = epochs[epochs["protocol"] == protocol].pivot_table(index=["seed", "architecture"], columns="epoch", values="accuracy")
    wanted = list(range(1, final_epoch + 1))
    if any(e not in curves.columns for e in wanted):
        return [f"No pruning replay: no {protocol} run reached every epoch up to {final_epoch}.", ""]
    curves = curves[wanted].dropna().join(rows[["macs", "cpu_seconds"]], how="inner")
    if curves.empty:
        return [f"No pruning replay: no {protocol} run has all {final_epoch} epochs (stopped early?).", ""]
    by_seed = [g for _, g in curves.groupby(level="seed")]
    points = [[[(float(r[e]), float(r["macs"]) / 1e6) for e in range(1, final_epoch + 1)] for _, r in g.iterrows()] for g in by_seed]
    costs = [g["cpu_seconds"].astype(float).tolist() for g in by_seed]
    d = Rungs(())
    lines = [
        f"Replaying `--pruner rungs` (keep {d.keep:g}, dominated fraction {d.dominated_fraction:g}, warm-up {d.min_trials} trials) "
        f"on the {protocol} runs, each seed in 50 random arrival orders:",
        "",
        "| rung | accuracy: CPU saved | best final run kept | pareto: CPU saved | final front kept |",
        "|---:|---:|---:|---:|---:|",
    ]
    for e in range(1, final_epoch):
        single, front = (replay(points, costs, Rungs((e,)), pareto=p) for p in (False, True))
        lines.append(f"| {e} | {single.cpu_saved:.0%} | {single.winners_kept:.0%} | {front.cpu_saved:.0%} | {front.winners_kept:.0%} |")
    return [*lines, ""]


def report(
    runs: pd.DataFrame, epochs: pd.DataFrame, protocols: dict[str, ProxyConfig], archs: list[str], *, chance: float, command: str
) -> str:
    """The markdown report (see the module docstring)."""
    base = training_compute(protocols["default"])
    threads = protocols["default"].threads or torch.get_num_threads()
    lines = [
        f"# Proxy fidelity ({machine_stamp(threads=f'{threads} torch thread(s) per trial')})",
        "",
        f"`{command}`",
        "",
        "| protocol | settings | training compute vs default |",
        "|---|---|---:|",
    ]
    lines += [f"| {n} | {p.describe()} | {training_compute(p) / base:.1f}x |" for n, p in protocols.items()]
    low = fid.at_chance(runs, "default", chance)
    if "reference" in protocols:
        lines += ["", fid.format_fidelity(fid.fidelity_table(runs, "reference"), "reference"), ""]
        verdicts = fid.agreement_verdicts(runs, "reference", "default")
        lines += [f"{n} vs default, Spearman with the reference: {v.format(unit='in Spearman', digits=2)}" for n, v in verdicts.items()]
        lines += [""] if verdicts else []
        if low:
            rest = runs[~runs["architecture"].isin(low)]
            note = f"Without the {len(low)} architectures at chance under the default protocol (tied last, they agree in any ranking "
            note += "that leaves them there):"
            lines += [note, "", fid.format_fidelity(fid.fidelity_table(rest, "reference"), "reference"), ""]
    if set(protocols) - {"default", "reference"}:
        lines += ["", *against_default(runs[runs["protocol"] != "reference"], chance=chance), ""]
    default_epochs = epochs[epochs["protocol"] == "default"]
    e = protocols["default"].epochs
    if e > 1 and len(default_epochs):
        rho = fid.epoch_agreement(default_epochs, e)
        rungs = fid.rung_schedule(default_epochs, e, fid.SETTLED)
        lines += [
            "Where the default protocol's ranks settle (mean over seeds):",
            "",
            fid.format_epochs(rho, e),
            "",
            f"Rung schedule at Spearman >= {fid.SETTLED}: {', '.join(map(str, rungs)) or 'none (ranks settle only at the end)'}",
            "",
        ]
        lines += replay_table(runs, default_epochs, e)
    missing = sorted(set(archs) - set(runs.loc[runs["protocol"] == "default", "architecture"]))
    if missing:
        lines += [f"Not trained under the default protocol (cannot run at its clip, or failed): {', '.join(missing)}", ""]
    for name in dict.fromkeys(runs["protocol"]):
        at = fid.at_chance(runs, name, chance)
        lines.append(f"At chance ({chance:.1f}%, within 2 points) under {name}: {', '.join(at) or 'none'} ({len(at)})")
    lines.append("")
    lines.append(architecture_table(runs, list(protocols)))
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/proxy-fidelity"))
    p.add_argument("--seeds", type=int, default=2, help="seeds of the default (and candidate) protocols (default 2)")
    p.add_argument("--reference-seeds", type=int, default=1, help="seeds of the reference protocol (default 1; 0 skips it)")
    p.add_argument("--candidate", action="append", default=[], metavar="NAME:K=V,...", help="another protocol to measure")
    p.add_argument("--arch-seed", type=int, default=0, help="seed of the sampled architectures (default 0)")
    p.add_argument("--threads", type=thread_count, default=None, help="torch threads per run (default: torch's)")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="precision of every protocol, the reference's too, unless a --candidate sets its own (default fp32)",
    )  # fmt: skip
    p.add_argument("--tiny", action="store_true", help=f"smoke run: {TINY_ARCHITECTURES} small architectures, tiny clips and sets")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run (or continue) the measurement and print the report; 2 on bad input, 130 after Ctrl-C."""
    args = parse(argv)
    command = "python -m bench.proxy_fidelity " + shlex.join(sys.argv[1:] if argv is None else argv)
    kept = f"interrupted; finished runs are kept in {args.out / 'fidelity.db'}. Continue with:\n  {command}"
    return guarded(lambda: measure(args, command), interrupted=kept)


def protocols_of(args: argparse.Namespace) -> dict[str, ProxyConfig]:
    """The protocols to measure, by name: the default, the candidates, then the reference (when it has seeds),
    each at ``--precision`` (unless a candidate sets its own) and ``--threads``."""
    base, ref = (TINY, TINY_REFERENCE) if args.tiny else (DEFAULT, REFERENCE)
    base, ref = (dataclasses.replace(p, precision=args.precision) for p in (base, ref))
    protocols = {"default": base, **dict(parse_candidate(c, base) for c in args.candidate)}
    if args.reference_seeds:
        protocols["reference"] = ref
    threads: int | None = args.threads or base.threads
    return {n: dataclasses.replace(p, threads=threads) for n, p in protocols.items()}


def measure(args: argparse.Namespace, command: str) -> int:
    """Train every protocol's missing runs, then write and print the report."""
    if args.seeds < 2 or args.reference_seeds < 0:
        raise ProtocolError("--seeds must be at least 2 (the noise ceiling needs two) and --reference-seeds at least 0")
    check_writable(args.out)
    protocols = protocols_of(args)
    archs = fid.architecture_set(seed=args.arch_seed)
    if args.tiny:
        archs = sorted((a for a in archs if runs_at(a[1], protocols["default"].clip)), key=lambda a: macs_of(a[1]))[:TINY_ARCHITECTURES]
    args.out.mkdir(parents=True, exist_ok=True)
    storage = open_storage(sqlite_url(args.out / "fidelity.db"))
    classes = 0
    for name, proxy in protocols.items():
        seeds = tuple(range(args.reference_seeds if name == "reference" else args.seeds))
        classes = run_protocol(storage, name, proxy, archs, seeds, quiet=args.quiet)
    all_runs, all_epochs = protocol_tables(storage, list(protocols), archs)
    chance = 100.0 / classes
    text = report(all_runs, all_epochs, protocols, [a for a, _ in archs], chance=chance, command=command)
    write_text(args.out / "runs.csv", all_runs.to_csv(index=False))
    write_text(args.out / "epochs.csv", all_epochs.to_csv(index=False))
    write_text(args.out / "fidelity.md", text + "\n")
    print(text)
    return 0


def runs_at(params: dict[str, Any], clip: tuple[int, int, int]) -> bool:
    """Whether the architecture of these search params is valid at ``clip``."""
    from search.budget import validate_for_clip
    from space.spec import SpecError

    try:
        validate_for_clip(spec_from_params(params), clip)
    except SpecError:
        return False
    return True


def macs_of(params: dict[str, Any]) -> int:
    """Multiply-adds per 16x112x112 clip of the architecture of these search params."""
    from profiler.counting import spec_totals

    return int(spec_totals(spec_from_params(params)).macs)


if __name__ == "__main__":
    raise SystemExit(main())
