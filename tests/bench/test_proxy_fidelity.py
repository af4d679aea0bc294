"""bench/proxy_fidelity.py end to end on tiny settings: tables, resume after Ctrl-C, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from bench import proxy_fidelity as pf


def test_bad_candidate_protocols_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("nocolon", "reference:epochs=2", "x:epochs=two", "x:color=red", "x:precision=fp64"):
        assert pf.main(["--tiny", "--out", str(tmp_path), "--candidate", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --candidate") and "\n" not in err
    assert pf.main(["--tiny", "--out", str(tmp_path), "--seeds", "1"]) == 2
    assert pf.main(["--tiny", "--out", str(tmp_path), "--reference-seeds", "-1"]) == 2
    assert pf.parse_candidate("auto:precision=auto", pf.DEFAULT)[1].precision == "auto"
    name, proxy = pf.parse_candidate("e5:epochs=5,clip=16x64x64,lr=0.1", pf.DEFAULT)
    assert name == "e5" and proxy.epochs == 5 and proxy.clip == (16, 64, 64) and proxy.lr == 0.1
    assert pf.training_compute(pf.REFERENCE) / pf.training_compute(pf.DEFAULT) >= 3
    assert pf.training_compute(pf.TINY_REFERENCE) / pf.training_compute(pf.TINY) >= 3


def test_precision_applies_to_every_protocol_unless_a_candidate_sets_its_own() -> None:
    args = pf.parse(["--precision", "auto", "--candidate", "cos:schedule=cosine", "--candidate", "b:precision=bf16", "--threads", "1"])
    protocols = pf.protocols_of(args)
    assert list(protocols) == ["default", "cos", "b", "reference"]
    assert {n: p.precision for n, p in protocols.items()} == {"default": "auto", "cos": "auto", "b": "bf16", "reference": "auto"}
    assert protocols["reference"].epochs == 2 * protocols["default"].epochs and all(p.threads == 1 for p in protocols.values())
    assert {p.precision for p in pf.protocols_of(pf.parse(["--reference-seeds", "0"])).values()} == {"fp32"}


def trials(out: Path) -> dict[str, int]:
    url = f"sqlite:///{out / 'fidelity.db'}"
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url, include_best_trial=False)}


@pytest.mark.slow
def test_tiny_fidelity_end_to_end_resumes_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import search.train

    real = search.train.fit
    calls = {"n": 0}

    def counting(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3 and not calls.get("resumed"):
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(search.train, "fit", counting)
    args = ["--tiny", "--out", str(tmp_path), "--quiet"]
    assert pf.main(args) == 130
    assert "Continue with:" in capsys.readouterr().err
    calls.update(n=0, resumed=1)
    assert pf.main(args) == 0
    # 3 architectures x (2 default seeds + 1 reference seed); 2 finished before Ctrl-C are kept
    assert calls["n"] == 9 - 2
    out = capsys.readouterr().out
    runs = pd.read_csv(tmp_path / "runs.csv")
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    assert len(runs) == 9 and runs["architecture"].nunique() == 3 and (runs["cpu_seconds"] > 0).all()
    assert sorted(epochs.groupby("protocol")["epoch"].max().items()) == [("default", 2), ("reference", 3)]
    assert "Spearman vs reference" in out and "| default | 2 | 3 |" in out and "Rung schedule" in out and "Replaying" in out
    assert (tmp_path / "fidelity.md").read_text().strip() == out.strip()
    # once more: nothing is retrained, the same tables come out
    held = trials(tmp_path)
    calls["n"] = 0
    assert pf.main(args) == 0
    assert calls["n"] == 0 and trials(tmp_path) == held
    assert pd.read_csv(tmp_path / "runs.csv").equals(runs)


def synthetic_runs(shift: dict[str, float]) -> pd.DataFrame:
    """Four architectures x 2 seeds under "default", and under "auto" moved by ``shift`` per architecture."""
    rows = []
    for i, arch in enumerate("abcd"):
        for seed, noise in enumerate((-0.5, 0.5)):
            base = 20.0 + 10.0 * i + noise
            rows.append((arch, "default", seed, base, 60.0, 1e6 * (i + 1), "fp32 eager"))
            rows.append((arch, "auto", seed, base + shift.get(arch, 0.0), 40.0, 1e6 * (i + 1), "fp32 channels-last"))
    return pd.DataFrame(rows, columns=["architecture", "protocol", "seed", "accuracy", "cpu_seconds", "macs", "precision"])


def test_a_candidate_precision_is_compared_with_the_default_architecture_by_architecture() -> None:
    same = "\n".join(pf.against_default(synthetic_runs({}), chance=10.0))
    assert "| auto | 2 | 4 | 1.00 |" in same and "auto (ran as fp32 channels-last x8) vs default: 4 of 4 architectures tie" in same
    moved = "\n".join(pf.against_default(synthetic_runs({"b": 8.0}), chance=10.0))
    assert "3 of 4 architectures tie" in moved and "differ: b (win +8.0 pp" in moved
    assert "over the architectures, tie: +2.0 pp" in moved and "paired t-test over 4 items" in moved
    steady = "\n".join(pf.against_default(synthetic_runs(dict(zip("abcd", (1.0, 1.2, 0.8, 1.1), strict=True))), chance=10.0))
    assert "4 of 4 architectures tie" in steady and "over the architectures, win: +1.0 pp" in steady


def test_the_report_without_a_reference_compares_with_the_default() -> None:
    import dataclasses

    protocols = {"default": pf.TINY, "auto": dataclasses.replace(pf.TINY, precision="auto")}
    epochs = pd.DataFrame(columns=["architecture", "protocol", "seed", "epoch", "accuracy"])
    text = pf.report(synthetic_runs({}), epochs, protocols, list("abcd"), chance=10.0, command="cmd")
    assert "Spearman vs default" in text and "Spearman vs reference" not in text
    assert "| d | 4.0 | 50.0 ± 0.7 (n=2) | 50.0 ± 0.7 (n=2) |" in text


def test_the_replay_table_loses_a_late_bloomer_when_it_arrives_last() -> None:
    runs = synthetic_runs({})
    # epoch 1: d (the best at the end) is the worst, so with the default warm-up of 4 trials it is
    # stopped exactly when it arrives fourth: in about a quarter of the orders
    first = {"a": 30.0, "b": 40.0, "c": 50.0, "d": 10.0}
    rows = [(r.architecture, "default", r.seed, e, first[r.architecture] if e == 1 else r.accuracy)
            for r in runs[runs["protocol"] == "default"].itertuples() for e in (1, 2)]  # fmt: skip
    epochs = pd.DataFrame(rows, columns=["architecture", "protocol", "seed", "epoch", "accuracy"])
    row = next(line for line in pf.replay_table(runs, epochs, 2) if line.startswith("| 1 |"))
    kept = int(row.split("|")[3].strip().rstrip("%"))
    assert 60 <= kept <= 90


def test_the_fidelity_is_also_reported_without_the_architectures_at_chance() -> None:
    runs = synthetic_runs({})
    ref = runs[runs["protocol"] == "default"].assign(protocol="reference")
    ref = ref[ref["seed"] == 0].assign(accuracy=lambda d: d["accuracy"].where(d["architecture"] != "b", 99.0))
    runs = pd.concat([runs, ref], ignore_index=True)
    runs.loc[runs["architecture"] == "a", "accuracy"] = 10.0  # a is at chance everywhere
    protocols = {"default": pf.TINY, "reference": pf.TINY_REFERENCE}
    epochs = pd.DataFrame(columns=["architecture", "protocol", "seed", "epoch", "accuracy"])
    text = pf.report(runs, epochs, protocols, list("abcd"), chance=10.0, command="cmd")
    assert "Without the 1 architectures at chance" in text
    assert "under default: a (1)" in text and "under reference: a (1)" in text
    assert "auto vs default, Spearman with the reference: tie: +0.00 in Spearman, p=1 (paired bootstrap" in text
    # all four: a last in both, b first only in the reference; without a: b, c, d reversed at the top
    assert "| default | 2 | 4 | 0.40 |" in text and "| default | 2 | 3 | -0.50 |" in text


def test_the_replay_table_says_why_it_is_missing_instead_of_failing() -> None:
    runs = synthetic_runs({})
    one_epoch = [(r.architecture, "default", r.seed, 1, r.accuracy) for r in runs[runs["protocol"] == "default"].itertuples()]
    columns = ["architecture", "protocol", "seed", "epoch", "accuracy"]
    assert pf.replay_table(runs, pd.DataFrame(one_epoch, columns=columns), 2)[0].startswith("No pruning replay: no default run reached")
    gaps = [(a, p, s, 2 if i % 2 else 1, acc) for i, (a, p, s, _, acc) in enumerate(one_epoch)]  # each run lacks an epoch
    assert pf.replay_table(runs, pd.DataFrame(gaps, columns=columns), 2)[0].startswith("No pruning replay: no default run has all")


def test_the_report_holds_runs_another_process_finished_while_this_one_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.distributions import CategoricalDistribution

    choices: dict[str, dict[Any, None]] = {}
    for _, params in pf.fid.architecture_set():
        for k, v in params.items():
            choices.setdefault(k, {})[v] = None

    def add_run(storage: Any, protocol: str, label: str, params: dict[str, Any], seed: int) -> None:
        study = optuna.create_study(study_name=f"fidelity.{protocol}", storage=storage, load_if_exists=True, direction="maximize")
        dists = {k: CategoricalDistribution(tuple(choices[k])) for k in params}
        attrs = {"label": label, "seed": seed, "accuracy": 20.0 + seed, "cpu_seconds": 1.0, "family": params["family"], "macs": 1}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=1.0, user_attrs=attrs))

    def fake_run(storage: Any, name: str, proxy: Any, archs: list[Any], seeds: tuple[int, ...], *, quiet: bool) -> int:
        for label, params in archs:
            for seed in seeds:
                if (name, label, seed) != ("default", archs[0][0], 1):  # that run is another process's
                    add_run(storage, name, label, params, seed)
        if name == "reference":  # meanwhile the other process finished its default run
            add_run(storage, "default", archs[0][0], archs[0][1], 1)
        return 10

    monkeypatch.setattr(pf, "run_protocol", fake_run)
    assert pf.main(["--tiny", "--out", str(tmp_path), "--quiet"]) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs[runs["protocol"] == "default"]) == 2 * pf.TINY_ARCHITECTURES
