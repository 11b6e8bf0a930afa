"""Numbers as evidence: a mean with its 95 % confidence interval over replicates, and a verdict
from two such intervals.

A value is evidence only with its replicates: :func:`estimate` gives ``mean ± t_{n−1, 0.975} · s/√n``
(Student's t over independent replicates, e.g. task-training seeds), with ``n``. :func:`verdict`
compares two estimates for a stated direction and says *supported*, *contradicted* or
*inconclusive* — the last whenever either side has fewer than two replicates or the intervals
overlap. A value that holds by construction (LFS-GAN's and Piggyback's zero forgetting: each task's
state is stored apart and never changed) is labelled so and never counted as evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from scipy import stats

LEVEL = 0.95
BY_CONSTRUCTION = "by construction (isolated task state)"


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` replicate values with a two-sided ``LEVEL`` t-interval (``None`` when n < 2)."""

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


#: what a claim expects of its left side relative to its right side
DIRECTIONS = ("less", "greater", "not_greater", "not_less")


def verdict(left: Estimate, right: Estimate, expect: str) -> str:
    """``supported`` / ``contradicted`` / ``inconclusive (…)`` / ``by construction (…)`` for
    "left is ``expect`` than right".

    ``less``/``greater``: supported when the intervals are disjoint in that direction, contradicted
    when disjoint the other way. ``not_greater``/``not_less`` (e.g. "without hurting FID"):
    contradicted only when the intervals are disjoint the wrong way, supported otherwise.
    """
    if expect not in DIRECTIONS:
        raise ValueError(f"expect must be one of {DIRECTIONS}, got {expect!r}")
    if left.by_construction or right.by_construction:
        return f"not evidence: {BY_CONSTRUCTION}"
    if min(left.n, right.n) < 2:
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
