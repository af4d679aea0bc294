"""profiler.measuring: calls in a child process, replaced every few calls; errors and deaths reach the caller."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from profiler.allocator import allocator
from profiler.measuring import MeasuringProcess, MeasuringProcessError


def test_calls_run_in_a_child_that_a_fresh_one_replaces_every_few_calls() -> None:
    with MeasuringProcess(every=2) as proc:
        pids = [proc(os.getpid) for _ in range(5)]
    assert os.getpid() not in pids
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


def test_the_child_keeps_freed_memory_as_the_caller_does() -> None:
    with MeasuringProcess() as proc:
        assert proc(allocator) == allocator()


def test_an_exception_in_the_child_is_raised_to_the_caller() -> None:
    with MeasuringProcess() as proc, pytest.raises(ValueError, match="invalid literal"):
        proc(int, "not a number")


def test_a_child_that_dies_is_one_error_and_the_next_call_gets_a_fresh_one() -> None:
    with MeasuringProcess() as proc:
        with pytest.raises(MeasuringProcessError, match="the measuring process died while running _exit"):
            proc(os._exit, 3)
        assert proc(os.getpid) != os.getpid()


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every must be >= 1"):
        MeasuringProcess(every=0)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_child_ignores_what_may_reach_the_whole_process_group(signum: signal.Signals) -> None:
    with MeasuringProcess() as proc:
        assert proc(signal.getsignal, signum) == signal.SIG_IGN


@pytest.fixture
def usr1_interrupts() -> Iterator[None]:
    """SIGUSR1 raises KeyboardInterrupt here, as Ctrl-C would (SIGINT itself may be the test runner's)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    yield
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.usefixtures("usr1_interrupts")
def test_a_call_interrupted_in_the_caller_kills_the_child_at_once() -> None:
    proc = MeasuringProcess()
    child = proc(os.getpid)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        proc(time.sleep, 60)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # gone, and waited for
    assert time.monotonic() - started < 30
    assert proc(os.getpid) != child  # the next call gets a fresh child
    proc.close()


KEPT: list[MeasuringProcess] = []


def _measure_once(pids: multiprocessing.Queue, linger: float) -> None:  # type: ignore[type-arg]
    """A multiprocessing child that measures once, leaves its measuring process open (as an interrupted search job
    did) and exits after ``linger`` seconds."""
    KEPT.append(MeasuringProcess())
    pids.put(KEPT[0](os.getpid))
    time.sleep(linger)


@contextlib.contextmanager
def job_with_a_measuring_child(linger: float) -> Iterator[tuple[multiprocessing.process.BaseProcess, int]]:
    """A job process running :func:`_measure_once`, and the pid of its measuring child; the job is killed after."""
    context = multiprocessing.get_context("spawn")
    pids = context.Queue()
    job = context.Process(target=_measure_once, args=(pids, linger))
    job.start()
    try:
        yield job, pids.get(timeout=60)
    finally:
        job.kill()


def gone(pid: int, *, within: float) -> bool:
    """Whether process ``pid`` is gone (or a zombie nobody waited for yet) within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_the_child_of_a_caller_killed_outright_exits_too() -> None:
    """``kill -9`` or the out-of-memory killer: no finalizer runs, and the idle child would wait for a call forever."""
    with job_with_a_measuring_child(600) as (job, grandchild):
        job.kill()
        job.join()
    try:
        assert gone(grandchild, within=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def test_a_multiprocessing_child_exits_although_its_measuring_process_is_open() -> None:
    """Such a child waits for its own children when it exits and runs no atexit hooks: the measuring
    child, which ignores Ctrl-C, must be stopped by then, or the exit hangs (an interrupted ``--jobs`` search did)."""
    with job_with_a_measuring_child(0) as (job, grandchild):
        job.join(timeout=30)
        assert job.exitcode == 0 and gone(grandchild, within=5)


def test_a_measuring_process_dropped_unclosed_stops_its_child() -> None:
    proc = MeasuringProcess()
    child = proc(os.getpid)
    del proc
    gc.collect()
    assert gone(child, within=10)
