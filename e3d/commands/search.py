"""``e3d search``: budgeted architecture search with Optuna on a proxy task.

Also the pieces ``e3d sweep`` shares: the proxy-task and storage options, and running a study's
worker with a progress bar, one line per trial, outputs after every trial and a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from e3d.cli import (
    MAX_HEARTBEAT_S,
    MAX_THREADS,
    clip_arg,
    device_arg,
    echo,
    given_options,
    heartbeat_seconds,
    learning_rate,
    non_negative_int,
    positive_float,
    positive_int,
    thread_count,
    worker_count,
)
from e3d.commands.finalizing import add_finalize_args, finalize, finalize_existing, finalize_options

EPILOG = """\
examples:
  e3d search --budget-mflops 100 --trials 4                 a few minutes on a laptop
  e3d search --budget-mflops 200 --trials 40 --epochs 5     a real search
  e3d search --budget-mflops 200 --objective pareto --trials 40
  e3d search --resume --out runs/e3d-search                 continue an interrupted search
  e3d search --finalize --out runs/e3d-search               score the finalists on the test split (again)

many workers on many machines (each runs the same command):
  e3d search --budget-mflops 200 --trials 100 --storage postgresql://user:pw@host/db --study-name s200

The budget is in multiply-adds (macs) per clip of --budget-clip (default 16x112x112, the paper's input).
Over-budget candidates are rejected by the analytic counter before training and the sampler is told;
families that cannot fit the budget or train at --proxy-clip are left out, and a search stops with the
reasons counted once 50 candidates in a row met the multiply-add and parameter bounds but were rejected
all the same (by latency, say) while none has trained.
The paper's presets that fit the budget are trained first as baselines; --trials counts searched
candidates on top of them. Outputs in --out: trials.csv (one short row per trial), trials_full.csv (every
column), best.json, recipe.json (how candidates were trained: e3d train best.json uses it), pareto.json,
study.db (SQLite). `e3d search --export-results DIR` rebuilds them from the study.
The search selects on the validation split; at its end the top --top-k architectures and the best preset
in budget are retrained with --final-seeds new seeds and scored on the test split: final.csv and final.md
(mean ± sample sd, and a win/tie/loss verdict against the preset by Welch's t-test at 0.05)."""


DEFAULT_TRIALS = 6
TRIALS_ATTR = "e3d_trials"
"""Study user attribute: the ``--trials`` of the command that created (or last resumed) it."""


def count_arg(text: str) -> float:
    """argparse type: a count like 2.5M (parameters) or 1000M (multiply-adds)."""
    from search.budget import parse_count

    try:
        value = parse_count(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def study_name(text: str) -> str:
    """argparse type: a study name, not blank (it names the default run folder too)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def jobs_arg(text: str) -> int:
    """argparse type: ``--jobs``, a positive integer or ``auto`` (one per core)."""
    from search.jobs import parse_jobs

    try:
        return parse_jobs(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


STUDY_PROXY_OPTIONS = (
    *("task", "data", "data_format", "proxy_clip", "train_samples", "val_samples", "test_samples", "epochs"),
    *("trial_seconds", "batch_size", "lr", "data_seed", "precision"),
)
"""The proxy options stored with a study (a resumed study uses its own); device, threads, jobs and loader workers are
each worker's."""
SEARCH_OPTIONS = (  # not --latency-table: a resume passes the study's table again (checked against the one stored)
    *("budget_mflops", "budget_params", "budget_latency_ms", "budget_clip", "eager_latency", "families"),
    *("objective", "pruner", "rungs", "seed", "no_baselines", "sgs", *STUDY_PROXY_OPTIONS),
)
"""The options of ``e3d search`` stored with its study."""


def keep_study_defaults(p: argparse.ArgumentParser, dests: tuple[str, ...]) -> None:
    """Record the defaults of ``dests`` (options stored with a study) on ``p``, for :func:`refuse_on_resume`."""
    p.set_defaults(study_defaults={d: p.get_default(d) for d in dests})


def refuse_on_resume(args: argparse.Namespace, *, what: str = "a resumed study") -> None:
    """With ``--resume`` (or ``--finalize``: ``what`` names it): :class:`search.study.StudyConfigError` naming
    each option given that the study stores (it would be ignored: the study goes on with the settings it was
    made with)."""
    from search.study import StudyConfigError

    if args.resume and (flags := given_options(args, args.study_defaults)):
        raise StudyConfigError(f"{flags}: {what} goes on with the study's own settings; leave them out (or use another --out)")


SEARCH_JOBS_NOTE = "a search with N > 1 is still decided by --seed: each trial learns from the trials before it but the last 2N that train"
"""What ``--jobs`` says of a search (the command with ``--seed``), after what it says in every command."""


def add_proxy_args(
    p: argparse.ArgumentParser,
    *,
    epochs: int = 3,
    train_samples: int = 800,
    val_samples: int = 200,
    test: bool = False,
    jobs_note: str = "",
) -> None:
    """The options that define how each candidate is trained and scored (``test``: and ``--test-samples``, for a
    command that finalizes; ``jobs_note``: what ``--jobs`` says of this command alone)."""
    x = p.add_argument_group("proxy task")
    x.add_argument("--task", choices=("motion", "digits"), default="motion", help="built-in proxy task (default motion)")
    x.add_argument("--data", metavar="PATH", help="train on a dataset instead (any layout e3d train reads)")
    x.add_argument("--format", dest="data_format", metavar="F", help="layout of --data (guessed when omitted)")
    x.add_argument(
        "--proxy-clip",
        type=clip_arg,
        default=(16, 48, 48),
        metavar="TxHxW",
        help="training clip (default 16x48x48); networks that cannot train at it are rejected; a search leaves out families that cannot",
    )
    x.add_argument(
        "--train-samples",
        type=positive_int,
        default=train_samples,
        metavar="N",
        help=f"proxy-task training videos (default {train_samples})",
    )
    x.add_argument(
        "--val-samples", type=positive_int, default=val_samples, metavar="N", help=f"proxy-task validation videos (default {val_samples})"
    )
    if test:
        x.add_argument(
            "--test-samples", type=positive_int, default=300, metavar="N", help="test videos, read by finalization only (default 300)"
        )
    x.add_argument("--epochs", type=positive_int, default=epochs, metavar="E", help=f"epochs per candidate (default {epochs})")
    x.add_argument("--trial-seconds", type=positive_float, metavar="S", help="also stop a candidate's training after S seconds")
    x.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="clips per training batch (default 16)")
    x.add_argument("--lr", type=learning_rate, default=0.05, help="SGD learning rate (default 0.05)")
    x.add_argument("--data-seed", type=non_negative_int, default=0, metavar="S", help="seed of the proxy-task videos (default 0)")
    x.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda[:N]")
    x.add_argument(
        "--threads",
        type=thread_count,
        metavar="N",
        help=f"torch CPU threads while training, at most {MAX_THREADS} (on a busy machine 1 can be fastest)",
    )
    x.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="fp32",
        help="fp32 (default), bf16 (CPUs with AVX512-BF16/AMX, CUDA), fp16 (CUDA), or auto: per network, the fastest a short "
        "calibration measures (stored on each trial)",
    )
    x.add_argument(
        "--jobs",
        type=jobs_arg,
        default="auto",
        metavar="N",
        help="train N trials side by side in local worker processes, one torch thread each unless --threads (default auto: one "
        "per core)" + (f"; {jobs_note}" if jobs_note else ""),
    )
    x.add_argument("--loader-workers", type=worker_count, default=0, metavar="N", help="DataLoader workers (default 0: in-process)")


def add_storage_args(p: argparse.ArgumentParser, *, name: str) -> None:
    """Where the study lives and where its outputs go."""
    o = p.add_argument_group("storage and output")
    o.add_argument("--study-name", type=study_name, default=name, metavar="NAME", help=f"study name (default {name})")
    o.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: SQLite file in --out); postgresql://... for many workers")
    o.add_argument("--out", type=Path, metavar="DIR", help="run folder (default runs/<study-name>)")
    o.add_argument("--resume", action="store_true", help="continue the existing study with its stored settings")
    o.add_argument(
        "--heartbeat",
        type=heartbeat_seconds,
        default=10,
        metavar="S",
        help=f"heartbeat interval in seconds, at most {MAX_HEARTBEAT_S} (default 10); a dead worker's trial fails after ~2S and is re-run",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def epoch_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated epochs (counted from 1), e.g. ``2,3``."""
    try:
        return tuple(int(e) for e in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes epochs such as 2,3, got {text!r}") from None


def proxy_config(args: argparse.Namespace) -> Any:
    """The ``ProxyConfig`` of the parsed proxy-task options."""
    from search.study import ProxyConfig, StudyConfigError

    if args.data_format is not None and args.data is None:
        raise StudyConfigError(f"--format {args.data_format} is the layout of --data; give --data PATH too")

    return ProxyConfig(
        task=args.task,
        data=args.data,
        data_format=args.data_format,
        clip=args.proxy_clip,
        train_samples=args.train_samples,
        val_samples=args.val_samples,
        test_samples=getattr(args, "test_samples", ProxyConfig.test_samples),  # a sweep or scale never finalizes
        epochs=args.epochs,
        trial_seconds=args.trial_seconds,
        batch_size=args.batch_size,
        lr=args.lr,
        data_seed=args.data_seed,
        num_workers=args.loader_workers,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
    )


def register(sub: Any) -> None:
    """Add the ``search`` subcommand."""
    p = sub.add_parser(
        "search",
        help="search architectures under a FLOPs budget (Optuna, proxy training)",
        description="Budgeted architecture search over the families' depth and width knobs: each candidate "
        "is screened against the budget, trained briefly on a proxy task and scored by held-out accuracy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b = p.add_argument_group("budget")
    b.add_argument("--budget-mflops", type=positive_float, metavar="M", help="max multiply-adds per clip, in millions")
    b.add_argument("--budget-params", type=count_arg, metavar="N", help="max parameters, e.g. 2.5M")
    b.add_argument("--budget-latency-ms", type=positive_float, metavar="MS", help="max measured latency per batch of 8 on this machine")
    b.add_argument(
        "--budget-clip", type=clip_arg, default=(16, 112, 112), metavar="TxHxW", help="clip the budget is counted on (default 16x112x112)"
    )
    b.add_argument("--eager-latency", action="store_true", help="time the eager model for the latency bound (default: the optimized path)")
    b.add_argument(
        "--latency-table", metavar="FILE", help="predict --budget-latency-ms from a table of e3d latency-table (any device), not timing"
    )
    s = p.add_argument_group("search")
    s.add_argument("--families", metavar="F,F", help="comma-separated families: the paper's five (default: all five) and sevnet")
    s.add_argument(
        "--sgs",
        action="store_true",
        help="also search where a Similarity Guided Sampling layer goes (none, or after an early stage); "
        "such candidates are budgeted at their mean cost over the proxy validation clips",
    )
    s.add_argument(
        "--objective",
        choices=("accuracy", "pareto"),
        default="accuracy",
        help="accuracy under the budget (pruned), or pareto: accuracy vs macs",
    )
    s.add_argument(
        "--trials",
        type=positive_int,
        metavar="N",
        help=f"searched candidates to train, besides the baselines (default {DEFAULT_TRIALS}; --resume: the study's own)",
    )
    s.add_argument("--timeout", type=positive_float, metavar="S", help="stop this worker after S seconds")
    s.add_argument(
        "--pruner",
        choices=("median", "hyperband", "none", "rungs"),
        help="stop weak candidates early (default: median; pareto: rungs, the one that prunes a multi-objective search)",
    )
    s.add_argument(
        "--rungs", type=epoch_list, default=(), metavar="E,E", help="--pruner rungs: the epochs to judge at (default: the last but one)"
    )
    s.add_argument("--no-baselines", action="store_true", help="do not train the paper's presets that fit the budget first")
    s.add_argument("--seed", type=non_negative_int, default=0, help="seed of sampling and of every candidate's training (default 0)")
    s.add_argument(
        "--export-results",
        type=Path,
        metavar="DIR",
        help="only rebuild DIR's trials.csv, trials_full.csv, best.json, pareto.json and recipe.json from its study, then exit",
    )
    add_finalize_args(p)
    add_proxy_args(p, test=True, jobs_note=SEARCH_JOBS_NOTE)
    add_storage_args(p, name="e3d-search")
    p.set_defaults(func=run)
    keep_study_defaults(p, SEARCH_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Create or join the study, then run one search worker."""
    from search import study as st

    if args.export_results is not None:
        if args.finalize or args.resume:
            other = "--finalize" if args.finalize else "--resume"
            raise st.StudyConfigError(f"--export-results only rebuilds the result files; leave out {other}")
        return export_results(args)
    if args.finalize:
        return finalize_existing(args)
    refuse_on_resume(args)
    config = None if args.resume else _search_config(args)

    def enqueue(study: Any, config: Any) -> str:
        if not config.baselines:
            return "baselines: none (--no-baselines)"
        chosen = st.enqueue_baselines(study, config)
        return f"baselines: {', '.join(f'{f} {w:g}x' for f, w in chosen) or 'none of the presets fits'}"

    return run_study(args, config, enqueue=enqueue, n_trials=args.trials, timeout=args.timeout, settings={"heartbeat": args.heartbeat})


def _search_config(args: argparse.Namespace) -> Any:
    """The ``SearchConfig`` of a new search: its budget, the families that can fit it (the others are
    named on stderr) and the proxy task."""
    from search import study as st
    from search.budget import Budget, feasible_families, trainable_families
    from search.lagged import lag_for
    from search.searchspace import parse_families

    pruner = st.search_pruner(args.objective, args.pruner, rungs=args.rungs)
    budget = Budget(args.budget_mflops, args.budget_params, args.budget_latency_ms, args.budget_clip)
    if args.latency_table:  # screened with the table's predictions; its settings are stored on the study
        from search.latency import table_identity

        mode = "eager" if args.eager_latency else "optimized"
        budget = dataclasses.replace(budget, latency_table=table_identity(args.latency_table, budget, mode, sgs=args.sgs))
    if budget.mflops is None and budget.params is None and budget.latency_ms is None:
        raise st.StudyConfigError("give a budget: --budget-mflops, --budget-params and/or --budget-latency-ms (or --resume)")
    if args.eager_latency and budget.latency_ms is None:
        raise st.StudyConfigError("--eager-latency says how --budget-latency-ms is timed; give that budget too")
    families = parse_families(args.families)
    fits, minima = feasible_families(families, budget)
    left_out = [f"{f} (min {minima[f][0] / 1e6:.0f} M macs)" for f in families if f not in fits]
    if left_out:
        print(f"left out, cannot fit the budget: {', '.join(left_out)}", file=sys.stderr)
    proxy = proxy_config(args)
    trainable = trainable_families(fits, proxy.clip, batch_size=proxy.batch_size)
    if len(trainable) < len(fits):
        at = f"{'x'.join(map(str, proxy.clip))} in batches of {proxy.batch_size}"
        print(f"left out, cannot train at the proxy clip {at}: {', '.join(f for f in fits if f not in trainable)}", file=sys.stderr)
    return st.SearchConfig(
        budget=budget,
        families=trainable,
        proxy=proxy,
        objective=args.objective,
        pruner=pruner,
        rungs=args.rungs,
        seed=args.seed,
        lag=lag_for(args.jobs),
        baselines=not args.no_baselines,
        latency_mode="eager" if args.eager_latency else "optimized",
        sgs=args.sgs,
    )


def export_results(args: argparse.Namespace) -> int:
    """``--export-results DIR``: rewrite the run folder's result files from its study."""
    from search import study as st
    from search.results import export_results as export

    out: Path = args.export_results
    if args.storage is None and not (out / "study.db").is_file():
        raise st.StorageError(f"no study.db in {out}; give the run folder of a search, or --storage URL --study-name NAME")
    url = args.storage or st.sqlite_url(out / "study.db")
    storage = st.open_storage(url, heartbeat=args.heartbeat)
    names = st.list_studies(storage)
    name = args.study_name if args.study_name in names or len(names) != 1 else names[0]
    if name not in names:
        raise st.StorageError(f"no study {name!r} in {st.redact(url)}; studies there: {', '.join(sorted(names)) or 'none'}")
    import optuna

    paths = export(optuna.load_study(study_name=name, storage=storage), out)
    print(f"wrote {', '.join(str(p) for p in paths.values() if p.exists())}")
    return 0


def run_folder(args: argparse.Namespace) -> tuple[Path, str]:
    """The run folder and the storage URL of ``args``; ``--resume`` without ``--storage`` needs the
    folder's ``study.db`` (checked before anything is created)."""
    from search import study as st

    out: Path = args.out or Path("runs") / args.study_name
    if args.resume and args.storage is None and not (out / "study.db").is_file():
        raise st.StudyConfigError(f"nothing to resume in {out}: no study.db there (give the --out of the run, or its --storage URL)")
    return out, args.storage or st.sqlite_url(out / "study.db")


@contextlib.contextmanager
def undone_on_failure(out: Path, url: str) -> Iterator[None]:
    """Remove what a start that fails inside the block created: the run folder (when it is left
    empty) and a SQLite database this command made."""
    from search import study as st
    from space.files import check_writable, missing_parents, remove_empty

    new_folders = missing_parents(out)
    db = st.sqlite_path(url)
    fresh = [] if db is None or db.exists() else [db.with_name(db.name + end) for end in ("", "-journal", "-wal", "-shm")]
    check_writable(out)  # a read-only or full --out is one line now, not a traceback after the first trial
    try:
        out.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        for f in fresh:
            with contextlib.suppress(OSError):
                f.unlink()
        remove_empty(new_folders)
        raise


def trial_count(study: Any, given: int | None, *, store: bool) -> int:
    """``--trials`` when given (stored on the study when ``store``), else the study's stored count."""
    if given is None:
        return int(study.user_attrs.get(TRIALS_ATTR, DEFAULT_TRIALS))
    if store:
        study.set_user_attr(TRIALS_ATTR, given)
    return given


def resume_command(args: argparse.Namespace, kind: str, out: Path, n_trials: int) -> str:
    """The command that continues this run (credentials redacted: they are never printed)."""
    from search import study as st

    again = f"e3d {kind} --resume --study-name {args.study_name} --out {out}"
    if kind == "search":
        again += f" --trials {n_trials}" + finalize_options(args)
        again += f" --latency-table {args.latency_table}" if getattr(args, "latency_table", None) else ""
    if getattr(args, "jobs", None) is not None:
        again += f" --jobs {args.jobs}"  # as many as ran: the default depends on the machine
    if args.storage:
        again += f" --storage {st.redact(args.storage)}"
        if st.redact(args.storage) != args.storage:
            again += "   (with your password in place of ***)"
    return again


def run_study(
    args: argparse.Namespace,
    config: Any,
    *,
    enqueue: Any,
    n_trials: int | None,
    timeout: float | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """Open (create or join) the study of ``args``, run one worker, write the outputs, summarise.

    ``n_trials`` None: the study's stored ``--trials`` (a resumed search keeps its own). ``settings``: more
    of the command's settings that a worker joining the study must share (:func:`search.study.check_settings`)."""
    out, url = run_folder(args)
    with undone_on_failure(out, url):
        study, config, n, data = _open_run(args, url, config, enqueue=enqueue, n_trials=n_trials, settings=settings or {})
    latency = study_latency_of(args, config)
    costs = ("macs", "latency_ms") if config.budget.latency_ms is not None and config.objective == "pareto" else ("macs",)
    bar = _trials_bar(args, study, n)
    save = _result_writer(study, out, config, costs=costs, bar=bar)

    def on_trial(t: Any) -> None:
        show_trial(bar, t)
        save()

    from e3d.commands.progress import watching

    started = time.perf_counter()
    try:
        with watching(study, config, jobs=getattr(args, "jobs", 1), quiet=args.quiet):  # progress inside a trial
            run_workers(args, study, url, config, data, n_trials=n, timeout=timeout, latency=latency, on_trial=on_trial)
    except KeyboardInterrupt:
        bar.close()
        saved = "every finished trial is saved in the study" + ("" if save() else f" (the files in {out} could not be written)")
        return interrupted(saved, resume_command(args, config.kind, out, n))
    bar.close()
    return _finish(args, study, config, out, costs=costs, started=started)


def _open_run(
    args: argparse.Namespace, url: str, config: Any, *, enqueue: Any, n_trials: int | None, settings: dict[str, Any]
) -> tuple[Any, Any, int, Any]:
    """Open the storage and the study, set this machine's proxy settings, say what runs and load the
    proxy data; returns (study, config, trials to run, data)."""
    from search import study as st

    storage = st.open_storage(url, heartbeat=args.heartbeat)
    study, config, created = st.open_study(args.study_name, storage, config, resume=args.resume, kind=getattr(args, "command", None))
    if not args.resume:
        st.check_settings(study, args.study_name, settings, created=created)
    n = trial_count(study, n_trials, store=created or args.resume)
    config = local_config(args, config)
    _announce_study(args, study, config, url, created=created, enqueue=enqueue, n_trials=n)
    return study, config, n, st.load_proxy(config.proxy, progress=not args.quiet)


def _announce_study(args: argparse.Namespace, study: Any, config: Any, url: str, *, created: bool, enqueue: Any, n_trials: int) -> None:
    """Print the queued baselines (a new study) or the trials so far (a joined one), the budget and the proxy task."""
    from search import study as st

    if created:
        print(enqueue(study, config), file=sys.stderr)
    else:
        print(f"joining study {args.study_name!r} ({len(study.trials)} trials so far)", file=sys.stderr)
    if config.kind == "search":
        searched = f"{n_trials} searched trial{'s' if n_trials != 1 else ''}"
        print(f"budget: {config.budget.describe()}; families: {', '.join(config.families)}; {searched}", file=sys.stderr)
    print(f"proxy: {config.proxy.describe()}; objective: {config.objective}; storage: {st.redact(url)}", file=sys.stderr)


def local_config(args: argparse.Namespace, config: Any) -> Any:
    """``config`` with this machine's device, DataLoader workers and torch threads (one per job under
    ``--jobs`` N unless ``--threads``); fails in one line when this machine cannot run its precision."""
    from profiler.precision import check_supported

    local = {"device": args.device, "num_workers": args.loader_workers, "threads": job_threads(args)}  # this worker's machine
    config = dataclasses.replace(config, proxy=dataclasses.replace(config.proxy, **local))
    check_supported(config.proxy.precision, config.proxy.device)
    return config


def job_threads(args: argparse.Namespace) -> int | None:
    """Torch threads per trial: ``--threads``, else one under ``--jobs`` N > 1, else torch's choice (None)."""
    return args.threads or (1 if getattr(args, "jobs", 1) > 1 else None)


def study_latency_of(args: argparse.Namespace, config: Any) -> Any:
    """What measures a candidate's latency: the study's latency table, else a meter on this machine
    when the budget or the study needs latencies, else None."""
    from search.latency import study_latency

    wants_latency = config.budget.latency_ms is not None or config.measure_latency
    latency = study_latency(config.budget, config.latency_mode, getattr(args, "latency_table", None))
    if latency is None and wants_latency:
        latency = meter_here(args, config)
    return latency


def meter_here(args: argparse.Namespace, config: Any) -> Any:
    """A meter that times each candidate on this machine (:func:`search.study.latency_meter`), after saying how."""
    import torch

    from search import study as st

    threads = config.proxy.threads or torch.get_num_threads()
    print(meter_note(config.latency_mode, threads=threads, jobs=getattr(args, "jobs", 1)), file=sys.stderr)
    return st.latency_meter(config.latency_mode)


def meter_note(mode: str, *, threads: int, jobs: int) -> str:
    """What a latency measured during the search means: its path, batch and threads, and beside what."""
    note = f"latency: each candidate timed here, {mode} path, batch 8, {threads} torch thread{'s' if threads != 1 else ''}"
    if jobs > 1:
        others = f"{jobs - 1} other job{'s' if jobs > 2 else ''}"
        note += f", beside {others} training (noisier: a table from e3d latency-table prices every candidate alike)"
    return note


def progress_bar(args: argparse.Namespace, *, total: int, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr, disabled by ``--quiet``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=args.quiet or None)


def _trials_bar(args: argparse.Namespace, study: Any, n_trials: int) -> Any:
    """The trials bar: ``n_trials`` plus the queued baselines or sweep runs, advanced by those already trained."""
    from search import study as st

    queued = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("source") in ("baseline", "sweep"))
    bar = progress_bar(args, total=n_trials + queued, desc="trials", unit="trial")
    bar.update(st.count_trained(study))
    return bar


def show_trial(bar: Any, t: Any) -> None:
    """Write a finished trial's line above ``bar``; advance the bar when the trial trained."""
    from search import study as st

    echo(st.trial_line(t), bar.write)  # a closed stdout (| head) stops the lines, not the search
    if t.user_attrs.get("trained"):
        bar.update(1)


def _result_writer(study: Any, out: Path, config: Any, *, costs: tuple[str, ...], bar: Any) -> Callable[[], dict[str, Path]]:
    """A function that writes the result files of ``study`` to ``out`` and returns their paths."""
    from search.results import study_frame, write_outputs
    from space.files import WriteError

    unwritten: list[str] = []

    def save() -> dict[str, Path]:
        """Write the result files; a full or read-only disk is reported once and the search goes on
        (the study holds every trial; ``--export-results`` rebuilds the files)."""
        try:
            return write_outputs(study_frame(study), out, costs=costs, config=config.to_dict())
        except (WriteError, OSError) as e:
            if not unwritten:
                hint = f"the study keeps every trial (rebuild the files: e3d search --export-results {out})"
                bar.write(f"warning: {e}; {hint}", file=sys.stderr)
            unwritten.append(str(e))
            return {}

    return save


def interrupted(saved: str, again: str) -> int:
    """After Ctrl-C: say what is ``saved`` and the command that continues (``again``); the exit code 130."""
    print(f"\ninterrupted; {saved}. Continue with:\n  {again}", file=sys.stderr)
    return 130


def _finish(args: argparse.Namespace, study: Any, config: Any, out: Path, *, costs: tuple[str, ...], started: float) -> int:
    """Write the result files (an error now), then print the summary and the next step (a closed stdout
    skips the printing, never the files), then finalize a search unless ``--no-finalize``."""
    from search.results import study_frame, write_outputs
    from space.files import WriteError

    df = study_frame(study)
    try:
        paths = write_outputs(df, out, costs=costs, config=config.to_dict())
    except (WriteError, OSError) as e:
        raise WriteError(f"{e}; the study keeps every trial: e3d search --export-results {out} once there is room") from None
    echo(summary(df, config, time.perf_counter() - started))
    echo(f"\nwrote {', '.join(str(p) for p in paths.values() if p.exists())}")
    if config.kind == "search" and paths["best"].exists():
        echo(f"next: e3d train {paths['best']} --data {config.proxy.data or config.proxy.task}   |   e3d profile {paths['best']}")
    if config.kind == "search" and not getattr(args, "no_finalize", True):
        return finalize(args, study, config, out)
    return 0


def run_workers(
    args: argparse.Namespace,
    study: Any,
    url: str,
    config: Any,
    data: Any,
    *,
    n_trials: int,
    timeout: float | None,
    latency: Any,
    on_trial: Any,
) -> None:
    """One worker in this process, or ``--jobs`` N worker processes on this machine (:mod:`search.jobs`)."""
    from search import study as st

    jobs = getattr(args, "jobs", 1)
    if jobs <= 1:
        st.run_worker(study, config, data, n_trials=n_trials, timeout=timeout, latency=latency, on_trial=on_trial)
        return
    print(jobs_line(jobs, config.proxy.threads), file=sys.stderr)
    run_local_jobs(args, study, url, config, n_trials=n_trials, timeout=timeout, latency=latency, on_trial=on_trial)


def jobs_line(jobs: int, threads: int | None) -> str:
    """The line that says how many local jobs run, with how many torch threads each."""
    return f"{jobs} local jobs, {threads} torch thread{'s' if threads != 1 else ''} each"


def run_local_jobs(
    args: argparse.Namespace,
    study: Any,
    url: str,
    config: Any,
    *,
    n_trials: int,
    timeout: float | None,
    latency: Any,
    on_trial: Any,
    scale: Any = None,
) -> None:
    """``--jobs`` N worker processes on this machine work on the study (a ``scale`` plan when given:
    :class:`search.jobs.JobSpec`); this process reports their trials through ``on_trial``."""
    from search.jobs import JobSpec, run_jobs

    spec = JobSpec(url, study.study_name, config, n_trials, timeout, args.heartbeat, latency, scale=scale)
    run_jobs(study, spec, jobs=args.jobs, on_trial=on_trial)


def summary(df: Any, config: Any, seconds: float) -> str:
    """The table printed at the end: counts, then the best trials next to the best baseline."""
    from search.results import finished, trial_counts

    lines = ["", f"study: {trial_counts(df)}; this worker ran {seconds / 60:.1f} min"]
    done = finished(df)
    if not len(done):
        return "\n".join([*lines, "no finished trials yet"])
    top = done.sort_values(["accuracy", "macs"], ascending=[False, True]).head(10 if config.kind == "search" else len(done))
    lines.append(f"\n{'trial':>5}  {'source':<8} {'seed':>4} {'accuracy':>8}  {'macs M':>8}  {'params M':>8}  {'paper MFLOPs':>12}  spec")
    for _, r in top.iterrows():
        nums = f"{r['accuracy']:7.1f}%  {r['macs'] / 1e6:8.1f}  {r['params'] / 1e6:8.2f}  {r['paper_mflops']:12.1f}"
        lines.append(f"{int(r['number']):>5}  {r['source']!s:<8} {int(r['seed']):>4} {nums}  {r['summary']}")
    base = done[done["source"] == "baseline"]
    searched = done[done["source"].isin(["search", "retry"])]
    if len(base) and len(searched):
        b, s = base["accuracy"].max(), searched["accuracy"].max()
        lines.append(
            f"\nvalidation, one seed (what the search selected on, not a verdict): best searched {s:.1f}%, "
            f"best paper preset {b:.1f}%; the test-split verdict comes from finalization"
        )
    return "\n".join(lines)
