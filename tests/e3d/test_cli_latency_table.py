"""``e3d latency-table`` (build, resume, refusals) and ``e3d profile --latency-table``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from e3d.cli import main
from profiler import latency_table as lt
from space.spec import NetSpec
from tests.e3d.fixtures import run
from tests.traced import traced_types

TINY = [
    "--clip", "16x48x48", "--batch-size", "1", "--threads", "1", "--families", "mobilenetv2", "--samples", "2",
    "--max-entries", "5", "--calibration", "2", "--warmup", "0", "--repeats", "1", "--quiet",
]  # fmt: skip
"""A small plan: Table 8's blocks (always kept) and the mobilenetv2 corners' extremes."""


@pytest.fixture
def fake_timing(monkeypatch: pytest.MonkeyPatch, measure_here: None) -> list[str]:
    """Made-up times instead of measurements (in this process); returns the keys measured, in order."""
    calls: list[str] = []

    def block(b: lt.Block, s: lt.TableSettings, mode: str) -> float:
        calls.append(b.key)
        return 0.01 + b.macs / 1e6 + b.elements / 1e6

    def call(s: lt.TableSettings, mode: str) -> float:
        calls.append("call")
        return 0.001

    def spec(net: NetSpec, s: lt.TableSettings, mode: str) -> float:
        calls.append("network")
        return 5.0 + 0.5 * len(net.layers)

    monkeypatch.setattr(lt, "measure_block", block)
    monkeypatch.setattr(lt, "measure_spec", spec)
    monkeypatch.setattr(lt, "measure_call", call)
    return calls


def test_build_then_resume_measures_nothing_again(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str]) -> None:
    out = tmp_path / "t.json"
    code, stdout, err = run(capsys, "latency-table", "--out", str(out), *TINY)
    assert code == 0, err
    table = lt.LatencyTable.load(out)
    assert table.complete and len(table.networks) == 2 and table.settings.clip == (16, 48, 48)
    assert table.settings.modes == ("eager", "optimized") and table.settings.threads == 1
    # two networks on two paths, then both again (the repeat check), and the empty call on two paths
    assert fake_timing.count("network") == 8 and fake_timing.count("call") == 2 and len(fake_timing) == 2 * len(table.entries) + 10
    assert {s.family for s, _ in table.networks} == {"mobilenetv2"} and table.call_ms == {"eager": 0.001, "optimized": 0.001}
    calibration = {b.key for s, _ in table.networks for b in lt.spec_blocks(s)}
    assert not calibration <= set(table.entries)  # sampled like any block: priced as a prediction prices them
    assert all(o.networks == 2 for o in (table.overhead("eager"), table.overhead("optimized")))
    assert f"wrote {out}: {len(table.entries)} blocks" in stdout and "per-network overhead" in stdout and "empty call 1.0 us" in stdout
    assert "of" in err and "distinct blocks" in err
    assert "optimized: 100% of 2 calibration networks timed again came within +-10% of their first timing" in stdout
    assert "eager: per-network overhead, all: " in stdout and "mobilenetv2: as all (2 of its own, fewer than 4)" in stdout  # was "x sum (2"
    fake_timing.clear()
    code, _, err = run(capsys, "latency-table", "--out", str(out), *TINY)
    assert code == 0, err
    assert fake_timing == []


def test_ctrl_c_says_what_is_saved_and_that_the_same_command_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t.json"
    block = lt.measure_block

    def stop_after_a_few(b: lt.Block, s: lt.TableSettings, mode: str) -> float:
        if len(fake_timing) >= 6:  # the empty call on both paths, then two blocks on both
            raise KeyboardInterrupt
        return block(b, s, mode)

    monkeypatch.setattr(lt, "measure_block", stop_after_a_few)
    code, _, err = run(capsys, "latency-table", "--out", str(out), *TINY)
    saved = lt.LatencyTable.load(out, complete=False)
    assert code == 130 and f"interrupted; {len(saved.entries)} blocks timed so far are saved in {out}: the same command goes on" in err
    assert len(saved.entries) >= 2


def test_a_recalibration_stopped_by_ctrl_c_leaves_the_table_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    before = out.read_bytes()
    timed: list[str] = []

    def stop_at_the_second(net: NetSpec, s: lt.TableSettings, mode: str) -> float:
        timed.append(mode)
        if len(timed) > 1:
            raise KeyboardInterrupt
        return 1.0

    monkeypatch.setattr(lt, "measure_spec", stop_at_the_second)
    code, _, err = run(capsys, "latency-table", "--recalibrate", str(out), "--quiet")
    assert code == 130 and f"interrupted; {out} is unchanged" in err and out.read_bytes() == before


def test_resume_with_other_settings_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str]) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    code, _, err = run(capsys, "latency-table", "--out", str(out), *TINY, "--paths", "eager")
    assert code == 2 and err.count("\n") == 1
    assert "holds a table measured with other settings: modes eager/optimized (asked eager); use another --out" in err


def test_resume_with_another_plan_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str]) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    before = out.read_bytes()
    code, _, err = run(capsys, "latency-table", "--out", str(out), *TINY, "--families", "shufflenetv2")  # was merged: two plans
    last = err.strip().splitlines()[-1]  # after the plan's line
    assert code == 2 and err.count("error") == 1 and "calibration networks that this plan does not (other --families" in last
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "cuda:3"], "CUDA device cuda:3 does not exist"),
        (["--device", "tpu"], "unknown device"),
        (["--precision", "bf16", "--paths", "eager,optimized"], "CPU fp32 only"),
        (["--paths", "fast"], "unknown path fast"),
        (["--families", "nope"], "unknown family"),
        (["--precision", "fp16"], "fp16 is for CUDA devices"),  # was timed block by block, then failed at an average pool
        (["--seed", "-3"], "must be a non-negative integer"),  # was NumPy's ValueError traceback
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, "latency-table", "--out", str(tmp_path / "t.json"), *TINY, *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_profile_prints_predicted_next_to_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str]) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    common = ["mobilenetv2", "--width-mult", "0.45", "--size", "48", "--batch-size", "1", "--latency-table", str(out)]
    code, stdout, err = run(capsys, "profile", *common, "--warmup", "0", "--repeats", "1", "--threads", "1")
    assert code == 0, err
    line = next(ln for ln in stdout.splitlines() if ln.strip().startswith("predicted"))
    spec = lt.LatencyTable.load(out)
    from space.registry import paper_spec

    expected = spec.predict(paper_spec("mobilenetv2", width_mult=0.45).replace(clip=(16, 48, 48)), "eager")
    assert f"{expected:,.2f} ms per batch" in line and "measured" in line and "eager" in line
    after = stdout.splitlines()[stdout.splitlines().index(line) + 1]
    assert "the table's device: 100% of 2 calibration networks timed again came within +-10%" in after
    code, stdout, _ = run(capsys, "profile", *common, "--no-latency", "--json", "--optimize")
    d = json.loads(stdout)
    assert d["latency_predicted_path"] == "optimized" and d["latency_table"]["sha256"] == spec.fingerprint()
    assert d["latency_table_repeat"] == {"networks": 2, "mape": 0.0, "within_10": 100.0, "ratio": 1.0}


@pytest.mark.parametrize(
    ("mangle", "argv", "message"),
    [
        (None, ["--batch-size", "2"], "measured for batch 1 (asked 2)"),
        (None, ["--size", "56"], "measured for clip 16x48x48 (asked 16x56x56)"),
        (None, ["--precision", "bf16"], "measured for precision fp32 (asked bf16)"),
        (None, ["--precision", "auto"], "with --latency-table give the table's: --precision fp32"),
        (lambda t: t[: len(t) // 3], [], "corrupt or truncated JSON"),
        (lambda t: t.replace('"complete": true', '"complete": false'), [], "is incomplete"),
        (lambda t: t.replace("e3d-latency-table/2", "e3d-latency-table/1"), [], "another format (e3d-latency-table/1"),
    ],
)
def test_profile_refuses_a_table_that_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str], mangle: object, argv: list[str], message: str
) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    if mangle is not None:
        out.write_text(mangle(out.read_text()))  # type: ignore[operator]
    base = {"--size": "48", "--batch-size": "1"}
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1]
    flat = [x for kv in base.items() for x in kv]
    code, _, err = run(capsys, "profile", "mobilenetv2", *flat, "--latency-table", str(out), "--no-latency")
    assert code == 2 and message in err and err.count("\n") == 1


def test_profile_of_an_unpriceable_network_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str]) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    code, _, err = run(capsys, "profile", "sevnet", "--size", "48", "--batch-size", "1", "--latency-table", str(out), "--no-latency")
    assert code == 2 and "cannot price" in err and err.count("\n") == 1
    assert main(["profile", "mobilenetv2", "--size", "48", "--batch-size", "1", "--no-latency", "--latency-table", str(out)]) == 0


def test_recalibrate_times_the_networks_again_and_keeps_the_new_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_timing: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t.json"
    assert run(capsys, "latency-table", "--out", str(out), *TINY)[0] == 0
    built = lt.LatencyTable.load(out)
    monkeypatch.setattr(lt, "measure_spec", lambda net, s, mode: 1.1 * (5.0 + 0.5 * len(net.layers)))  # 10% slower now
    code, stdout, err = run(capsys, "latency-table", "--recalibrate", str(out), "--quiet")
    assert code == 0, err
    table = lt.LatencyTable.load(out)
    assert f"eager: the 2 calibration networks took 1.100x their time of {built.created}" in stdout
    assert table.recalibrated >= built.created and table.entries == built.entries
    for mode in table.settings.modes:
        assert table.overhead(mode).scale == pytest.approx(1.1 * built.overhead(mode).scale)
    code, _, err = run(capsys, "latency-table", "--recalibrate", str(tmp_path / "missing.json"))
    assert code == 2 and err.count("\n") == 1 and "cannot read latency table" in err


def test_the_default_table_times_every_block_of_the_default_space() -> None:
    """Every block instead of a designed sample of 1,500, and 40 calibration networks instead of 20 (8 per family for
    its overhead): what priced new networks best on 2026-12-06 (docs/LATENCY.md)."""
    from e3d.cli import build_parser
    from e3d.commands.latency_table import plan
    from search.searchspace import FAMILIES

    blocks, calibration, collected = plan(build_parser().parse_args(["latency-table", "--out", "t.json"]))
    assert len(blocks) == collected > 3000 and len(calibration) == 40 and {s.family for s in calibration[:5]} == set(FAMILIES)


def test_a_build_and_a_recalibration_trace_nothing_in_this_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real timings, every one in a child process: TorchScript's registry of traced types, which nothing
    empties, does not grow here (a default build's grew to 10 GiB in one process)."""
    out = tmp_path / "t.json"
    before = traced_types()
    code, stdout, err = run(capsys, "latency-table", "--out", str(out), *TINY)
    assert code == 0, err
    peaks = re.search(r"peak resident memory: ([\d.]+) GiB in this process, ([\d.]+) GiB in the largest measuring process", stdout)
    assert peaks and float(peaks.group(2)) > 0, stdout
    code, _, err = run(capsys, "latency-table", "--recalibrate", str(out), "--quiet")
    assert code == 0, err
    table = lt.LatencyTable.load(out)
    assert table.complete and table.recalibrated and all(ms["optimized"] > 0 for _, ms in table.networks)
    assert traced_types() <= before + 10  # the probe's own take a few; timing in this process, over 5,000


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_a_device_that_cannot_be_timed_builds_no_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    code, _, err = run(capsys, "latency-table", "--device", device, "--clip", "8x32x32", "--out", str(tmp_path / "t.json"))
    assert code == 2 and device in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--out", "afile/t.json"], "afile is a file, not a folder"),
        (["--out", "t.json", "--samples", "1000000000000"], "--samples: must be at most 100000"),
    ],
)
def test_an_output_or_sample_count_that_cannot_work_is_refused_before_planning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    monkeypatch.setattr("e3d.commands.latency_table.plan", lambda args: pytest.fail("planned"))
    code, _, err = run(capsys, "latency-table", "--clip", "8x32x32", *argv)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
