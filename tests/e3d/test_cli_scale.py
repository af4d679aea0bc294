"""``e3d scale``: a tiny expansion end to end (its path and CSV agree), resuming after Ctrl-C, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tests.e3d.fixtures import run

TINY = ["--proxy-clip", "8x32x32", "--train-samples", "32", "--val-samples", "16", "--epochs", "1", "--batch-size", "8", "--quiet"]
EXPAND = ["scale", "mobilenetv2", "--width-mult", "0.2", "--expand", "--to", "150M", "--axes", "width,depth,frames"]


def sized_fit(calls: list[Any], *, interrupt_at: int | None = None) -> Any:
    """A stand-in for training: accuracy grows with the number of layers (so depth wins every step)."""
    from search.train import FitResult

    def fit(model: Any, train: Any, val: Any, config: Any, **_: Any) -> FitResult:
        calls.append(model)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        acc = 20.0 + 2.0 * math.sqrt(len(list(model.modules())))
        return FitResult(acc, acc, 1, 0.01, [])

    return fit


def check_outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The path and the points agree, and every output is there."""
    points, path = pd.read_csv(out / "points.csv"), pd.read_csv(out / "path.csv")
    assert list(points["point"][points["on_path"]]) == list(path["point"])
    merged = path.merge(points, on="point", suffixes=("", "_p"))
    assert (merged["macs"] == merged["macs_p"]).all() and (merged["accuracy_mean"] == merged["accuracy_mean_p"]).all()
    assert path["macs"].is_monotonic_increasing and list(path["step"]) == list(range(len(path)))
    assert points["accuracy_mean"].notna().all()
    assert (out / "curves.png").stat().st_size > 1000 and "## Expansion path" in (out / "summary.md").read_text()
    from profiler.cpu import detect_cpu

    cpu = detect_cpu().describe()  # the model name and its ISA: "AMD EPYC" alone names CPUs with and without AVX-512
    assert (points["cpu"] == cpu).all() and f"Points trained on {cpu}; drawn" in (out / "summary.md").read_text()
    assert set(json.loads((out / "scale.json").read_text())) >= {"base", "mode", "axes", "to_macs"}
    return points, path


@pytest.mark.slow
def test_an_expansion_runs_to_the_target_and_its_path_and_csv_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("search.train.fit", sized_fit(calls))
    timed: list[Any] = []

    def meter(mode: str) -> Any:
        def measure(spec: Any) -> float:
            timed.append(spec)
            return 7.0

        return measure

    monkeypatch.setattr("search.study.latency_meter", meter)
    code, out, err = run(capsys, *EXPAND, "--latency", "--out", str(tmp_path), *TINY)
    assert code == 0, err
    points, path = check_outputs(tmp_path)
    assert (points["latency_ms"] == 7.0).all() and len(timed) == len(points)
    assert list(path["axis"]) == ["base"] + ["depth"] * (len(path) - 1)  # the toy accuracy rewards layers
    assert path["macs"].iloc[-1] >= 0.95 * 150e6 and len(path) >= 3
    assert len(calls) == len(points) == 1 + 3 * (len(path) - 1)  # one run per point, each step tries every axis
    trained = pd.read_csv(tmp_path / "trials.csv")
    assert len(trained) == len(points)
    assert "expansion path: base" in out and "depth (steps)" in out
    frames = points[points["axis"] == "frames"]
    assert set(frames["proxy_clip"]) != {"8x32x32"}  # a frames point trains on longer proxy clips
    code, out, err = run(capsys, "scale", "--resume", "--out", str(tmp_path), "--quiet")
    assert code == 0 and len(calls) == len(points)  # a finished study trains nothing more


@pytest.mark.slow
def test_ctrl_c_keeps_every_trained_point_and_resume_finishes_the_same_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("search.train.fit", sized_fit(calls, interrupt_at=3))
    code, _, err = run(capsys, *EXPAND, "--out", str(tmp_path / "a"), *TINY)
    assert code == 130 and "e3d scale --resume" in err
    assert pd.read_csv(tmp_path / "a" / "points.csv")["accuracy_mean"].notna().sum() == 2
    assert pd.read_csv(tmp_path / "a" / "trials.csv")["status"].tolist().count("trained") == 2  # was not written
    summary = (tmp_path / "a" / "summary.md").read_text()  # what was trained so far, drawn
    assert "**Unfinished:** 2 of the 4 points planned so far have all 1 seed(s)" in summary
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    monkeypatch.setattr("search.train.fit", sized_fit(calls))
    code, _, err = run(capsys, "scale", "--resume", "--out", str(tmp_path / "a"), "--quiet")
    assert code == 0, err
    assert "Unfinished" not in (tmp_path / "a" / "summary.md").read_text()
    monkeypatch.setattr("search.train.fit", sized_fit([]))
    assert run(capsys, *EXPAND, "--out", str(tmp_path / "b"), *TINY)[0] == 0
    a, b = check_outputs(tmp_path / "a"), check_outputs(tmp_path / "b")
    assert a[1].drop(columns="summary").equals(b[1].drop(columns="summary"))


def test_ctrl_c_while_a_point_is_timed_runs_that_point_again_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped before training starts (here while its latency is timed), a point is still interrupted, not
    failed: the resumed run trains it, and every point ends with an accuracy."""
    timed: list[Any] = []

    def meter(mode: str) -> Any:
        def measure(spec: Any) -> float:
            timed.append(spec)
            if len(timed) == 2:
                raise KeyboardInterrupt
            return 7.0

        return measure

    monkeypatch.setattr("search.study.latency_meter", meter)
    monkeypatch.setattr("search.train.fit", sized_fit([]))
    sweep = ["scale", "mobilenetv2", "--width-mult", "0.2", "--axes", "width", "--factors", "2", "--latency", *TINY]
    code, _, err = run(capsys, *sweep, "--out", str(tmp_path))
    assert code == 130 and "e3d scale --resume" in err
    stopped = optuna.load_study(study_name="e3d-scale", storage=f"sqlite:///{tmp_path / 'study.db'}").get_trials(states=(TrialState.FAIL,))
    assert len(stopped) == 1 and stopped[0].user_attrs.get("interrupted")  # else the resumed run would wait for it forever
    code, _, err = run(capsys, "scale", "--resume", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    points = pd.read_csv(tmp_path / "points.csv")
    assert len(points) == 2 and points["accuracy_mean"].notna().all() and (points["latency_ms"] == 7.0).all()


def test_a_network_trained_under_another_point_is_not_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A factor of 1 on every axis is the base network: its run is reused, not repeated."""
    import optuna

    calls: list[Any] = []
    monkeypatch.setattr("search.train.fit", sized_fit(calls))
    args = [*EXPAND[:4], "--axes", "width,depth", "--factors", "1,2", "--out", str(tmp_path)]
    code, out, err = run(capsys, *args, *TINY)
    assert code == 0, err
    points = pd.read_csv(tmp_path / "points.csv")
    assert list(points["point"]) == ["base/0/base", "axes/0/widthx1", "axes/0/widthx2", "axes/0/depthx1", "axes/0/depthx2"]
    ones = points[points["point"].str.endswith("x1")]
    assert (ones["summary"] == points["summary"].iloc[0]).all() and (ones["accuracy_mean"] == points["accuracy_mean"].iloc[0]).all()
    assert len(calls) == 3  # the base, width x2, depth x2
    study = optuna.load_study(study_name="e3d-scale", storage=f"sqlite:///{tmp_path / 'study.db'}")
    reused = {t.user_attrs["point"]: t for t in study.get_trials() if "reused_from" in t.user_attrs}
    assert set(reused) == {"axes/0/widthx1", "axes/0/depthx1"} and not any(t.user_attrs["trained"] for t in reused.values())
    base = study.trials[reused["axes/0/widthx1"].user_attrs["reused_from"]]
    assert base.user_attrs["point"] == "base/0/base" and base.user_attrs["trained"]
    assert f"(the run of trial {base.number}: same network and seed)" in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shufflenetv2", "--width-mult", "0.5", "--axes", "width,expansion"], "expansion: shufflenetv2 has no expansion axis"),
        (["mobilenetv2", "--axes", "width", "--factors", "-1"], "width: factor must be a positive number, got -1.0"),
        (["mobilenet", "--axes", "width:9"], "width:9: mobilenet has stages 0..4, got stage 9"),  # trained the base, then a KeyError
        (["shufflenet", "--width-mult", "0.5", "--axes", "frames", "--factors", "0.25"], "frames: no clip with T near 4.0 (from 16)"),
        (["shufflenet", "--width-mult", "0.5", "--axes", "resolution", "--factors", "0.1"], "resolution: no clip with H=W near 11.2"),
        (
            ["shufflenet", "--width-mult", "0.5", "--axes", "resolution", "--factors", "0.25"],
            "resolution: factor 0.25 is below what the strides allow at the proxy clip: shufflenet w0.5",
        ),
        (["mobilenetv2", "--axes", "resolution", "--factors", "0"], "resolution: factor must be a positive number, got 0.0"),
        (["mobilenetv2", "--width-mult", "0.2", "--expand", "--to", "20M"], "--to 20M is below the base's cost (54.1 M"),
        (
            ["mobilenetv2", "--width-mult", "0.2", "--expand", "--to", "56M"],
            "--to 56M is within 5% of the base's cost (54.1 M multiply-adds per clip), where the expansion stops before its "
            "first step; give at least --to 57M",
        ),  # was trained the base alone, then a KeyError
        (["mobilenetv2", "--expand"], "an expansion needs a target cost"),
        (["mobilenetv2", "--axes", "width,width", "--factors", "2"], "axis width is given twice; give each once"),  # was twice a point
        (["mobilenetv2", "--versus", "width"], "--versus compares an --expand path"),
        (["mobilenetv2", "--step", "3"], "--step sets the cost ratio of --expand's steps"),  # was ignored
        (["mobilenetv2", "--expand", "--to", "5000M", "--grid", "3"], "--grid is for --compound"),  # was ignored
        (["mobilenetv3"], "unknown model 'mobilenetv3'"),
        (["resnet18"], "e3d scale trains the search space's families"),
        ([str(Path(__file__))], "not valid JSON"),
    ],
    ids=[
        "axis-lacking",
        "factor-negative",
        "stage-beyond-the-last",
        "frames-below-strides",
        "resolution-below-strides",
        "resolution-below-strides-at-the-proxy-clip",
        "factor-zero",
        "target-below-base",
        "target-near-base",
        "no-target",
        "axis-twice",
        "versus-alone",
        "step-without-expand",
        "grid-without-compound",
        "unknown",
        "resnet",
        "not-a-spec",
    ],
)
def test_bad_input_is_one_line_with_exit_2(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, _, err = run(capsys, "scale", *args, "--out", str(out), "--quiet")
    assert code == 2 and message in err, err
    assert err.strip().startswith("e3d scale: error:") and "\n" not in err.strip() and "Traceback" not in err
    assert not out.exists(), "bad input left a run folder (and an empty study.db) behind"


def test_an_expansion_where_no_axis_can_grow_reports_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ShuffleNet at 0.25 cannot take 1.5x the frames (its strides): the expansion stops at the base."""
    monkeypatch.setattr("search.train.fit", sized_fit([]))
    args = ["scale", "shufflenet", "--width-mult", "0.25", "--expand", "--to", "200M", "--axes", "frames", "--step", "1.5"]
    code, out, err = run(capsys, *args, "--out", str(tmp_path), *TINY, "--proxy-clip", "16x48x48")
    assert code == 0, err  # was KeyError: 'step' after training the base, and no curves.png nor summary.md
    summary = (tmp_path / "summary.md").read_text()
    assert "expansion path: base (31 M)\n" in out and "(no expansion steps" in summary and "no axis can grow" in summary
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert run(capsys, "scale", "--resume", "--out", str(tmp_path), "--quiet")[0] == 0
    code, _, err = run(capsys, "analyze", "--scale", str(tmp_path), "--out", str(tmp_path / "analysis"))
    assert code == 0, err


def test_resuming_nothing_is_one_line_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, _, err = run(capsys, "scale", "--resume", "--out", str(out), "--quiet")
    assert code == 2 and f"nothing to resume in {out}: no study.db there" in err and not out.exists()


@pytest.mark.parametrize(
    ("given", "flags"),
    [
        (["--seeds", "3", "--epochs", "2"], "--seeds, --epochs"),
        (["--axes", "width", "--factors", "4"], "--axes, --factors"),
        (["--latency"], "--latency"),
        (["--expand", "--to", "300M", "--step", "3"], "--expand, --to, --step"),
        (["mobilenetv2"], "TARGET mobilenetv2"),
    ],
)
def test_resuming_with_the_studys_own_settings_given_is_refused(
    given: list[str], flags: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were ignored (exit 0): a resumed study goes on with its stored plan, as ``e3d sweep --resume`` says."""
    (tmp_path / "study.db").touch()
    code, _, err = run(capsys, "scale", "--resume", *given, "--out", str(tmp_path), "--quiet")
    assert code == 2 and f"{flags}: a resumed study goes on with the study's own " in err and "\n" not in err.strip()


def test_the_help_names_only_options_scale_has(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scale", "--help")
    assert code == 0 and "--jobs N" in out and "--seeds N" in out
    assert "--seed:" not in out and "--seed " not in out  # --jobs spoke of a search's --seed, which scale has not


def test_ratios_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "scale", "mobilenetv2", "--ratios", "0.5,0", "--out", str(tmp_path))
    assert code == 2 and "must be positive numbers" in err and "\n" not in err.strip()


@pytest.mark.slow
def test_a_tiny_real_expansion_trains_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None) -> None:
    code, _, err = run(capsys, *EXPAND[:5], "--expand", "--to", "80M", "--axes", "width,depth", "--out", str(tmp_path), *TINY)
    assert code == 0, err
    points, path = check_outputs(tmp_path)
    assert len(points) == 3 and len(path) == 2 and path["axis"].iloc[1] in ("width", "depth")


@pytest.mark.slow
def test_single_axis_sweeps_and_compound_scaling_write_their_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", sized_fit([]))
    base = ["scale", "mobilenetv2", "--width-mult", "0.2", *TINY]
    code, out, err = run(capsys, *base, "--axes", "width,frames", "--ratios", "0.5,2", "--out", str(tmp_path / "axes"))
    assert code == 0, err
    points = pd.read_csv(tmp_path / "axes" / "points.csv")
    assert list(points["point"]) == ["base/0/base", "axes/0/width@0.5", "axes/0/width@2", "axes/0/frames@0.5", "axes/0/frames@2"]
    assert (points["cost_ratio"] - points["target_ratio"]).abs().max() < 0.15
    proxy_t = {r["point"]: int(r["proxy_clip"].split("x")[0]) for _, r in points.iterrows()}
    assert proxy_t["axes/0/width@2"] == 8 and proxy_t["axes/0/frames@0.5"] < 8 < proxy_t["axes/0/frames@2"]  # scaled clips
    assert "width" in out and "frames" in out and "Expansion path" not in (tmp_path / "axes" / "summary.md").read_text()
    code, out, err = run(capsys, *base, "--compound", "--axes", "width,depth", "--ratios", "3", "--out", str(tmp_path / "compound"))
    assert code == 0, err
    points = pd.read_csv(tmp_path / "compound" / "points.csv")
    assert list(points["mode"]) == ["base", "grid", "grid", "grid", "compound"]
    exponents = json.loads((tmp_path / "compound" / "scale.json").read_text())["exponents"]
    assert set(exponents) <= {"width", "depth"} and "compound exponents" in out
    assert points["cost_ratio"].iloc[-1] == pytest.approx(3.0, rel=0.1)


@pytest.mark.slow
def test_two_local_jobs_train_every_point_and_seed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*EXPAND[:5], "--expand", "--to", "80M", "--axes", "width,depth", "--seeds", "2", "--jobs", "2", "--out", str(tmp_path)]
    code, _, err = run(capsys, *args, *TINY)
    assert code == 0, err
    assert "2 local jobs, 1 torch thread each" in err
    points, _ = check_outputs(tmp_path)
    assert len(points) == 3
    study = optuna.load_study(study_name="e3d-scale", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trained = [t.user_attrs for t in study.get_trials() if t.user_attrs.get("trained")]
    assert sorted((a["point"], a["seed"]) for a in trained) == sorted((p, s) for p in points["point"] for s in (0, 1))
    assert len({a["worker"] for a in trained}) == 2


@pytest.mark.slow
def test_joining_a_study_with_another_plan_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("search.train.fit", sized_fit([]))
    sweep = ["scale", "mobilenetv2", "--width-mult", "0.2", "--axes", "width", *TINY, "--out", str(tmp_path)]
    assert run(capsys, *sweep, "--factors", "2")[0] == 0
    code, _, err = run(capsys, *sweep, "--factors", "3")
    assert code == 2 and "exists with another scaling plan; pass --resume" in err


def test_another_study_is_not_written_over_a_studys_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("search.train.fit", sized_fit(calls))
    sweep = ["scale", "mobilenetv2", "--width-mult", "0.2", "--axes", "width", *TINY, "--out", str(tmp_path)]
    assert run(capsys, *sweep, "--factors", "2", "--study-name", "s1")[0] == 0
    assert json.loads((tmp_path / "scale.json").read_text())["study"] == "s1"
    outputs = {f: (tmp_path / f).read_bytes() for f in ("points.csv", "path.csv", "scale.json", "trials.csv")}
    code, _, err = run(capsys, *sweep, "--factors", "3", "--study-name", "s2")
    assert code == 2 and f"{tmp_path} holds the scale outputs of study 's1', which study 's2' would replace; give another --out" in err
    assert len(calls) == 2 and {f: (tmp_path / f).read_bytes() for f in outputs} == outputs  # were replaced by s2's
    settings = json.loads((tmp_path / "scale.json").read_text())
    del settings["study"]  # written before scale.json named its study: the storage tells
    (tmp_path / "scale.json").write_text(json.dumps(settings))
    code, _, err = run(capsys, *sweep, "--factors", "3", "--study-name", "s2")
    assert code == 2 and "holds the scale outputs of another study, which study 's2' would replace" in err
    assert run(capsys, "scale", "--resume", "--study-name", "s1", "--out", str(tmp_path), "--quiet")[0] == 0


def test_ctrl_c_never_prints_the_storages_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command to continue names --storage with its password replaced (a PostgreSQL URL, served here by SQLite)."""
    from search import study as st

    open_storage = st.open_storage
    monkeypatch.setattr(st, "check_storage_url", lambda url: None)
    monkeypatch.setattr(st, "open_storage", lambda url, **kw: open_storage(st.sqlite_url(tmp_path / "pg.db"), **kw))
    monkeypatch.setattr("search.train.fit", sized_fit([], interrupt_at=1))
    url = "postgresql://e3d:s3cret-pw@db.example:5432/e3d"
    code, out, err = run(capsys, *EXPAND, "--storage", url, "--out", str(tmp_path / "run"), *TINY)
    assert code == 130 and "e3d scale --resume" in err and "--storage postgresql://***@db.example" in err
    assert "s3cret-pw" not in out + err
