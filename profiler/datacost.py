"""Data-dependent cost: what a network with SGS layers costs on the clips of a dataset.

With Similarity Guided Sampling the number of temporal bins after each SGS layer, and so every
multiply-add after it, depends on the clip. :func:`dataset_bins` runs a model (in eval mode, as far
as its last SGS layer) over a dataset and records the bins each clip keeps; :func:`data_cost` turns
them into exact per-clip counts with the analytic counter (each distinct tuple of bins is traced
once) and summarises them as min / mean / max. :func:`clip_counts` is the full count of one clip.
A network without SGS costs the same on every clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from profiler.costs import Cost
from profiler.counting import Counts, count_spec, spec_totals
from space.modules import Net
from space.spec import NetSpec

Bins = tuple[int, ...]
"""Bins one clip keeps at each SGS layer of a spec, in the order of ``spec.sgs``."""


@dataclass(frozen=True)
class DataCost:
    """Per-clip costs of a spec over a set of clips (all per clip of ``spec.clip``)."""

    spec: NetSpec
    bins: tuple[Bins, ...]
    """The bins of every clip, in dataset order."""
    costs: dict[Bins, Cost]
    """The cost of each distinct tuple of bins."""
    upper: Cost
    """The most expensive clip any input can be: every SGS layer at its maximum."""

    @property
    def macs(self) -> list[int]:
        """Multiply-adds of every clip."""
        return [self.costs[b].macs for b in self.bins]

    @property
    def min_macs(self) -> int:
        """The cheapest clip's multiply-adds."""
        return min(self.macs)

    @property
    def mean_macs(self) -> float:
        """Mean multiply-adds over the clips."""
        return fmean(self.macs)

    @property
    def max_macs(self) -> int:
        """The most expensive clip's multiply-adds."""
        return max(self.macs)

    def mean_cost(self) -> Cost:
        """Mean of every cost field over the clips, rounded to integers (params do not vary)."""
        costs = [self.costs[b] for b in self.bins]
        return Cost(*(round(fmean(c[i] for c in costs)) for i in range(len(Cost._fields))))

    def mean_bins(self) -> list[float]:
        """Mean bins kept at each SGS layer."""
        return [fmean(b[i] for b in self.bins) for i in range(len(self.spec.sgs))]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-clip lists)."""
        return {
            "clips": len(self.bins),
            "macs_min": self.min_macs,
            "macs_mean": round(self.mean_macs, 1),
            "macs_max": self.max_macs,
            "macs_upper_bound": self.upper.macs,
            "sgs": [
                {"after_stage": layer.after_stage, "max_bins": layer.bins, "mean_bins": round(m, 3), "min": lo, "max": hi}
                for layer, m, lo, hi in zip(
                    self.spec.sgs,
                    self.mean_bins(),
                    [min(b[i] for b in self.bins) for i in range(len(self.spec.sgs))],
                    [max(b[i] for b in self.bins) for i in range(len(self.spec.sgs))],
                    strict=True,
                )
            ],
        }


def data_cost(spec: NetSpec, bins: Sequence[Bins]) -> DataCost:
    """Exact costs of ``spec`` for clips that keep ``bins`` (one tuple per clip, e.g. from :func:`dataset_bins`).

    ``spec`` may have another clip size than the one the bins were measured at (the budget clip
    rather than the proxy clip), as long as its SGS layers are the same.
    """
    if not bins:
        raise ValueError("no clips: give the bins of at least one clip")
    clips = tuple(tuple(int(k) for k in b) for b in bins)
    costs = {b: spec_totals(spec, sgs_bins=b or None) for b in dict.fromkeys(clips)}
    return DataCost(spec, clips, costs, spec_totals(spec))


@torch.no_grad()
def batch_bins(model: Net, x: Tensor) -> list[Bins]:
    """The bins each clip of the batch ``x`` (N, C, T, H, W) keeps, with the model in eval mode."""
    if not model.spec.sgs:
        return [() for _ in range(x.shape[0])]
    was_training = model.training
    model.eval()
    try:
        return [tuple(row) for row in model.sgs_bins(x).tolist()]
    finally:
        model.train(was_training)


def _stack_clips(items: list[Any]) -> Tensor | None:
    """Collate the readable ``(clip, label)`` items of a batch into clips; others (unreadable videos) are left out."""
    clips = [item[0] for item in items if isinstance(item, tuple) and isinstance(item[0], Tensor)]
    return torch.stack(clips) if clips else None


def dataset_bins(
    model: Net, data: Dataset[Any], *, batch_size: int = 16, device: str = "cpu", limit: int | None = None, progress: bool = False
) -> list[Bins]:
    """The bins of every clip of a dataset of ``(clip, label)`` items (the first ``limit`` ones;
    items that are not such pairs, as unreadable videos are, are skipped)."""
    n = len(data)  # type: ignore[arg-type]
    if limit is not None:
        n = min(n, limit)
    subset = torch.utils.data.Subset(data, range(n))
    out: list[Bins] = []
    model = model.to(device)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=_stack_clips)
    for clips in tqdm(loader, desc="SGS bins", unit="batch", disable=not progress or None, leave=False):
        if clips is not None:
            out += batch_bins(model, clips.to(device))
    return out


def clip_counts(model: Net, clip: Tensor, *, spec: NetSpec | None = None) -> tuple[Bins, Counts]:
    """The bins one clip (C, T, H, W) keeps and its analytic count with breakdowns (of ``spec``,
    default the model's: another clip size may be given, as for :func:`data_cost`)."""
    bins = batch_bins(model, clip[None])[0]
    return bins, count_spec(spec or model.spec, sgs_bins=bins if model.spec.sgs else None)


__all__ = ["Bins", "DataCost", "batch_bins", "clip_counts", "data_cost", "dataset_bins"]
