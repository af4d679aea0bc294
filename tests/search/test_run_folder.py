"""The run folder and the storage of ``e3d search`` under faults: resume keeps the study's --trials,
credentials never printed, odd folder names, bad storage URLs, read-only and full disks.
Each test fails without the fix it names."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from typing import Any

import optuna
import pytest

from e3d.cli import main
from search import study as st
from tests.faults import listing, readonly_dir
from tests.search.conftest import TINY
from tests.search.test_study import fake_fit

__all__ = ["readonly_dir"]  # fixture


def search(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["search", *argv])
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def load(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="e3d-search", storage=st.sqlite_url(folder / "study.db"))


@pytest.mark.slow
def test_resume_keeps_the_study_s_trials_and_the_hint_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = fake_fit([])
    calls = {"n": 0}

    def interrupting(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the baseline, then Ctrl-C in the first searched trial
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr("search.train.fit", interrupting)
    code, _, err = search(capsys, *TINY, "--out", str(tmp_path), "--trials", "2")
    assert code == 130
    assert f"--resume --study-name e3d-search --out {tmp_path} --trials 2" in err
    monkeypatch.setattr("search.train.fit", real)
    code, _, err = search(capsys, "--resume", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    assert st.count_trained(load(tmp_path), source="search") == 2, "the resumed search ran the study's 2 trials, not the default 6"


def test_the_interrupt_hint_keeps_the_finalization_options() -> None:
    from e3d.commands.finalizing import finalize_command
    from e3d.commands.search import resume_command

    def hint(**finalizing: object) -> str:
        args = argparse.Namespace(study_name="s", storage=None, **{"no_finalize": False, "final_seeds": 3, "top_k": 3, **finalizing})
        return resume_command(args, "search", Path("runs/s"), 4)

    assert hint().endswith("--trials 4")
    assert hint(no_finalize=True).endswith("--trials 4 --no-finalize")  # was left out: the resumed run finalized
    assert hint(final_seeds=5, top_k=2).endswith("--trials 4 --final-seeds 5 --top-k 2")
    assert hint(jobs=1).endswith("--trials 4 --jobs 1")  # was left out: the resumed run took the machine's default, 2
    finalize = argparse.Namespace(study_name="s", storage=None, no_finalize=False, final_seeds=2, top_k=2, jobs=1)
    again = finalize_command(finalize, Path("runs/s"))
    assert again == "e3d search --finalize --study-name s --out runs/s --final-seeds 2 --top-k 2 --jobs 1"  # each was there twice


def test_options_a_study_stores_are_refused_with_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--resume", "--out", str(tmp_path), "--budget-mflops", "500", "--format", "ucf101", "--epochs", "2", "--trials", "9"]
    code, _, err = search(capsys, *argv)  # were ignored: the study went on with its stored budget, families and epochs
    assert code == 2 and "--budget-mflops, --format, --epochs: a resumed study goes on with the study's own settings" in err
    code, _, err = search(capsys, "--finalize", "--out", str(tmp_path), "--test-samples", "20", "--task", "digits")
    assert code == 2 and "--task, --test-samples: a finalization goes on with the study's own settings" in err  # were ignored
    code, _, err = search(capsys, "--resume", "--out", str(tmp_path), "--trials", "9", "--jobs", "1", "--threads", "1")
    assert code == 2 and "nothing to resume" in err, "a worker's own options (and --trials) pass"


def test_stored_options_at_their_default_values_are_refused_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = search(capsys, "--resume", "--out", str(tmp_path), "--no-finalize", "--epochs", "3")  # 3 is the default
    assert code == 2 and "--epochs: a resumed study goes on with the study's own settings" in err, err  # was ignored
    argv = ["--finalize", "--out", str(tmp_path), "--train-samples", "800", "--lr=0.05", "--task", "motion", "--epochs", "3"]
    code, _, err = search(capsys, *argv)
    assert code == 2 and "--task, --train-samples, --epochs, --lr: a finalization goes on" in err, err  # were ignored


def test_the_announced_trials_count_is_worded_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    from e3d.commands.search import _announce_study
    from search.budget import Budget

    config = st.SearchConfig(budget=Budget(mflops=60), families=("mobilenet",))
    _announce_study(argparse.Namespace(), None, config, "sqlite:///s.db", created=True, enqueue=lambda *_: "baselines: none", n_trials=1)
    assert "; 1 searched trial\n" in capsys.readouterr().err  # was "1 searched trials"


def test_conflicting_actions_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in (
        (["--finalize", "--no-finalize", "--out", str(tmp_path)], "not allowed with argument --finalize"),  # was: finalized
        (["--export-results", str(tmp_path), "--finalize"], "leave out --finalize"),  # was: finalize skipped, silently
    ):
        code, _, err = search(capsys, *argv)
        assert code == 2 and words in err, err


def test_the_interrupt_hint_and_every_error_keep_the_password_secret() -> None:
    from e3d.commands.search import resume_command

    url = "postgresql://nobody:s3cr@tpw@127.0.0.1:1/none"
    args = argparse.Namespace(study_name="s", storage=url, no_finalize=False, final_seeds=3, top_k=3)
    hint = resume_command(args, "search", Path("runs/s"), 4)
    assert "s3cr" not in hint and "tpw" not in hint and "--storage postgresql://***@127.0.0.1:1/none" in hint
    assert st.redact(url) == "postgresql://***@127.0.0.1:1/none"
    with pytest.raises(st.StorageError) as e:
        st.open_storage(url)
    assert "s3cr" not in str(e.value) and "tpw" not in str(e.value), "the raw @ is encoded: no piece of the password is a host"
    assert "127.0.0.1" in str(e.value)
    for url in ("postgresql://127.0.0.1:1/db?user=u&password=s3cretpw", "postgresql://u@127.0.0.1:1/db?sslpassword=s3cretpw&x=1"):
        assert "s3cretpw" not in st.redact(url) and "password=***" in st.redact(url)  # was printed as it was
        assert st.scrub(f"connection to {url} failed (s3cretpw)", url).count("s3cretpw") == 0
        with pytest.raises(st.StorageError) as e:
            st.open_storage(url)
        assert "s3cretpw" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a?b", "c#d", "e%41f g"])
def test_odd_characters_in_out_keep_the_database_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    out = tmp_path / name
    code, _, err = search(capsys, *TINY, "--out", str(out), "--trials", "1", "--no-baselines")
    assert code == 0, err
    assert "baselines: none (--no-baselines)" in err  # was "none of the presets fits"
    assert listing(tmp_path) == [name] and "study.db" in listing(out)
    assert st.count_trained(load(out), source="search") == 1
    prefix = tmp_path / name[0]
    code, _, err = search(capsys, "--resume", "--out", str(prefix), "--quiet")
    assert code == 2 and "nothing to resume" in err, "another folder does not join that study"
    assert not prefix.exists()


@pytest.mark.parametrize(
    ("storage", "words", "not_words"),
    [
        ("postgres://u:s3cret@127.0.0.1:1/db", "postgresql://, not postgres://", "plugin"),
        ("mysql://u:s3cret@127.0.0.1:1/db", "driver SQLAlchemy uses for mysql", "e3d[postgres]"),
        ("runs/x/study.db", "sqlite:///runs/x/study.db", "Could not parse"),
    ],
)
def test_bad_storage_urls_are_one_clear_line_and_leave_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], storage: str, words: str, not_words: str
) -> None:
    out = tmp_path / "new" / "run"
    code, _, err = search(capsys, *TINY, "--out", str(out), "--storage", storage)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and not_words not in lines[0], err
    assert "s3cret" not in err
    assert listing(tmp_path) == [], "a failed start leaves no empty run folder"


def test_a_start_that_fails_after_the_study_is_made_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ds" / "a").mkdir(parents=True)  # a UCF-101 layout without its classInd.txt
    out = tmp_path / "run"
    code, _, err = search(capsys, *TINY, "--data", str(tmp_path / "ds"), "--format", "ucf101", "--out", str(out))
    assert code == 2 and "no classInd.txt" in err
    assert not out.exists(), list(out.iterdir())  # was study.db-shm


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--study-name", " "], "--study-name: must not be empty"),
        (["--budget-params", "1e400"], "too large"),
        (["--eager-latency"], "--eager-latency says how --budget-latency-ms is timed"),  # was ignored
        (["--format", "ucf101"], "--format ucf101 is the layout of --data; give --data PATH too"),  # was "data path motion"
    ],
)
def test_bad_options_are_refused_before_the_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, _, err = search(capsys, *TINY, "--out", str(tmp_path / "run"), *argv)
    assert code == 2 and words in err  # were accepted: a study named "" in runs/, a budget of "params <= inf M"
    assert not (tmp_path / "run").exists()


def test_a_worker_with_another_heartbeat_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))
    assert search(capsys, *TINY, "--out", str(tmp_path), "--trials", "1", "--no-baselines")[0] == 0
    code, _, err = search(capsys, *TINY, "--out", str(tmp_path), "--trials", "1", "--no-baselines", "--heartbeat", "1")
    assert code == 2 and "other settings (heartbeat: stored 10, given 1)" in err  # joined: it failed the others' live trials


def test_resume_into_a_missing_folder_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = search(capsys, "--resume", "--out", str(tmp_path / "missing"), "--quiet")
    assert code == 2 and "nothing to resume in" in err and len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == []


def test_a_read_only_out_is_one_line_before_any_work(
    readonly_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*a: Any, **k: Any) -> Any:
        raise AssertionError("nothing is trained into a folder that cannot be written")

    monkeypatch.setattr("search.train.fit", never)
    code, _, err = search(capsys, *TINY, "--out", str(readonly_dir / "run"), "--trials", "1")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "cannot write to" in err and str(readonly_dir / "run") in err


@pytest.mark.slow
def test_a_full_disk_mid_search_loses_no_trial_and_ends_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", fake_fit([]))

    def full(*a: Any, **k: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "trials.csv"))

    monkeypatch.setattr("search.results.write_outputs", full)
    code, _, err = search(capsys, *TINY, "--out", str(tmp_path), "--trials", "2")
    assert code == 2
    assert st.count_trained(load(tmp_path), source="search") == 2, "the search went on: the study holds every trial"
    assert "Traceback" not in err and err.count("warning:") == 1
    assert err.strip().splitlines()[-1].startswith("e3d search: error:") and "--export-results" in err
