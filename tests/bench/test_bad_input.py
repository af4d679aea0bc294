"""Bad input to a benchmark is one line on stderr and exit code 2, refused before any long work."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from bench import proxy_fidelity, search_trial

BAD = [
    ("counting", ["--families", "nosuch"]),
    ("int8_accuracy", ["--models", "nosuch"]),
    ("int8_accuracy", ["--task", "nosuch"]),
    ("int8_accuracy", ["--epochs", "0"]),
    ("loader_throughput", ["--sources", "/nonexistent"]),
    ("loader_throughput", ["--batches", "0"]),
    ("loader_throughput", ["--models", "nosuch:1"]),
    ("train_proxy", ["--tasks", "nosuch"]),
    ("train_proxy", ["--epochs", "0"]),
    ("train_proxy", ["--models", "nosuch:1"]),
    ("sev_sgs", ["--from-results", "/nonexistent"]),
    ("search_trial", ["--budget-mflops", "-1"]),
    ("search_trial", ["--candidates", "0"]),
    ("search_trial", ["--epochs", "0"]),
    ("train_speed", ["--presets", "nosuch:1"]),
    ("train_speed", ["--presets", "mobilenet:0"]),
    ("allocator", ["--presets", "nosuch:1.0"]),
    ("optimize", ["--models", "nosuch"]),
]


def exit_code(name: str, argv: list[str]) -> int:
    """What ``python -m bench.NAME ARGV`` exits with: a returned code or one raised by SystemExit."""
    main = importlib.import_module(f"bench.{name}").main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert isinstance(code, int)
    return code


@pytest.mark.parametrize(("name", "argv"), BAD, ids=[f"{n} {' '.join(a)}" for n, a in BAD])
def test_bad_input_is_one_line_and_exit_2(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(name, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "Traceback" not in err


OUT = [
    ("allocator", []),
    ("proxy_fidelity", ["--tiny"]),
    ("search_throughput", ["--tiny"]),
    ("search_vs_presets", ["--mode", "front", "--tiny"]),
    ("sev_sgs", ["--tiny"]),
    ("storage_writes", []),
]


@pytest.mark.parametrize(("name", "argv"), OUT, ids=[n for n, _ in OUT])
def test_an_out_that_is_a_file_is_refused_before_any_work(
    name: str, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import allocator

    def no_work(*_: object, **__: object) -> None:
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(allocator, "run_child", no_work)
    out = tmp_path / "a-file"
    out.write_text("")
    assert exit_code(name, [*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (f"cannot write to {out}" in err or f"cannot create the folder {out}" in err)


def test_a_budget_that_no_candidate_meets_is_refused_after_a_bounded_number_of_draws(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_trial, "MAX_DRAWS", 60)
    monkeypatch.setattr(search_trial, "load_proxy", lambda *_, **__: pytest.fail("data loaded before the candidates were sampled"))
    assert search_trial.main(["--budget-mflops", "0.001"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only 0 of 60 sampled candidates meet" in err


def test_storage_writes_refuses_an_out_with_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "round1-before").mkdir()
    assert exit_code("storage_writes", ["--out", str(tmp_path)]) == 2
    assert "already holds rounds of an earlier run" in capsys.readouterr().err


def test_the_help_texts_say_what_the_options_do(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import optimize

    assert "--proxy-task" not in (optimize.__doc__ or "")
    assert f"({proxy_fidelity.TINY_ARCHITECTURES} small architectures" in (proxy_fidelity.__doc__ or "")
    with pytest.raises(SystemExit):
        proxy_fidelity.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"smoke run: {proxy_fidelity.TINY_ARCHITECTURES} small architectures" in help_text
