"""The paper's Table 8 as package data (``space/data/table8.csv``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class PaperRow:
    """One row of Table 8: a model at a width, its MFLOPs (paper convention), params and results."""

    model: str
    width_mult: float
    mflops: float
    params_m: float
    titanxp_clips_s: float
    tx2_clips_s: float
    kinetics600_top1: float
    jester_top1: float
    ucf101_top1: float


@cache
def table8() -> tuple[PaperRow, ...]:
    """All 21 rows of Table 8, in the paper's order."""
    text = resources.files("space").joinpath("data/table8.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    return tuple(PaperRow(r["model"], *(float(r[k]) for k in list(r)[1:])) for r in rows)
