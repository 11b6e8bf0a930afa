"""The claims page: each claim of the papers the workflow can test, its compared rows (mean ± 95 % CI
over replicates, with n) and a verdict computed from those numbers — never written by hand.

Input is the tidy table of evaluation results (:func:`lfsgan.report.tables.collect_metrics`, one row
per method, replicate, after-task and task) plus each method's kind and options from the config, so
that rows are found by what they are (``kind: ewc``; ``kind: lfsgan`` with ``mode_seeking: off``),
not by their names. A claim whose rows are absent from the config is listed as *not run*, saying
which row it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from lfsgan.report.evidence import Estimate, estimate, verdict
from lfsgan.report.tables import METRICS

#: kinds whose tasks are stored apart and never changed: their forgetting is zero by construction
ISOLATED_KINDS = ("lfsgan", "piggyback")


@dataclass(frozen=True)
class Row:
    """One side of a comparison: a method chosen by a predicate on its config entry, and a quantity."""

    label: str
    pick: Callable[[dict[str, Any]], bool]
    quantity: str  # "own:<metric>" (task s after task s) or "forgetting:<metric>"


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str
    text: str
    left: Row
    right: Row
    expect: str  # evidence.DIRECTIONS: what left should be relative to right


def _kind(kind: str, **options: Any) -> Callable[[dict[str, Any]], bool]:
    def pick(entry: dict[str, Any]) -> bool:
        opts = entry.get("options") or {}
        return entry["kind"] == kind and all(opts.get(k) == v for k, v in options.items())

    return pick


def _lfsgan_with_ms(entry: dict[str, Any]) -> bool:
    return entry["kind"] == "lfsgan" and (entry.get("options") or {}).get("mode_seeking", "intended") != "off"


CLAIMS: tuple[Claim, ...] = (
    Claim("ms-b-lpips", "LFS-GAN (Seo et al. 2023)", "the mode-seeking loss raises diversity (B-LPIPS)",
          Row("LFS-GAN", _lfsgan_with_ms, "own:b_lpips"), Row("LFS-GAN without mode seeking", _kind("lfsgan", mode_seeking="off"), "own:b_lpips"),
          "greater"),
    Claim("ms-intra-lpips", "LFS-GAN (Seo et al. 2023)", "the mode-seeking loss raises diversity (intra-cluster LPIPS)",
          Row("LFS-GAN", _lfsgan_with_ms, "own:intra_lpips"),
          Row("LFS-GAN without mode seeking", _kind("lfsgan", mode_seeking="off"), "own:intra_lpips"), "greater"),
    Claim("ms-fid", "LFS-GAN (Seo et al. 2023)", "…without hurting FID",
          Row("LFS-GAN", _lfsgan_with_ms, "own:fid"), Row("LFS-GAN without mode seeking", _kind("lfsgan", mode_seeking="off"), "own:fid"),
          "not_greater"),
    Claim("left-fid", "LFS-GAN (Seo et al. 2023)", "LeFT learns each task as well as fine-tuning does (FID)",
          Row("LFS-GAN", _kind("lfsgan"), "own:fid"), Row("fine-tuning", _kind("finetune"), "own:fid"), "not_greater"),
    Claim("ewc-forgetting", "EWC (Li et al. 2020)", "EWC forgets less than fine-tuning (average FID forgetting)",
          Row("EWC", _kind("ewc"), "forgetting:fid"), Row("fine-tuning", _kind("finetune"), "forgetting:fid"), "less"),
    Claim("ewc-diversity", "EWC (Li et al. 2020)", "EWC keeps more of the source's diversity on 10 shots (intra-cluster LPIPS)",
          Row("EWC", _kind("ewc"), "own:intra_lpips"), Row("fine-tuning", _kind("finetune"), "own:intra_lpips"), "greater"),
    Claim("isolation", "LFS-GAN / Piggyback GAN", "learning a new task does not change the earlier ones (average FID forgetting)",
          Row("LFS-GAN", _kind("lfsgan"), "forgetting:fid"), Row("fine-tuning", _kind("finetune"), "forgetting:fid"), "less"),
)


def replicate_values(df: pd.DataFrame, method: str, quantity: str) -> list[float]:
    """One value per replicate of ``method``: the mean over tasks of the metric read right after
    learning the task (``own:``), or its average forgetting (``forgetting:``: mean over s < T of
    metric(s after T) − metric(s after s), sign-flipped where higher is better)."""
    what, metric = quantity.split(":")
    rows = df[df["base_method" if "base_method" in df else "method"] == method]
    if "replicate" not in rows:
        rows = rows.assign(replicate=0)
    values = []
    for _, rep in rows.groupby("replicate", sort=True):
        if what == "own":
            values.append(float(rep.loc[rep["after_task"] == rep["task"], metric].mean()))
        else:
            last = rep["after_index"].max()
            own = rep[rep["after_task"] == rep["task"]].set_index("task")[metric]
            final = rep[(rep["after_index"] == last) & (rep["task_index"] < last)].set_index("task")[metric]
            if final.empty:
                continue
            diff = (final - own.reindex(final.index)).mean()
            values.append(float(-diff if METRICS[metric] else diff))
    return values


def _side(df: pd.DataFrame, methods: dict[str, dict], row: Row) -> tuple[str | None, Estimate | None]:
    present = set(df["base_method" if "base_method" in df else "method"])
    names = [m for m, entry in methods.items() if row.pick(entry) and m in present]
    if not names:
        return None, None
    name = names[0]
    values = replicate_values(df, name, row.quantity)
    if not values:
        return name, None
    isolated = row.quantity.startswith("forgetting:") and methods[name]["kind"] in ISOLATED_KINDS
    return name, estimate(values, by_construction=isolated)


def claims_table(df: pd.DataFrame, methods: dict[str, dict]) -> pd.DataFrame:
    """One row per claim: the paper, the claim, both sides (method, quantity, mean ± CI, n) and the verdict."""
    out = []
    for c in CLAIMS:
        (ln, le), (rn, re) = _side(df, methods, c.left), _side(df, methods, c.right)
        if le is None or re is None:
            missing = [r.label for r, e in ((c.left, le), (c.right, re)) if e is None]
            result = f"not run: the config has no {' / '.join(missing)} row"
        else:
            result = verdict(le, re, c.expect)
        out.append({
            "claim": c.text, "paper": c.paper,
            "left": f"{ln or c.left.label}: {c.left.quantity}", "left_value": str(le) if le else "",
            "expect": c.expect.replace("_", " "),
            "right": f"{rn or c.right.label}: {c.right.quantity}", "right_value": str(re) if re else "",
            "verdict": result,
        })
    return pd.DataFrame(out)
