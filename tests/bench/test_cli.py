"""Every benchmark script reports bad options in one line with exit code 2, like the e3d command."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

BENCHES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__))


def test_every_bench_script_is_listed() -> None:
    assert len(BENCHES) >= 11 and "search_vs_presets" in BENCHES


@pytest.mark.parametrize("name", BENCHES)
def test_a_bad_option_is_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"bench.{name}").main
    with pytest.raises(SystemExit) as exit_:
        main(["--no-such-option", "1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and ": error: " in err and "usage:" not in err


@pytest.mark.parametrize("name", ["search_vs_presets", "search_throughput"])
def test_bad_jobs_are_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"bench.{name}").main
    with pytest.raises(SystemExit) as exit_:
        main(["--jobs", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--jobs" in err
