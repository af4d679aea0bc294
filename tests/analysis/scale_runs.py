"""Hand-made scale runs for the scaling analysis tests: points as ``e3d scale`` writes them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.scaling import ScaleRun


def row(point: str, mode: str, axis: str, macs: float, acc: float, step: int = 0, on_path: bool = False) -> dict[str, object]:
    return {"point": point, "mode": mode, "step": step, "axis": axis, "factors": "{}", "macs": macs, "cost_ratio": macs / 50e6,
            "accuracy_mean": acc, "accuracy_sd": 1.0, "seeds_done": 2, "on_path": on_path, "summary": point}  # fmt: skip


def expand_run() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [row("base/0/base", "base", "base", 50e6, 40.0, 0, True)]
    rows += [row("expand/1/width", "expand", "width", 100e6, 43.0, 1), row("expand/1/depth", "expand", "depth", 100e6, 46.0, 1, True)]
    rows += [row("expand/2/width", "expand", "width", 200e6, 52.0, 2, True), row("expand/2/depth", "expand", "depth", 200e6, 47.0, 2)]
    points = pd.DataFrame(rows)
    return points, points[points["on_path"]].reset_index(drop=True)


def versus_run() -> ScaleRun:
    """``expand_run`` with width alone at the cost of each step: 5 points behind the path at step 1, 0.5 at step 2."""
    points, path = expand_run()
    versus = [
        row("versus/1/width@1", "versus", "width only", 101e6, 41.0, 1),
        row("versus/2/width@2", "versus", "width only", 199e6, 51.5, 2),
    ]
    return ScaleRun(pd.concat([points, pd.DataFrame(versus)], ignore_index=True), path)


def save_run(run: ScaleRun, folder: Path) -> Path:
    """Write ``run`` as a scale run folder (``points.csv``, ``path.csv``) at ``folder``, created."""
    folder.mkdir(parents=True, exist_ok=True)
    run.points.to_csv(folder / "points.csv", index=False)
    run.path.to_csv(folder / "path.csv", index=False)
    return folder
