"""profiler.measuring: calls in a child process, replaced every few calls; errors and deaths reach the caller."""

from __future__ import annotations

import os

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
