"""The budget a search must respect, and the screen every candidate passes before training."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from profiler.costs import Cost
from profiler.counting import spec_totals
from profiler.datacost import Bins, data_cost
from profiler.latency_table import UnpricedLayerError
from search.searchspace import SPACE, Clip, corner_params, paper_presets, preset_params, spec_from_params
from space.spec import E3DError, NetSpec, SpecError


class BudgetError(E3DError):
    """A budget no candidate of the chosen families can meet."""


class ProxyClipError(E3DError):
    """A proxy clip (and batch size) at which no family of a search can train."""


@dataclass(frozen=True)
class Budget:
    """Upper bounds per clip of ``clip``: multiply-adds (millions), parameters, measured latency."""

    mflops: float | None = None
    params: float | None = None
    latency_ms: float | None = None
    clip: Clip = (16, 112, 112)
    latency_table: dict[str, Any] | None = None
    """Settings and fingerprint of the latency table that prices ``latency_ms`` (None: measured here);
    see :mod:`search.latency`."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict (stored on the study)."""
        d = {"mflops": self.mflops, "params": self.params, "latency_ms": self.latency_ms, "clip": list(self.clip)}
        return {**d, "latency_table": self.latency_table}

    def describe(self) -> str:
        """Human summary, e.g. ``macs <= 200 M per 16x112x112 clip, params <= 2.5 M`` (parameters do not depend on the clip)."""
        clip = "x".join(map(str, self.clip))
        parts = []
        if self.mflops is not None:
            parts.append(f"macs <= {self.mflops:g} M per {clip} clip")
        if self.params is not None:
            parts.append(f"params <= {self.params / 1e6:g} M")
        if self.latency_ms is not None:
            parts.append(self._describe_latency(clip))
        return ", ".join(parts) or "no budget"

    def _describe_latency(self, clip: str) -> str:
        """The latency bound in words: per batch of 8 clips, predicted by a table (which names the device) or measured."""
        bound = f"latency <= {self.latency_ms:g} ms per batch of 8 {clip} clips"
        if self.latency_table is None:
            return bound
        t = self.latency_table
        return f"predicted {bound} on {t['device_name']}, {t['threads']} thread(s), table {t['sha256'][:12]}"

    def within_analytic(self, macs: float, params: float) -> bool:
        """Whether ``macs`` multiply-adds and ``params`` parameters meet the analytic bounds (no latency)."""
        return (self.mflops is None or macs <= self.mflops * 1e6) and (self.params is None or params <= self.params)


def parse_count(text: str) -> float:
    """Parse ``2.5M``, ``800k`` or ``1500000`` into a number (for ``--budget-params``)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise ValueError(f"not a count: {text!r} (use e.g. 2.5M, 800k or 1500000)")
    value = float(m.group(1)) * {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if not math.isfinite(value):
        raise ValueError(f"too large a count: {text!r}")
    return value


@dataclass(frozen=True)
class Screen:
    """The screen's verdict on one candidate."""

    cost: Cost
    constraints: tuple[float, float, float]
    """Relative excess over each bound (macs, params, latency); <= 0 means within it."""
    feasible: bool
    reason: str = ""
    latency_ms: float | None = None


def screen(
    spec: NetSpec, budget: Budget, *, latency: Callable[[NetSpec], float] | None = None, bins: Sequence[Bins] | None = None
) -> Screen:
    """Check ``spec`` (at the budget clip) against every bound, cheapest first.

    Latency (``latency(spec)``, ms per batch: measured, or predicted from the budget's latency table)
    is taken only for candidates within the analytic bounds, since measuring costs seconds; a candidate
    the table cannot price (:class:`profiler.latency_table.UnpricedLayerError`) is rejected with that
    reason, never extrapolated. A spec with SGS layers costs what its clips cost on average: ``bins``
    are the bins each clip of the proxy validation set keeps (see :mod:`profiler.datacost`); without
    them it is screened at its most expensive clip.
    """
    cost = data_cost(spec, bins).mean_cost() if bins and spec.sgs else spec_totals(spec)
    macs_x = cost.macs / (budget.mflops * 1e6) - 1 if budget.mflops is not None else -1.0
    params_x = cost.params / budget.params - 1 if budget.params is not None else -1.0
    reasons = []
    if macs_x > 0:
        reasons.append(f"macs {cost.macs / 1e6:.1f} M > {budget.mflops:g} M")
    if params_x > 0:
        reasons.append(f"params {cost.params / 1e6:.2f} M > {budget.params / 1e6:g} M")  # type: ignore[operator]
    lat_ms, lat_x = None, 0.0
    if not reasons and budget.latency_ms is not None and latency is not None:
        try:
            lat_ms = latency(spec)
        except UnpricedLayerError as e:  # never extrapolated: rejected, and the reason recorded
            return Screen(cost, (macs_x, params_x, 1.0), False, str(e))
        lat_x = lat_ms / budget.latency_ms - 1
        if lat_x > 0:
            what = "predicted latency" if budget.latency_table is not None else "latency"
            reasons.append(f"{what} {lat_ms:.1f} ms > {budget.latency_ms:g} ms")
    return Screen(cost, (macs_x, params_x, lat_x), not reasons, "; ".join(reasons), lat_ms)


def family_minimum(family: str, clip: Clip) -> tuple[float, float]:
    """Smallest (macs, params) any candidate of ``family`` can have at ``clip``."""
    costs = [spec_totals(spec_from_params(p, clip=clip)) for p in corner_params(family)]
    return min(c.macs for c in costs), min(c.params for c in costs)


def feasible_families(families: Sequence[str], budget: Budget) -> tuple[tuple[str, ...], dict[str, tuple[float, float]]]:
    """The families whose smallest candidate fits the analytic bounds, and every family's minimum.

    Raises :class:`BudgetError` with the smallest buildable cost when none fits.
    """
    minima = {f: family_minimum(f, budget.clip) for f in families}
    fits = tuple(f for f in families if budget.within_analytic(*minima[f]))
    if not fits:
        best = min(families, key=lambda f: minima[f][0])
        parts = []
        if budget.mflops is not None:
            parts.append(f"{min(m for m, _ in minima.values()) / 1e6:.1f} M multiply-adds")
        if budget.params is not None:
            parts.append(f"{min(p for _, p in minima.values()) / 1e6:.3f} M params")
        raise BudgetError(
            f"the budget ({budget.describe()}) is below the smallest network these families can build: "
            f"{' and '.join(parts)} (smallest: {best} at width {SPACE[best].width[0]:g}, minimum depths)"
        )
    return fits, minima


def validate_for_clip(spec: NetSpec, clip: Clip, *, batch_size: int = 2) -> NetSpec:
    """The same network at another clip (the proxy clip); :class:`SpecError` if it cannot run there, or
    cannot train there in batches of ``batch_size`` clips (:func:`check_batch_norms`)."""
    try:
        at_clip = spec.replace(clip=clip)
        check_batch_norms(at_clip, batch_size=batch_size)
    except SpecError as e:
        raise SpecError(e.field, f"{e.reason} [at the proxy clip]") from None
    return at_clip


def check_batch_norms(spec: NetSpec, *, batch_size: int) -> None:
    """:class:`SpecError` where a training step could give a BatchNorm one value per channel, whose batch
    statistics PyTorch cannot take (it stops the step): ``batch_size`` clips of one position each there, or,
    after an SGS layer, one clip of one position. After SGS the clips that kept the same number of bins run on
    together (``space.modules.Net``), so a clip that keeps the fewest (each layer's ``multiple``) may run alone.
    Inference is not affected."""
    layers = spec.trace([s.multiple for s in spec.sgs]) if spec.sgs else spec.layers
    clips, why = batch_size, f"a batch of {batch_size} clip(s)"
    for layer in layers:
        if layer.kind == "similarity":
            fewest = ", ".join(str(s.multiple) for s in spec.sgs)
            clips, why = 1, f"a clip that keeps {fewest} bin(s) alone in its group after SGS"
        if layer.kind == "bn" and clips * math.prod(layer.in_shape[1:]) == 1:
            where = "x".join(map(str, layer.in_shape[1:]))
            raise SpecError(
                "clip", f"{layer.name} would normalise a single value per channel ({why}, a {where} map): training cannot run it"
            )


def trainable_families(families: Sequence[str], clip: Clip, *, batch_size: int) -> tuple[str, ...]:
    """The families of which some Table 8 preset or smallest candidate (:func:`corner_params`, no SGS) can train at
    ``clip`` in batches of ``batch_size`` (:func:`validate_for_clip`). Width and depth do not change where a
    family's strides take its maps, so a family none of these can train has no candidate that could, and a search
    would only reject its candidates, one after another. :class:`ProxyClipError` naming each family's first reason
    when none is left."""
    reasons = {f: r for f in families if (r := _untrainable(f, clip, batch_size)) is not None}
    if len(reasons) == len(families):
        at = f"{'x'.join(map(str, clip))} in batches of {batch_size}"
        raise ProxyClipError(f"no family can train at the proxy clip {at}: " + "; ".join(f"{f}: {r}" for f, r in reasons.items()))
    return tuple(f for f in families if f not in reasons)


def _untrainable(family: str, clip: Clip, batch_size: int) -> str | None:
    """None where a preset or smallest candidate of ``family`` can train at ``clip``, else the first one's reason."""
    first = None
    for params in [preset_params(family, w) for _, w in paper_presets([family])] + corner_params(family):
        try:
            validate_for_clip(spec_from_params(params), clip, batch_size=batch_size)
            return None
        except SpecError as e:
            first = first or str(e)
    return first
