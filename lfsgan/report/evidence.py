"""Numbers as evidence: a mean with its 95 % confidence interval over replicates, and a verdict
from two such intervals.

A value is evidence only with its replicates: :func:`estimate` gives ``mean ± t_{n−1, 0.975} · s/√n``
(Student's t over independent replicates, e.g. task-training seeds), with ``n``. :func:`verdict`
compares two estimates for a stated direction and says *supported*, *contradicted* or
*inconclusive* — the last whenever either side has fewer than two replicates or the intervals
overlap. A value that holds by construction (LFS-GAN's and Piggyback's zero forgetting: each task's
state is stored apart and never changed) is labelled so and never counted as evidence.
:func:`rank_correlation` gives Spearman's ρ as such an estimate (Fisher-z interval), so that a trend
("worse the further from the source") is judged by the same :func:`verdict` against a fixed 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from scipy import stats

LEVEL = 0.95
BY_CONSTRUCTION = "by construction (isolated task state)"


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` replicate values with a two-sided ``LEVEL`` interval (``None`` when there are too
    few values for one: n < 2 for a mean, fewer than 4 for a correlation)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    by_construction: bool = False

    def __str__(self) -> str:
        if self.by_construction:
            return f"{self.mean:.4g} ({BY_CONSTRUCTION})"
        if self.low is None:
            return f"{self.mean:.4g} (n = {self.n})"
        if not math.isclose(self.high - self.mean, self.mean - self.low, rel_tol=1e-6, abs_tol=1e-12):
            return f"{self.mean:.4g} [{self.low:.3g}, {self.high:.3g}] (95 % CI, n = {self.n})"
        return f"{self.mean:.4g} ± {self.half_width:.2g} (95 % CI, n = {self.n})"

    @property
    def half_width(self) -> float:
        return float("nan") if self.low is None else (self.high - self.low) / 2


def estimate(values: Iterable[float], by_construction: bool = False, level: float = LEVEL) -> Estimate:
    """Mean and t-interval of replicate ``values`` (NaNs dropped)."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        raise ValueError("no replicate values to estimate from")
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return Estimate(mean, None, None, n, by_construction)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, by_construction)


def rank_correlation(x: Sequence[float], y: Sequence[float], n_independent: int | None = None,
                     level: float = LEVEL) -> Estimate:
    """Spearman's ρ of the points ``(x_i, y_i)`` (ties ranked by their average) with the interval
    ``tanh(atanh ρ ± z_{0.975} · sqrt((1 + ρ²/2) / (m − 3)))`` (Fisher's z with Bonett & Wright's
    2000 standard error for Spearman's ρ), ``m = n_independent`` (default: the number of points).

    Pass ``n_independent`` when points share their ``x`` (several replicates of one task share its
    distance): the interval then counts only the independent ``x`` values. No interval for m < 4,
    and ρ = NaN with fewer than two distinct values on an axis; |ρ| = 1 is pulled in to 1 − 1e-9 so that the interval stays finite.
    """
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if not (math.isnan(float(a)) or math.isnan(float(b)))]
    m = len(pairs) if n_independent is None else int(n_independent)
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return Estimate(float("nan"), None, None, m)  # ρ undefined: fewer than two distinct values on an axis
    xs, ys = zip(*pairs)
    rho = float(stats.spearmanr(xs, ys).statistic)
    if m < 4:
        return Estimate(rho, None, None, m)
    z = math.atanh(max(-1 + 1e-9, min(1 - 1e-9, rho)))
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt((1 + rho**2 / 2) / (m - 3))
    return Estimate(rho, math.tanh(z - half), math.tanh(z + half), m)


def detectable_difference(left: Estimate, right: Estimate | float) -> float | None:
    """The smallest gap between the two means that :func:`verdict` could call, at these intervals'
    widths: ``half_width(left) + half_width(right)`` (a fixed number has width 0) — two intervals
    of these widths are disjoint exactly when their means lie further apart. ``None`` when a side has
    no interval (too few replicates: no gap can be called at that n)."""
    widths = [v.half_width if isinstance(v, Estimate) else 0.0 for v in (left, right)]
    return None if any(math.isnan(w) for w in widths) else float(sum(widths))


#: what a claim expects of its left side relative to its right side
DIRECTIONS = ("less", "greater", "not_greater", "not_less")


def verdict(left: Estimate, right: Estimate | float, expect: str) -> str:
    """``supported`` / ``contradicted`` / ``inconclusive (…)`` / ``by construction (…)`` for
    "left is ``expect`` than right"; ``right`` may be a fixed number (e.g. ρ against 0).

    ``less``/``greater``: supported when the intervals are disjoint in that direction, contradicted
    when disjoint the other way. ``not_greater``/``not_less`` (e.g. "without hurting FID"):
    contradicted only when the intervals are disjoint the wrong way, supported otherwise.
    Inconclusive whenever a side has no interval (too few values: the smallest ``n`` is given).
    """
    if expect not in DIRECTIONS:
        raise ValueError(f"expect must be one of {DIRECTIONS}, got {expect!r}")
    if not isinstance(right, Estimate):
        right = Estimate(float(right), float(right), float(right), math.inf)
    if left.by_construction or right.by_construction:
        return f"not evidence: {BY_CONSTRUCTION}"
    if left.low is None or right.low is None:
        return f"inconclusive (n = {min(left.n, right.n)})"
    below = left.high < right.low  # left disjointly below right
    above = left.low > right.high
    if expect == "less":
        return "supported" if below else "contradicted" if above else "inconclusive (intervals overlap)"
    if expect == "greater":
        return "supported" if above else "contradicted" if below else "inconclusive (intervals overlap)"
    if expect == "not_greater":
        return "contradicted" if above else "supported (no significant increase)"
    return "contradicted" if below else "supported (no significant decrease)"
