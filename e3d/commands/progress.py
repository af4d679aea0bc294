"""Progress inside a trial for ``e3d search`` and ``e3d sweep``: which trial this worker is training,
how many epochs are done, its last validation accuracy and the time left.

A background thread reads this worker's running trials from the study every few seconds. A trial
reports its validation top-1 after every epoch (``trial.report``, what the pruner reads), so the
epochs done are its intermediate values. On a terminal an epoch bar moves under the trials bar; in a
log (stderr not a terminal) a line is written at least every ``every`` seconds, so a long trial is
never silent.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.study import PROGRESS_ATTR


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def trial_progress(trial: FrozenTrial, *, epochs: int | None, now: datetime | None = None) -> str:
    """One line about a running trial: epochs done, the last validation top-1, time so far and left
    (``epochs=None``: the trial reports no epochs, as in a ``pareto`` search; only the time)."""
    a = trial.user_attrs
    start = trial.datetime_start
    elapsed = ((now or datetime.now()) - start).total_seconds() if start is not None else 0.0
    line = f"trial {trial.number:>3} {a.get('source', '')} {a.get('summary', '')}: "
    batch = a.get(PROGRESS_ATTR)  # [epoch index, clips done, clips in the epoch], while it trains
    in_epoch = f"epoch {batch[0] + 1}: {batch[1]}/{batch[2]} clips, " if batch else ""
    if epochs is None:
        return line + f"{in_epoch}training, {_clock(elapsed)} so far"
    done = len(trial.intermediate_values)
    line += f"epoch {done}/{epochs} done, {in_epoch if batch and batch[0] == done else ''}"
    if done:
        last = trial.intermediate_values[max(trial.intermediate_values)]
        line += f"val top-1 {last:.1f}%, "
    line += f"{_clock(elapsed)} so far"
    progress = epochs_done(trial)
    if 0 < progress < epochs:
        line += f", about {_clock(elapsed / progress * (epochs - progress))} left"
    return line


def epochs_done(trial: FrozenTrial) -> float:
    """Epochs a running trial has trained, with the fraction of the current one (from its
    :data:`~search.study.PROGRESS_ATTR`)."""
    done = len(trial.intermediate_values)
    batch = trial.user_attrs.get(PROGRESS_ATTR)
    if batch and batch[0] == done and batch[2]:
        return done + min(batch[1] / batch[2], 1.0)
    return float(done)


class TrialWatch:
    """Watch the trials that worker ``worker`` runs (``host:pid``, the trial's ``worker`` attribute; a
    value ending in ``:`` matches every worker of that host, e.g. the processes of ``--jobs``)."""

    def __init__(
        self,
        study: optuna.Study,
        *,
        worker: str,
        epochs: int | None,
        every: float = 60.0,
        stream: IO[str] | None = None,
        bar: bool | None = None,
    ) -> None:
        self.study, self.worker, self.epochs, self.every = study, worker, epochs, every
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._epochs_bar: Any = None
        self._shown: int | None = None

    def running(self) -> list[FrozenTrial]:
        """This worker's running trials."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        mine = (lambda w: w.startswith(self.worker)) if self.worker.endswith(":") else (lambda w: w == self.worker)
        return [t for t in trials if mine(str(t.user_attrs.get("worker", "")))]

    def lines(self) -> list[str]:
        """A progress line per running trial of this worker."""
        return [trial_progress(t, epochs=self.epochs) for t in self.running()]

    def start(self) -> TrialWatch:
        """Start the watching thread (a daemon: it never keeps the process alive)."""
        self._thread = threading.Thread(target=self._loop, name="e3d-trial-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the epoch bar."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._epochs_bar is not None:
            self._epochs_bar.close()

    def _loop(self) -> None:
        period = min(self.every, 2.0) if self.bar else self.every
        while not self._stop.wait(period):
            try:
                self._show()
            except Exception:  # a storage hiccup must never stop the search; the next poll retries
                continue

    def _show(self) -> None:
        running = self.running()
        if not self.bar:
            for t in running:
                print(f"{time.strftime('%H:%M:%S')} {trial_progress(t, epochs=self.epochs)}", file=self.stream, flush=True)
            return
        from tqdm import tqdm

        if not running:
            return
        t = running[0]
        if self._epochs_bar is None or self._shown != t.number:
            if self._epochs_bar is not None:
                self._epochs_bar.close()
            desc = f"trial {t.number} epochs"
            self._epochs_bar = tqdm(total=self.epochs, desc=desc, unit="epoch", position=1, leave=False, file=self.stream)
            self._shown = t.number
        done = len(t.intermediate_values)
        progress = epochs_done(t)
        self._epochs_bar.n = int(progress) if progress.is_integer() else round(progress, 2)
        batch = t.user_attrs.get(PROGRESS_ATTR)
        post = [f"val {t.intermediate_values[max(t.intermediate_values)]:.1f}%"] if done else []
        post += [f"{batch[1]}/{batch[2]} clips"] if batch and batch[0] == done else []
        self._epochs_bar.set_postfix_str(", ".join(post), refresh=False)
        self._epochs_bar.refresh()


@contextlib.contextmanager
def watching(study: optuna.Study, config: Any, *, jobs: int = 1, quiet: bool = False, every: float = 60.0) -> Iterator[TrialWatch | None]:
    """Watch this worker's trials (all of this host's with ``jobs`` > 1) while the block runs; nothing
    with ``quiet``. ``config`` is the study's ``SearchConfig``: trials report epochs when it prunes."""
    if quiet:
        yield None
        return
    from search.study import worker_id

    worker = worker_id() if jobs <= 1 else f"{socket.gethostname()}:"
    epochs = config.proxy.epochs if config.objective == "accuracy" else None
    watch = TrialWatch(study, worker=worker, epochs=epochs, every=every).start()
    try:
        yield watch
    finally:
        watch.stop()
