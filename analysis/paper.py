"""The paper's Table 8 as trial rows, and its findings computed from the table alone.

:func:`paper_frame` turns the packaged Table 8 (:func:`space.table8`) into rows of the same schema
as a study's trials, one dataset's top-1 as ``accuracy``, so that every function of
:mod:`analysis.findings` and :mod:`analysis.plots` applies to the paper and to a user's results alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.findings import (
    DEEPER,
    SHALLOWER,
    WIDTH_THRESHOLD,
    RankCorrelation,
    WidthSummary,
    depth_comparison,
    rank_correlation,
    speed_rank_correlation,
    width_drops,
    width_summary,
)
from analysis.load import AnalysisError, normalize

DATASETS = {"kinetics600": "Kinetics-600", "jester": "Jester", "ucf101": "UCF-101"}
"""Table 8's accuracy columns (``<key>_top1``) and their names."""
PLATFORMS = {"titanxp": "Titan Xp", "tx2": "Jetson TX2"}
"""Table 8's speed columns (``<key>_clips_s``, batch of 8) and their names."""
PAPER_CLIP = (16, 112, 112)
"""The clip of every efficient model's row in Table 8."""
PAPER_BATCH = 8
"""The batch size of Table 8's speeds."""


def paper_frame(dataset: str = "kinetics600", *, resnets: bool = False) -> pd.DataFrame:
    """Table 8 as trial rows (source ``paper``, state ``COMPLETE``), ``dataset``'s top-1 as ``accuracy``.

    ``paper_mflops`` and ``params`` are the table's; ``macs`` is e3d's analytic count of the same
    preset at 16x112x112 and 600 classes (the table gives no multiply-adds), so paper rows can share
    an axis with a search's ``macs``. Each platform's speed is kept as ``<platform>_clips_s`` and as
    ``<platform>_latency_ms`` = 1000 * 8 / clips_s (time per batch of 8, the table's batch size).
    ``resnets`` also includes the four ResNet/ResNeXt rows (default: the 17 efficient models).
    """
    if dataset not in DATASETS:
        raise AnalysisError(f"unknown dataset {dataset!r}; Table 8 has {', '.join(DATASETS)}")
    from profiler import count_spec
    from space import paper_spec, table8

    rows = []
    for i, r in enumerate(table8()):
        if r.model.startswith("res") and not resnets:
            continue
        spec = paper_spec(r.model, width_mult=r.width_mult)
        row = {
            "number": i,
            "state": "COMPLETE",
            "source": "paper",
            "feasible": True,
            "family": r.model,
            "width_mult": r.width_mult,
            "summary": f"{r.model} {r.width_mult:g}x",
            "macs": float(count_spec(spec).macs),
            "params": r.params_m * 1e6,
            "paper_mflops": r.mflops,
            "accuracy": getattr(r, f"{dataset}_top1"),
            "task": DATASETS[dataset],
        }
        for key in PLATFORMS:
            cps = getattr(r, f"{key}_clips_s")
            row[f"{key}_clips_s"] = cps
            row[f"{key}_latency_ms"] = 1000.0 * PAPER_BATCH / cps
        rows.append(row)
    return normalize(pd.DataFrame(rows))


@dataclass(frozen=True)
class DatasetFindings:
    """The width and depth findings on one dataset's accuracies."""

    dataset: str
    drops: pd.DataFrame
    """:func:`analysis.findings.width_drops` of the 17 efficient models."""
    widths: WidthSummary
    depth: pd.DataFrame
    """:func:`analysis.findings.depth_comparison` with the table's MFLOPs as the budget."""


@dataclass(frozen=True)
class PaperFindings:
    """Everything ``e3d paper`` reports, computed from Table 8 alone."""

    datasets: dict[str, DatasetFindings]
    speed: dict[str, RankCorrelation]
    """Per platform: MFLOPs against time per clip over the 17 efficient models."""
    speed_with_resnets: dict[str, RankCorrelation]
    """The same over all 21 rows."""
    platforms: RankCorrelation
    """Speed on Titan Xp against speed on Jetson TX2 (17 efficient models)."""
    transfer: RankCorrelation
    """Kinetics-600 top-1 against UCF-101 top-1 (17 efficient models; finding iii)."""


def paper_findings(*, threshold: float = WIDTH_THRESHOLD) -> PaperFindings:
    """Compute the paper's findings (iii), (iv), (i) and (vi) from Table 8 with the same functions
    that analyse a user's results."""
    per = {}
    for key in DATASETS:
        df = paper_frame(key)
        drops = width_drops(df, threshold=threshold)
        per[key] = DatasetFindings(
            dataset=key,
            drops=drops,
            widths=width_summary(drops, threshold=threshold),
            depth=depth_comparison(df, cost="paper_mflops", deeper=DEEPER, shallower=SHALLOWER),
        )
    eff, everything = paper_frame("kinetics600"), paper_frame("kinetics600", resnets=True)
    both = eff.assign(ucf101=paper_frame("ucf101")["accuracy"].to_numpy())
    return PaperFindings(
        datasets=per,
        speed={k: speed_rank_correlation(eff, cost="paper_mflops", latency=f"{k}_latency_ms") for k in PLATFORMS},
        speed_with_resnets={k: speed_rank_correlation(everything, cost="paper_mflops", latency=f"{k}_latency_ms") for k in PLATFORMS},
        platforms=rank_correlation(eff, "titanxp_clips_s", "tx2_clips_s"),
        transfer=rank_correlation(both, "accuracy", "ucf101"),
    )
