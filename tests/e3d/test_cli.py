"""e3d/cli.py: what a user can cause ends in one line and an exit code; a bug shows its traceback."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import e3d
import search.jobs
from e3d import cli
from e3d.cli import MAX_HEARTBEAT_S, MAX_THREADS, guarded, thread_count, worker_count
from space.spec import SpecError
from tests.e3d.fixtures import run


def _raise(e: BaseException) -> int:
    raise e


def test_guarded_passes_the_exit_code_on() -> None:
    assert guarded(lambda: 0, prefix="x: ") == 0 and guarded(lambda: 3, prefix="x: ") == 3


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (SpecError("stages[0].channels", "must be positive"), 2, "e3d x: error: stages[0].channels: must be positive"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/a.csv"), 2, "e3d x: error: runs/a.csv: no space left on the device"),
        (KeyboardInterrupt(), 130, "e3d x: interrupted; continue with: again"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), 0, ""),
    ],
)
def test_guarded_turns_what_a_user_can_cause_into_one_line(
    capsys: pytest.CaptureFixture[str], error: BaseException, code: int, line: str
) -> None:
    assert guarded(lambda: _raise(error), prefix="e3d x: ", interrupted="interrupted; continue with: again") == code
    assert capsys.readouterr().err == (f"{line}\n" if line else "")


@pytest.mark.parametrize("error", [ValueError("a bug"), OSError(errno.EBADF, "Bad file descriptor")])
def test_guarded_lets_a_bug_show_its_traceback(error: BaseException) -> None:
    with pytest.raises(type(error)):
        guarded(lambda: _raise(error), prefix="x: ")


STUDIES = [["sweep"], ["search", "--budget-mflops", "100"], ["scale", "mobilenet"]]
"""The commands that train on a proxy task, with what else they need to parse."""


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder: a command that should have refused its options writes nothing here."""
    monkeypatch.chdir(tmp_path)


COMMANDS_WITH_DEVICE = [
    ["train", "mobilenet"],
    ["evaluate", "runs/x"],
    *STUDIES,
    ["profile", "mobilenet"],
    ["latency-table", "--out", "t.json"],
]
"""Each command that takes ``--device`` and ``--threads``, with what else it needs to parse."""


@pytest.mark.parametrize("command", COMMANDS_WITH_DEVICE, ids=lambda c: c[0])
@pytest.mark.parametrize(("device", "words"), [("bogus", "unknown device 'bogus'"), ("cuda:abc", "unknown device 'cuda:abc'")])
def test_a_bad_device_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], command: list[str], device: str, words: str) -> None:
    code, _, err = run(capsys, *command, "--device", device)  # was torch's RuntimeError traceback in train, evaluate, sweep
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err


@pytest.mark.parametrize("command", [["train", "mobilenet"], *STUDIES], ids=lambda c: c[0])
@pytest.mark.parametrize("lr", ["1e39", "inf", "nan", "0"])
def test_a_learning_rate_outside_float32_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], command: list[str], lr: str) -> None:
    code, _, err = run(capsys, *command, "--lr", lr)  # 1e39 was "value cannot be converted to type float without overflow"
    assert code == 2 and len(err.strip().splitlines()) == 1 and "argument --lr: must be" in err, err


@pytest.mark.parametrize("command", COMMANDS_WITH_DEVICE, ids=lambda c: c[0])
def test_more_threads_than_max_threads_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, _, err = run(capsys, *command, "--threads", "100000")  # was a segfault (exit 139) in evaluate and train
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"argument --threads: must be at most {MAX_THREADS}" in err, err
    assert thread_count(str(MAX_THREADS)) == MAX_THREADS


@pytest.mark.parametrize(
    "command",
    [["train", "mobilenet", "--workers"], ["evaluate", "runs/x", "--workers"], ["data", "check", "motion", "--workers"]]
    + [[*c, "--loader-workers"] for c in STUDIES],
    ids=lambda c: c[0],
)
def test_more_loader_processes_than_four_per_core_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    most = search.jobs.MAX_JOBS_PER_CORE * search.jobs.usable_cores()  # as patched by tests/conftest.py
    code, _, err = run(capsys, *command, "100000")  # each is a process; there was no bound
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{command[-1]}: must be at most {most}, got '100000'" in err, err
    assert worker_count(str(most)) == most and worker_count("0") == 0


@pytest.mark.parametrize("command", STUDIES, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--data-seed", "-1"], "argument --data-seed: must be a non-negative integer"),  # was numpy's ValueError traceback
        (["--heartbeat", "100000000000"], f"argument --heartbeat: must be at most {MAX_HEARTBEAT_S}"),  # was OverflowError, exit 0
        (["--batch-size", str(2**64)], f"argument --batch-size: must be at most {sys.maxsize}"),  # was islice's ValueError
        (["--epochs", "0"], "argument --epochs: must be a positive integer"),
    ],
)
def test_bad_study_numbers_are_one_line(capsys: pytest.CaptureFixture[str], command: list[str], argv: list[str], words: str) -> None:
    code, _, err = run(capsys, *command, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err


@pytest.mark.parametrize("command", STUDIES[:2], ids=lambda c: c[0])
@pytest.mark.parametrize(("families", "words"), [("", "families: none given"), ("shufflenet,", "an empty family name in 'shufflenet,'")])
def test_an_empty_family_list_is_one_line(capsys: pytest.CaptureFixture[str], command: list[str], families: str, words: str) -> None:
    code, _, err = run(capsys, *command, "--families", families, "--format", "ucf101")  # --format: refused next, fast
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err  # '' was all families: a full search


def test_a_negative_search_seed_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "search", "--budget-mflops", "100", "--seed", "-1")  # was numpy's ValueError traceback
    assert code == 2 and len(err.strip().splitlines()) == 1 and "argument --seed: must be a non-negative integer" in err, err


def test_ctrl_c_while_the_commands_load_is_one_line_and_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt  # Ctrl-C while the commands import torch: the first seconds of every e3d command

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        code = cli.main(["models"])
    except KeyboardInterrupt:
        pytest.fail("main() let Ctrl-C out: its traceback shows")
    assert code == 130 and capsys.readouterr().err == "e3d: interrupted\n"


def test_the_e3d_command_starts_without_torch() -> None:
    """What runs before main() (the console script imports e3d.cli) cannot catch Ctrl-C, so it does not load torch."""
    code = "import sys, e3d.cli; assert 'torch' not in sys.modules, 'e3d.cli imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert [getattr(e3d, name).__name__ for name in ("create_model", "Counts")] == ["create_model", "Counts"]  # the API, on first use
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = e3d.nope  # type: ignore[attr-defined]


def test_every_option_of_every_command_has_help() -> None:
    commands = cli.leaves(cli.build_parser())
    bare = [f"{c.prog} {a.option_strings[0]}" for c in commands for a in c._actions if a.option_strings and not a.help]
    assert not bare, bare  # was: --batch-size of search, sweep and scale


def test_help_builds_every_command_s_parser_without_torch() -> None:
    """``e3d --help`` took 2.1 s, most of it loading torch (through the dashboard's, search's and sweep's modules)."""
    code = "import sys, e3d.cli; e3d.cli.build_parser(); assert 'torch' not in sys.modules, 'building the parser imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("argv", "prog"), [(["models", "--bogus"], "e3d models"), (["data", "check", "x", "--bogus"], "e3d data check")])
def test_an_unknown_option_names_its_command(capsys: pytest.CaptureFixture[str], argv: list[str], prog: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and err == f"{prog}: error: unrecognized arguments: --bogus\n"  # was "e3d: error: ..."
