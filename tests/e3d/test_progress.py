"""Progress inside a trial: the line about a running trial, and a log that hears from a long trial every period."""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState

from e3d.commands.progress import TrialWatch, trial_progress, watching
from search.study import PROGRESS_ATTR, progress_recorder


def running_study(worker: str = "host:1", epochs_done: int = 2) -> optuna.Study:
    """A study with one running trial of ``worker`` that reported ``epochs_done`` epochs."""
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    for k, v in {"worker": worker, "source": "search", "summary": "mobilenet w0.5"}.items():
        trial.set_user_attr(k, v)
    for epoch in range(epochs_done):
        trial.report(20.0 + 10 * epoch, epoch)
    return study


def test_the_line_says_epochs_done_accuracy_and_time_left() -> None:
    t = running_study().get_trials(states=(TrialState.RUNNING,))[0]
    assert t.datetime_start is not None
    line = trial_progress(t, epochs=3, now=t.datetime_start + timedelta(seconds=130))
    assert line == "trial   0 search mobilenet w0.5: epoch 2/3 done, val top-1 30.0%, 2:10 so far, about 1:05 left"
    assert trial_progress(t, epochs=None, now=t.datetime_start + timedelta(seconds=5)).endswith("training, 0:05 so far")


def test_a_log_hears_from_a_running_trial_every_period() -> None:
    stream = io.StringIO()
    watch = TrialWatch(running_study(), worker="host:1", epochs=3, every=0.05, stream=stream, bar=False).start()
    time.sleep(0.5)
    watch.stop()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all("epoch 2/3 done" in ln for ln in lines)
    assert datetime.strptime(lines[0].split()[0], "%H:%M:%S"), "each line starts with the time of day"


def test_only_this_workers_trials_and_a_hosts_prefix_matches_its_jobs() -> None:
    study = running_study(worker="host:2")
    assert TrialWatch(study, worker="host:1", epochs=3).lines() == []
    assert len(TrialWatch(study, worker="host:", epochs=3).lines()) == 1


def test_quiet_watches_nothing() -> None:
    config = SimpleNamespace(objective="accuracy", proxy=SimpleNamespace(epochs=3))
    with watching(running_study(), config, quiet=True) as watch:
        assert watch is None


def test_on_a_terminal_an_epoch_bar_moves_under_the_trials_bar() -> None:
    stream = io.StringIO()
    watch = TrialWatch(running_study(), worker="host:1", epochs=3, stream=stream, bar=True)
    watch._show()  # one poll, as the thread does every 2 s
    watch.stop()
    text = stream.getvalue()
    assert "trial 0 epochs" in text and "2/3" in text and "val 30.0%" in text


def test_clips_within_the_epoch_and_time_left_from_them() -> None:
    study = running_study()
    trial = study.get_trials(states=(TrialState.RUNNING,))[0]
    study._storage.set_trial_user_attr(trial._trial_id, PROGRESS_ATTR, [2, 400, 800])
    t = study.get_trials(states=(TrialState.RUNNING,))[0]
    assert t.datetime_start is not None
    line = trial_progress(t, epochs=3, now=t.datetime_start + timedelta(seconds=250))
    assert "epoch 2/3 done, epoch 3: 400/800 clips, val top-1 30.0%" in line
    assert line.endswith("4:10 so far, about 0:50 left")  # 2.5 epochs in 250 s: 0.5 left
    assert "epoch 3: 400/800 clips, training" in trial_progress(t, epochs=None)


def test_the_recorder_writes_at_most_every_period_and_at_each_epochs_end() -> None:
    study = optuna.create_study()
    trial = study.ask()
    record = progress_recorder(trial, every=3600.0)
    record(0, 16, 64)
    record(0, 32, 64)  # within the period: not written
    assert trial.user_attrs[PROGRESS_ATTR] == [0, 16, 64]
    record(0, 64, 64)  # the epoch's end always is
    assert study.trials[0].user_attrs[PROGRESS_ATTR] == [0, 64, 64]
