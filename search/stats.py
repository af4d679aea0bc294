"""The one statistics helper: every mean ± sd and every win / tie / loss verdict that e3d prints or
publishes comes from here.

The spread is always the *sample* standard deviation (n - 1 in the denominator; undefined, NaN, for a
single value). A verdict compares two sets of runs (e.g. a searched network's test accuracy over
seeds against the best paper preset's) with Welch's two-sided t-test at ``alpha`` (0.05): a "win"
or a "loss" needs p < alpha; anything else, including too few runs for a test, is a "tie". A "win"
also needs a mean above chance: a network no better than guessing beats nothing.

Where the same items (architectures, say) were measured both ways, :func:`compare_paired` decides
whether the differences average away from zero (paired t-test over the items, the same alpha): more
power than item-by-item verdicts when each item has few runs.

Two rankings are compared by how well each agrees with a third (:func:`compare_agreement`: the
difference of their Spearman correlations with it, a paired bootstrap over the items ranked).

Several verdicts of one family (one benchmark's budgets, say) are each tested at ``alpha``; :func:`holm`
says which of them survive Holm's correction for their number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

ALPHA = 0.05
TEST = "Welch's t-test, two-sided, alpha 0.05"
"""How every verdict is decided, in words (printed next to verdicts)."""

RESAMPLES = 2000


def agreement_test(resamples: int = RESAMPLES, alpha: float = ALPHA) -> str:
    """How :func:`compare_agreement` decides, in words."""
    return f"paired bootstrap over the items ranked, {resamples:,} resamples, two-sided, alpha {alpha:g}"


Outcome = Literal["win", "tie", "loss"]


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (NaN when n < 2) and count of a set of values."""

    mean: float
    sd: float
    n: int

    def format(self, digits: int = 1) -> str:
        """``mean ± sd (n=N)``; a single value as ``mean (n=1)``."""
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} (n={self.n})"


def _mean(xs: list[float]) -> float:
    """The mean; of equal values that value exactly (``fsum / n`` can miss it by a unit in the last place, and a
    spread of 1e-15 made equal seeds a significant "loss")."""
    return xs[0] if all(x == xs[0] for x in xs) else math.fsum(xs) / len(xs)


def sample_sd(values: Iterable[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator); NaN for fewer than two values; 0 for equal ones."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return math.nan
    m = _mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def summarize(values: Iterable[float]) -> Summary:
    """The :class:`Summary` of ``values`` (at least one; NaN values are an error, not skipped)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("no values to summarize")
    if any(math.isnan(x) for x in xs):
        raise ValueError("NaN among the values to summarize")
    return Summary(_mean(xs), sample_sd(xs), len(xs))


@dataclass(frozen=True)
class Verdict:
    """How a set of runs ``a`` compares with a set ``b``."""

    outcome: Outcome
    diff: float
    """mean(a) - mean(b)."""
    p: float
    """Two-sided p-value of the test named in ``reason`` (NaN when there are too few runs for a test)."""
    reason: str

    def format(self, unit: str = "pp", digits: int = 1) -> str:
        """e.g. ``win: +3.2 pp, p=0.012 (Welch's t-test, two-sided, alpha 0.05)``; ``unit`` names what
        the values measure (percentage points of accuracy by default)."""
        p = "p n/a" if math.isnan(self.p) else f"p={self.p:.3g}"
        return f"{self.outcome}: {self.diff:+.{digits}f} {unit}, {p} ({self.reason})"


def geomean(values: Iterable[float]) -> float:
    """Geometric mean of positive numbers (speed-ups over models); NaN for none."""
    logs = [math.log(v) for v in values]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


def welch_p(a: Summary, b: Summary) -> float:
    """Two-sided p-value of Welch's t-test between two summaries (each n >= 2).

    When neither set varies the test is undefined: NaN if the means differ (no verdict: two seeds that
    happen to agree say nothing of the spread of a third), 1 if they are equal.
    """
    if a.n < 2 or b.n < 2:
        raise ValueError("Welch's t-test needs at least two values on each side")
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1)) if va + vb else math.nan
    return _t_p(a.mean - b.mean, math.sqrt(va + vb), dof)


def _t_p(diff: float, se: float, dof: float) -> float:
    """Two-sided p-value of a t statistic ``diff / se`` with ``dof`` degrees of freedom; when ``se`` is 0 the
    test is undefined: NaN if ``diff`` is not zero, 1 if it is."""
    if se == 0.0:
        return math.nan if diff != 0.0 else 1.0
    return float(2.0 * _scipy().t.sf(abs(diff) / se, dof))


def _outcome(diff: float, p: float, alpha: float) -> Outcome:
    """Win or loss (by the sign of ``diff``) when p < ``alpha``, else tie (a NaN p too)."""
    return "win" if p < alpha and diff > 0 else "loss" if p < alpha else "tie"


def compare(a: Iterable[float], b: Iterable[float], *, alpha: float = ALPHA, chance: float | None = None) -> Verdict:
    """Verdict of ``a`` against ``b`` (win / tie / loss, see the module docstring).

    ``chance`` is the accuracy of guessing (e.g. 10.0 for ten balanced classes, in percent): ``a``
    cannot win unless its mean is above it.
    """
    sa, sb = summarize(a), summarize(b)
    diff = sa.mean - sb.mean
    if sa.n < 2 or sb.n < 2:
        return Verdict("tie", diff, math.nan, f"too few runs for a test (n={sa.n} vs {sb.n}); {TEST}")
    p = welch_p(sa, sb)
    outcome = _outcome(diff, p, alpha)
    reason = f"{TEST.replace('0.05', f'{alpha:g}')}, n={sa.n} vs {sb.n}, sample sd"
    if math.isnan(p):
        return Verdict("tie", diff, p, f"neither side varies: the test is undefined, no verdict; {reason}")
    if outcome == "win" and chance is not None and sa.mean <= chance:
        return Verdict("tie", diff, p, f"mean {sa.mean:.1f}% is not above chance ({chance:.1f}%); {reason}")
    return Verdict(outcome, diff, p, reason)


def compare_paired(a: Iterable[float], b: Iterable[float], *, alpha: float = ALPHA) -> Verdict:
    """Verdict of ``a`` against ``b`` measured on the same items, ``a[i]`` paired with ``b[i]``: a
    two-sided paired t-test on the differences (win / loss when p < ``alpha``, else tie).

    When the differences do not vary the test is undefined: p is NaN (a tie, no verdict) if they are not
    zero, 1 if they are.
    """
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    if len(xs) != len(ys):
        raise ValueError(f"paired values need equal lengths ({len(xs)} vs {len(ys)})")
    d = summarize(x - y for x, y in zip(xs, ys, strict=True))
    test = f"paired t-test over {d.n} items, two-sided, alpha {alpha:g}, sample sd of the differences"
    if d.n < 2:
        return Verdict("tie", d.mean, math.nan, f"too few pairs for a test; {test}")
    p = _t_p(d.mean, d.sd / math.sqrt(d.n), d.n - 1)
    if math.isnan(p):
        return Verdict("tie", d.mean, p, f"the differences do not vary: the test is undefined, no verdict; {test}")
    return Verdict(_outcome(d.mean, p, alpha), d.mean, p, test)


def holm(pvalues: Iterable[float], alpha: float = ALPHA) -> list[tuple[float, bool]]:
    """Holm's step-down correction of several tests of one family: for each p-value, in the given order,
    its Holm-adjusted p (the running maximum, over the p-values sorted ascending, of p times the number of
    tests not yet passed; at most 1) and whether the test still holds (adjusted p < ``alpha``).

    A NaN p-value (a verdict without a test) counts among the tests, is never significant and stays NaN.
    """
    ps = [float(p) for p in pvalues]
    order = sorted(range(len(ps)), key=lambda i: (math.isnan(ps[i]), ps[i]))
    adjusted = [math.nan] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        if math.isnan(ps[i]):
            break
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return [(a, not math.isnan(a) and a < alpha) for a in adjusted]


def _scipy() -> ModuleType:
    """``scipy.stats``, imported on first use: it takes about half a second, which every search job and e3d
    command would otherwise pay at start whether or not it computes a statistic."""
    from scipy import stats

    return stats


def _ranked_pairs(x: Iterable[float], y: Iterable[float]) -> tuple[list[float], list[float]] | None:
    xs, ys = [float(v) for v in x], [float(v) for v in y]
    if len(xs) != len(ys):
        raise ValueError(f"rank correlation of {len(xs)} values against {len(ys)}")
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return xs, ys


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman's rank correlation of paired values (ties get mean ranks); NaN for fewer than three
    pairs or a constant side."""
    pairs = _ranked_pairs(x, y)
    return math.nan if pairs is None else float(_scipy().spearmanr(*pairs).statistic)


def kendall(x: Iterable[float], y: Iterable[float]) -> float:
    """Kendall's tau-b of paired values; NaN for fewer than three pairs or a constant side."""
    pairs = _ranked_pairs(x, y)
    return math.nan if pairs is None else float(_scipy().kendalltau(*pairs).statistic)


def compare_agreement(
    a: Iterable[float], b: Iterable[float], reference: Iterable[float], *, alpha: float = ALPHA, resamples: int = RESAMPLES, seed: int = 0
) -> Verdict:
    """Whether scores ``a`` rank the items more like ``reference`` than scores ``b`` do (the three paired
    by item): ``diff`` is Spearman(a, reference) - Spearman(b, reference).

    The items are resampled with replacement ``resamples`` times (seeded: the same inputs give the same
    verdict); p is twice the smaller share of resampled differences at or beyond 0 on either side
    (at most 1). Resamples in which a side is constant are skipped. Fewer than three items, or fewer
    than half the resamples usable: a tie without a test.
    """
    import numpy as np

    xa, xb, xr = (np.asarray([float(v) for v in x]) for x in (a, b, reference))
    if not len(xa) == len(xb) == len(xr):
        raise ValueError(f"rank agreement of {len(xa)}, {len(xb)} and {len(xr)} values")
    diff = spearman(xa, xr) - spearman(xb, xr)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples if len(xa) >= 3 else 0):
        i = rng.integers(0, len(xa), len(xa))
        d = spearman(xa[i], xr[i]) - spearman(xb[i], xr[i])
        if not math.isnan(d):
            diffs.append(d)
    reason = f"{agreement_test(resamples, alpha)}, n={len(xa)}"
    if math.isnan(diff) or len(diffs) < resamples / 2:
        return Verdict("tie", diff, math.nan, f"too few items or usable resamples for a test; {reason}")
    below, above = (sum(d <= 0 for d in diffs) / len(diffs)), (sum(d >= 0 for d in diffs) / len(diffs))
    p = min(1.0, 2 * min(below, above))
    outcome: Outcome = "tie" if p >= alpha else ("win" if diff > 0 else "loss")
    return Verdict(outcome, diff, p, reason)
