"""Two-objective fronts (accuracy up, multiply-adds down) and their hypervolume.

A point is ``(accuracy, macs)``: accuracy in percent, multiply-adds in millions (M) per clip.
``a`` dominates ``b`` when it is at least as accurate *and* no more costly, and strictly better in
one of the two. The hypervolume of a set of points is the area that they dominate inside the box
bounded by a reference point ``(chance accuracy, 1000 M)``: the union of the rectangles
``[macs, ref_macs] x [ref_accuracy, accuracy]``. A point no more accurate than the reference
accuracy, or at least as costly as the reference cost, lies beyond the reference and adds nothing.
More area is a better front; the area is in percentage points x M.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Point = tuple[float, float]
"""``(accuracy %, macs M)``."""

REF_MACS = 1000.0
"""The cost side of the reference point: 1000 M multiply-adds per 16x112x112 clip."""


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` dominates ``b`` (at least as accurate, no more costly, strictly better in one)."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_mask(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """Which points no other point dominates (at least as good in every objective, better in one).

    Points with a NaN are never on the front. Equal points do not dominate each other, so ties
    are all kept.
    """
    sign = [1.0 if m else -1.0 for m in maximize]
    pts = [[s * v for s, v in zip(sign, p, strict=True)] for p in points]
    ok = [not any(math.isnan(v) for v in p) for p in pts]
    mask = []
    for i, p in enumerate(pts):
        if not ok[i]:
            mask.append(False)
            continue
        dominated = any(
            ok[j] and all(q >= v for q, v in zip(pts[j], p, strict=True)) and any(q > v for q, v in zip(pts[j], p, strict=True))
            for j in range(len(pts))
            if j != i
        )
        mask.append(not dominated)
    return mask


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """The points that no other point dominates (:func:`pareto_mask`: none with a NaN), by cost ascending (duplicates kept once)."""
    pts = sorted(set(points), key=lambda p: (p[1], -p[0]))
    return [p for p, on in zip(pts, pareto_mask(pts, (True, False)), strict=True) if on]


def hypervolume(points: Iterable[Point], *, ref_accuracy: float, ref_macs: float = REF_MACS) -> float:
    """Area dominated by ``points`` inside the reference box (see the module docstring); 0 for none.

    Sweeping the points by cost (ties: most accurate first), each one that is more accurate than
    every cheaper one adds the strip between the best accuracy so far and its own, from its cost to
    the reference cost.
    """
    inside = sorted(((a, m) for a, m in points if a > ref_accuracy and m < ref_macs), key=lambda p: (p[1], -p[0]))
    area, best = 0.0, ref_accuracy
    for acc, macs in inside:
        if acc > best:
            area += (ref_macs - macs) * (acc - best)
            best = acc
    return area


@dataclass(frozen=True)
class Coverage:
    """Whether a searched network with no more multiply-adds is at least as accurate as a preset."""

    preset: str
    preset_macs: float
    preset_accuracy: float
    best: str | None
    """The most accurate searched network that costs no more than the preset (None: none is that cheap)."""
    best_macs: float | None
    best_accuracy: float | None

    @property
    def covered(self) -> bool:
        """A searched network at most as costly is at least as accurate (by mean accuracy)."""
        return self.best_accuracy is not None and self.best_accuracy >= self.preset_accuracy


def coverage(presets: Sequence[tuple[str, float, float]], searched: Sequence[tuple[str, float, float]]) -> list[Coverage]:
    """For each preset ``(label, accuracy, macs)``, the best searched ``(label, accuracy, macs)``
    costing no more (ties in accuracy: the cheaper one), and whether it is at least as accurate."""
    out = []
    for label, acc, macs in presets:
        cheaper = [s for s in searched if s[2] <= macs]
        top = max(cheaper, key=lambda s: (s[1], -s[2])) if cheaper else None
        out.append(Coverage(label, macs, acc, top[0] if top else None, top[2] if top else None, top[1] if top else None))
    return out


def pick_members(front: Sequence[Point], k: int) -> list[Point]:
    """At most ``k`` points of a front spread over its cost range: all of them when ``k`` suffice,
    else the cheapest, the costliest and the points nearest evenly spaced positions between."""
    pts = sorted(front, key=lambda p: (p[1], -p[0]))
    if len(pts) <= k:
        return pts
    if k == 1:
        return [max(pts, key=lambda p: (p[0], -p[1]))]
    idx = sorted({round(i * (len(pts) - 1) / (k - 1)) for i in range(k)})
    return [pts[i] for i in idx]


def hypervolumes_by_seed(
    runs: Sequence[tuple[str, int, float, float]], *, ref_accuracy: float, ref_macs: float = REF_MACS
) -> dict[int, float]:
    """The hypervolume of one group of networks per seed: ``runs`` are ``(label, seed, accuracy,
    macs M)``; seed ``s``'s front is every network's accuracy in its run with seed ``s`` (a seed
    that some network lacks is left out, so every hypervolume covers the same networks)."""
    labels = {r[0] for r in runs}
    by_seed: dict[int, list[Point]] = {}
    for _, seed, acc, macs in runs:
        by_seed.setdefault(seed, []).append((acc, macs))
    return {
        s: hypervolume(pts, ref_accuracy=ref_accuracy, ref_macs=ref_macs) for s, pts in sorted(by_seed.items()) if len(pts) == len(labels)
    }
