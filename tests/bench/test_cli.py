"""Every benchmark script reports bad options in one line with exit code 2, like the e3d command."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

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


OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
"""A long option as a command line spells it."""


def bench_options(name: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The options that ``python -m bench.NAME --help`` lists (after the description, which is the docstring)."""
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"bench.{name}").main(["--help"])
    assert exit_.value.code == 0
    return set(OPTION.findall(capsys.readouterr().out.split("\noptions:\n")[1]))


@pytest.mark.parametrize("name", BENCHES)
def test_every_option_of_the_docstrings_command_lines_is_an_option(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The command lines of a docstring (its paragraphs with ``python -m bench.NAME``) may wrap; the README's and
    docs' commands are checked line by line in tests/test_project.py."""
    doc = importlib.import_module(f"bench.{name}").__doc__ or ""
    usage = "\n".join(part for part in doc.split("\n\n") if f"python -m bench.{name}" in part)
    named = set(OPTION.findall(usage))
    assert usage and not named - bench_options(name, capsys) - {"--help"}


@pytest.mark.parametrize("name", ["search_vs_presets", "search_throughput"])
def test_bad_jobs_are_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"bench.{name}").main
    with pytest.raises(SystemExit) as exit_:
        main(["--jobs", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--jobs" in err


COUNTS = [
    ("search_vs_presets", "--final-seeds", "0"),
    ("search_vs_presets", "--max-members", "0"),
    ("search_vs_presets", "--top-k", "-1"),
    ("search_vs_presets", "--threads", "0"),
    ("search_vs_presets", "--cpu-minutes", "0"),
    ("train_speed", "--steps", "0"),
    ("train_speed", "--batch-size", "0"),
    ("train_speed", "--threads", "0"),
    ("train_speed", "--warmup", "-1"),
    ("train_speed", "--clips", "0x48x48"),
    ("optimize", "--repeats", "0"),
    ("optimize", "--batch-size", "0"),
    ("optimize", "--frames", "0"),
    ("optimize", "--size", "-112"),
    ("optimize", "--threads", "0"),
    ("optimize", "--threads", "100000"),
    ("loader_throughput", "--threads", "0"),
    ("proxy_fidelity", "--threads", "-1"),
    ("train_proxy", "--threads", "0"),
    ("optimize", "--calib-batches", "0"),
    ("optimize", "--warmup", "-1"),
    ("counting", "--specs", "0"),
    ("counting", "--cold", "0"),
    ("latency_predictor", "--specs", "0"),
]
REQUIRED = {"search_vs_presets": ["--mode", "front"], "latency_predictor": ["--table", "table.json"]}


@pytest.mark.parametrize(("name", "option", "value"), COUNTS)
def test_a_count_out_of_range_is_one_line_and_exit_2(name: str, option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"bench.{name}").main
    with pytest.raises(SystemExit) as exit_:
        main([*REQUIRED.get(name, []), option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and f"argument {option}: " in err and repr(value) in err


def test_counting_needs_more_specs_than_cold_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.counting import main

    with pytest.raises(SystemExit) as exit_:
        main(["--specs", "100", "--cold", "100"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--specs (100) must exceed --cold (100)" in err


@pytest.mark.parametrize(("text", "words"), [(None, "cannot read latency table"), ("{", "is not a latency table (corrupt")])
def test_latency_predictor_without_a_readable_table_is_one_line(
    text: str | None, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.latency_predictor import main

    table = tmp_path / "table.json"
    if text is not None:
        table.write_text(text)
    assert main(["--table", str(table), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_front_search_with_a_pruner_that_cannot_prune_it_is_one_line(pruner: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.search_vs_presets import main

    assert main(["--mode", "front", "--pruner", pruner]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--pruner {pruner} cannot prune a pareto search" in err


def test_search_vs_presets_default_pruners_are_kept() -> None:
    from bench.search_vs_presets import parse

    assert parse(["--mode", "front"]).pruner == "none" and parse(["--mode", "budgets"]).pruner == "median"
    assert parse(["--mode", "front", "--pruner", "rungs"]).pruner == "rungs"


@pytest.mark.parametrize("name", ["train_speed", "allocator"])
def test_a_preset_without_a_width_is_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"bench.{name}").main(["--presets", "mobilenet"])
    assert e.value.code == 2
    assert "--presets: expected NAME:WIDTH, got 'mobilenet'" in capsys.readouterr().err


def test_an_unknown_allocator_setting_is_one_line() -> None:
    env = {**os.environ, "E3D_MALLOC": "turbo"}
    out = subprocess.run([sys.executable, "-m", "bench.counting", "--help"], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 2 and not out.stdout
    assert out.stderr == "error: E3D_MALLOC='turbo': choose keep or system\n"
