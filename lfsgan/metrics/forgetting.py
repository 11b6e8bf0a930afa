"""Forgetting matrix and average forgetting of a lifelong run.

The matrix ``M[T, s]`` holds a metric of task s evaluated after training task T (rows ``after_task``,
columns ``task``; only s <= T is evaluated). Average forgetting after the last task T:

    F = mean_{s < T} sign * (M[T, s] - M[s, s])

with ``sign = +1`` for lower-is-better metrics (FID, KID) and ``-1`` for higher-is-better ones
(LPIPS diversity), so that **positive F always means the old tasks got worse** and 0 means no
forgetting (LFS-GAN and Piggyback GAN by construction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

RECORD_KEYS = ("method", "after_task", "task", "metric", "value")


def _task_order(tasks: Iterable) -> list:
    seen = list(dict.fromkeys(tasks))
    return sorted(seen) if all(isinstance(t, int) for t in seen) else seen


def forgetting_matrix(
    records: Sequence[dict],
    metric: str | None = None,
    task_order: Sequence | None = None,
) -> dict[str, pd.DataFrame]:
    """One ``after_task x task`` DataFrame per method from flat records.

    Args:
        records: dicts with keys ``method, after_task, task, metric, value``.
        metric: which metric to tabulate; may be omitted when the records hold only one.
        task_order: the task sequence (row/column order); default: sorted if the tasks are ints,
            else order of first appearance.

    Returns:
        ``{method: DataFrame}``, index ``after_task``, columns ``task``, NaN where not evaluated.
    """
    for i, r in enumerate(records):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"record {i} lacks keys {missing}; each record needs {RECORD_KEYS}")
    metrics = sorted({r["metric"] for r in records})
    if metric is None:
        if len(metrics) != 1:
            raise ValueError(f"records hold metrics {metrics}; pass metric= to choose one")
        metric = metrics[0]
    rows = [r for r in records if r["metric"] == metric]
    if not rows:
        raise ValueError(f"no records for metric {metric!r} (have {metrics})")
    order = list(task_order) if task_order is not None else _task_order(
        [t for r in rows for t in (r["after_task"], r["task"])]
    )
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        frame = pd.DataFrame(math.nan, index=pd.Index(order, name="after_task"), columns=pd.Index(order, name="task"))
        for r in (r for r in rows if r["method"] == method):
            if r["after_task"] not in frame.index or r["task"] not in frame.columns:
                raise ValueError(f"{method}: task {r['after_task']!r} or {r['task']!r} not in task_order {order}")
            if not math.isnan(frame.at[r["after_task"], r["task"]]):
                raise ValueError(f"{method}: duplicate {metric} for task {r['task']!r} after {r['after_task']!r}")
            frame.at[r["after_task"], r["task"]] = float(r["value"])
        out[method] = frame
    return out


def average_forgetting(matrix: pd.DataFrame, higher_is_better: bool) -> float:
    """``mean_{s < T} sign * (M[T, s] - M[s, s])``, T = the last task; positive = old tasks got worse.

    Returns NaN for a single-task run (nothing to forget). Raises if a needed cell is missing.
    """
    order = list(matrix.index)
    if list(matrix.columns) != order:
        raise ValueError("forgetting matrix must have the same task order on rows (after_task) and columns (task)")
    if len(order) < 2:
        return math.nan
    last = order[-1]
    sign = -1.0 if higher_is_better else 1.0
    diffs = []
    for s in order[:-1]:
        final, learned = matrix.at[last, s], matrix.at[s, s]
        if math.isnan(final) or math.isnan(learned):
            raise ValueError(
                f"forgetting needs task {s!r} evaluated after {s!r} and after {last!r}; a value is missing"
            )
        diffs.append(sign * (final - learned))
    return float(sum(diffs) / len(diffs))
