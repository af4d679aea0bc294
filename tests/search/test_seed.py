"""``--seed`` alone decides what a worker proposes; workers are seeded from (seed, worker index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from e3d.cli import main
from search import study as st
from tests.search.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]


def candidate_fit(model: Any, train: Any, val: Any, config: Any, *, on_epoch: Any = None, **_: Any) -> Any:
    """A training stand-in whose accuracy depends on the network (its parameter count), so that TPE
    has a landscape to model once its random start-up trials are done."""
    from search.train import FitResult

    acc = float(sum(p.numel() for p in model.parameters()) % 97)
    if on_epoch is not None:
        on_epoch(0, {"val_top1": acc, "val_loss": 1.0, "train_loss": 1.0})
    return FitResult(acc, acc, 1, 0.01, [])


def search(out: Path, seed: int) -> list[str]:
    """Run a fresh search with ``seed`` (training stood in by :func:`candidate_fit`) and return the
    specs it proposed, in trial order."""
    import search.train

    search.train.fit = candidate_fit  # type: ignore[assignment]
    n = st.TPE_STARTUP + 3  # past the random start-up, so TPE's own proposals are compared too
    args = ["search", *TINY, "--out", str(out), "--no-baselines", "--trials", str(n), "--seed", str(seed)]
    assert main(args) == 0
    study = optuna.load_study(study_name="e3d-search", storage=f"sqlite:///{out / 'study.db'}")
    assert study.user_attrs[f"{st.WORKER_ATTR}0"] == st.worker_id()
    return [json.dumps(t.params, sort_keys=True) for t in study.get_trials(deepcopy=False)]


def search_in_another_process(out: Path, seed: int) -> list[str]:
    """:func:`search` in a fresh Python process (another pid, as a rerun on another day would be)."""
    code = (
        "import json; from pathlib import Path; from tests.search.test_seed import search; "
        f"print(json.dumps(search(Path({str(out)!r}), {seed})))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    result: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_same_seed_same_candidates_other_seed_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("search.train.fit", candidate_fit)
    first = search(tmp_path / "a", 3)
    again = search_in_another_process(tmp_path / "b", 3)
    other = search(tmp_path / "c", 4)
    assert len(first) > st.TPE_STARTUP
    assert first == again
    assert first != other


def test_workers_claim_distinct_indices_and_seeds(tmp_path: Path) -> None:
    storage = st.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    assert [st.claim_worker_index(study, me) for me in ("h:1", "h:2", "h:1")] == [0, 1, 2]
    assert study.user_attrs[f"{st.WORKER_ATTR}1"] == "h:2"
    seeds = {st.sampler_seed(s, i) for s in (0, 1) for i in (0, 1)}
    assert len(seeds) == 4
    assert st.sampler_seed(7, 2) == st.sampler_seed(7, 2)  # a pure function: no pid, no clock
