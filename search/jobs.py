"""Parallel local trials: N single-thread worker processes on one machine, against the run's storage.

On a small CPU a second torch thread speeds a training step up far less than 2x (1.14-1.47x on a
2-core Xeon, see ``bench/train_speed.py``), so N one-thread trials side by side train more per hour
than one N-thread trial. :func:`run_jobs` starts ``jobs`` processes (``spawn``: no forked torch
state), each running :func:`search.study.run_worker` on the same study, and reports every finished
trial back to the parent, which prints it and writes the outputs. The processes are the same workers
as on many machines: a trial is taken by exactly one of them (Optuna's storage hands out each waiting
trial once), and a dead one's trial is failed by heartbeat and re-run.

A SQLite storage is in write-ahead-log mode (readers do not block the writer; ``search.study.SQLITE_PRAGMAS``)
and every connection waits up to a minute for a lock (``search.study.open_storage``) before it fails.

SIGTERM (``kill``, ``timeout``, a scheduler's stop) stops the e3d command and every job as Ctrl-C does
(:func:`search.interrupts.interrupt_signals`): trials in training are marked interrupted and queued again, the rest saved.
A job whose e3d command was killed outright (``kill -9``, the out-of-memory killer) stops the same way within a
second, rather than train on unseen.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from profiler.measuring import when_orphaned
from search.interrupts import interrupt_signals
from space.spec import E3DError


class JobsError(E3DError):
    """A local job stopped with an error (the message names it)."""


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


MAX_JOBS_PER_CORE = 4
"""Most local jobs per usable core: above one per core they already share cores (a warning:
:func:`oversubscription`); far above, thousands of processes would only exhaust memory."""


def parse_jobs(text: str) -> int:
    """``--jobs`` value: a positive integer up to :data:`MAX_JOBS_PER_CORE` per usable core, or ``auto`` (one per
    usable core)."""
    if text == "auto":
        return usable_cores()
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"must be a positive integer or auto, got {text!r}") from None
    if n < 1:
        raise ValueError(f"must be a positive integer or auto, got {text!r}")
    most = MAX_JOBS_PER_CORE * usable_cores()
    if n > most:
        raise ValueError(f"must be at most {most} ({MAX_JOBS_PER_CORE} per core here: each job is a training process), got {text!r}")
    return n


def oversubscription(jobs: int, threads: int | None, cores: int | None = None) -> str | None:
    """A warning when ``jobs`` x ``threads`` exceeds the cores (None when it fits)."""
    cores = cores or usable_cores()
    want = jobs * (threads or 1)
    if want <= cores:
        return None
    return (
        f"warning: {jobs} jobs x {threads or 1} thread{'s' if (threads or 1) > 1 else ''} = {want} > {cores} cores here: "
        "they will share cores and every trial will train slower"
    )


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What each job process needs (picklable)."""

    url: str
    study_name: str
    config: Any
    n_trials: int
    timeout: float | None
    heartbeat: int
    latency: Any
    scale: Any = None
    """A ``search.scale.ScaleConfig``: each job works through that scaling plan (``run_scale``) instead
    of running search trials (``n_trials`` and ``timeout`` are then unused)."""
    cpu_budget_s: float | None = None
    """Stop once the study's searched trials have used this many CPU seconds (``run_worker``)."""


def run_jobs(
    study: optuna.Study, spec: JobSpec, *, jobs: int, on_trial: Callable[[FrozenTrial], None] | None = None
) -> list[dict[str, Any]]:
    """Run ``jobs`` worker processes on ``study`` (opened in this process on ``spec.url``) and wait for
    them. ``on_trial`` gets each finished trial, read back from the storage, in this process. Returns
    each job's report (``search.study.WorkerReport`` as a dict, with ``job``, ``pid``, ``threads`` and ``allocator``); raises
    :class:`JobsError` when a job failed, and KeyboardInterrupt after the jobs stopped on Ctrl-C. Warns on
    stderr first when the jobs' threads exceed this machine's cores (:func:`oversubscription`)."""
    warning = oversubscription(jobs, spec.config.proxy.threads)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    ctx = mp.get_context("spawn")
    messages: Any = ctx.Queue()
    job = _picklable(spec)
    procs = [ctx.Process(target=_job, args=(job, i, messages, os.getpid()), name=f"e3d-job-{i}") for i in range(jobs)]
    for p in procs:
        p.start()
    reports: list[dict[str, Any]] = []
    errors: list[str] = []
    try:
        while any(p.is_alive() for p in procs) or not messages.empty():
            try:
                kind, payload = messages.get(timeout=0.5)
            except queue.Empty:
                continue
            if kind == "trial" and on_trial is not None:
                on_trial(_trial(study, int(payload)))
            elif kind == "done":
                reports.append(payload)
            elif kind == "error":
                errors.append(str(payload))
    except KeyboardInterrupt:
        _stop(procs)
        raise
    for p in procs:
        p.join()
    crashed = [f"job {i} exited with code {p.exitcode}" for i, p in enumerate(procs) if p.exitcode not in (0, None)]
    if errors or crashed:
        raise JobsError("; ".join(errors + crashed))
    return reports


STOP_GRACE_S = 5.0
"""Seconds the jobs get to stop on a signal that reached them too, before they are sent SIGTERM."""


def _stop(procs: list[Any]) -> None:
    """After Ctrl-C or SIGTERM here: let the jobs stop on the same signal (Ctrl-C in a terminal and ``kill -TERM
    -PGID`` reach every process of the group), send SIGTERM to those still running after :data:`STOP_GRACE_S`
    (``kill PID`` reached this process alone: they would train on, and this process would wait for them at exit),
    then give each 30 s to save its trial."""
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: the job marks its trial interrupted, as on Ctrl-C
    for p in procs:
        p.join(timeout=30)


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial ``number`` of the study as the storage holds it now."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _picklable(spec: JobSpec) -> JobSpec:
    """``spec`` with its latency meter dropped when it cannot cross to a process (each job makes its own)."""
    try:
        pickle.dumps(spec.latency)
    except Exception:  # closures and local functions do not pickle
        return dataclasses.replace(spec, latency=None)
    return spec


def _job(spec: JobSpec, index: int, messages: Any, parent: int) -> None:
    """One job process: join the study, run a worker (or the scaling plan), report each trial and the end; stop
    as on SIGTERM if the ``parent`` e3d process is killed outright."""
    with interrupt_signals():
        try:
            when_orphaned(parent, lambda: os.kill(os.getpid(), signal.SIGTERM))
            _work(spec, index, messages)
        except KeyboardInterrupt:
            sys.exit(130)


def _work(spec: JobSpec, index: int, messages: Any) -> None:
    import torch

    from profiler.allocator import keep_freed_memory
    from search import study as st

    try:
        report: dict[str, Any] = {"allocator": keep_freed_memory()}
        config = spec.config
        if config.proxy.threads is not None:  # the whole job, not only its training: a job that loads data or
            torch.set_num_threads(config.proxy.threads)  # builds a model on more threads slows the others' steps
        storage = st.open_storage(spec.url, heartbeat=spec.heartbeat)
        study, _, _ = st.open_study(spec.study_name, storage, None, resume=True)
        latency = spec.latency
        if latency is None and (config.budget.latency_ms is not None or config.measure_latency):
            latency = st.latency_meter(config.latency_mode)
        on_trial: Callable[[FrozenTrial], None] = lambda t: messages.put(("trial", t.number))  # noqa: E731
        if spec.scale is not None:
            from search.scale import run_scale

            run_scale(study, config, spec.scale, latency=latency, on_trial=on_trial)
        else:
            data = st.load_proxy(config.proxy, progress=False, test=config.kind == "final")  # finalization scores on test
            done = st.run_worker(
                study, config, data, n_trials=spec.n_trials, timeout=spec.timeout, latency=latency, on_trial=on_trial,
                cpu_budget_s=spec.cpu_budget_s,
            )  # fmt: skip
            report.update(dataclasses.asdict(done))
        messages.put(("done", {"job": index, "pid": os.getpid(), "threads": torch.get_num_threads(), **report}))
    except Exception as e:  # reported to the parent as one line
        e = st.storage_failed(e) if isinstance(e, st.STORAGE_FAILURES) else e
        messages.put(("error", f"job {index}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))


__all__ = ["JobSpec", "JobsError", "oversubscription", "parse_jobs", "run_jobs", "usable_cores"]
