"""The weight-matching comparison of the report: naive average, MergeMany weight matching (WM)
and the STE search, for merges of 2 and of N >= 3 sources, and the verdict on Ito et al.'s claim 3
("WM outperforms STE, especially when merging three or more models").

The barrier compared is the merge barrier ``FID(merged) - mean_k FID(endpoint k)`` of
``lfsgan merge`` (for two models: the FID barrier at λ = ½ of the LMC path), one number per seed set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

METHODS = ("naive", "wm", "ste")


def merge_comparison(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (seed set, method) from ``merge.json`` files: merged FID, merge barrier (absolute
    and relative to the endpoints' mean FID), the STE objective, summed-pairwise L2 and its
    reduction against naive, and R(γ) (mean over member pairs) for every γ recorded."""
    rows = []
    for path in paths:
        rec = json.loads(Path(path).read_text())
        seeds = "_".join(Path(s).parent.name.removeprefix("seed") for s in rec["sources"])
        for m in METHODS:
            if f"{m}_fid" not in rec:
                continue
            row = {"seeds": seeds, "n_models": rec["n_models"], "method": m, "endpoints_fid_mean": rec["endpoints_fid_mean"],
                   "merged_fid": rec[f"{m}_fid"], "merge_barrier_fid": rec[f"{m}_merge_barrier_fid"],
                   "merge_barrier_relative": rec[f"{m}_merge_barrier_relative"], "loss": rec[f"{m}_loss"],
                   "l2": rec[f"{m}_l2"], "l2_reduction": rec[f"{m}_l2_reduction"]}
            row.update({f"R({g:g})": rec.get(f"{m}_r_gamma_{g:g}", np.nan) for g in rec["gammas"]})
            rows.append(row)
    return pd.DataFrame(rows)


def claim3_verdict(table: pd.DataFrame) -> dict:
    """Claim 3 from the numbers: per seed set with both WM and STE, ``gap = barrier(STE) - barrier(WM)``
    (positive: WM's merge is better). *supported* if every merge of >= 3 models has gap > 0,
    *contradicted* if every one has gap <= 0, else *inconclusive*; also inconclusive with no STE
    search, and "inconclusive (n = 1)" with a single merge of >= 3 models (one value is not
    evidence, as on the claims page). ``n_2``/``n_many`` count the seed sets behind it; with one
    FID per set there is no noise estimate, so small gaps are not evidence either way."""
    if table.empty or "ste" not in set(table["method"]):
        return {"verdict": "inconclusive", "reason": "no STE search was run (permutation.ste.enabled)", "n_2": 0, "n_many": 0}
    wide = table.pivot(index=["seeds", "n_models"], columns="method", values="merge_barrier_fid").dropna(subset=["wm", "ste"]).reset_index()
    wide["gap"] = wide["ste"] - wide["wm"]
    two, many = wide[wide["n_models"] == 2], wide[wide["n_models"] >= 3]
    out = {"n_2": len(two), "n_many": len(many),
           "mean_gap_2": float(two["gap"].mean()) if len(two) else None,
           "mean_gap_many": float(many["gap"].mean()) if len(many) else None}
    if many.empty:
        return {**out, "verdict": "inconclusive", "reason": "no merge of three or more models (permutation.seeds needs >= 3)"}
    if len(many) < 2:
        gap = float(many["gap"].iloc[0])
        return {**out, "verdict": "inconclusive (n = 1)",
                "reason": f"one merge of >= 3 models (WM's barrier {'lower' if gap > 0 else 'not lower'} than STE's by "
                          f"{abs(gap):.3g} FID); a verdict needs >= 2 such merges (permutation.seeds with >= 4 entries)"}
    if (many["gap"] > 0).all():
        verdict, reason = "supported", "WM's merge barrier is lower than STE's for every merge of >= 3 models"
    elif (many["gap"] <= 0).all():
        verdict, reason = "contradicted", "STE's merge barrier is lower than or equal to WM's for every merge of >= 3 models"
    else:
        verdict, reason = "inconclusive", "WM is better on some merges of >= 3 models and STE on others"
    if verdict == "supported" and len(two):
        reason += "; the gap is " + ("larger" if out["mean_gap_many"] > out["mean_gap_2"] else "not larger") + " than for 2 models"
    return {**out, "verdict": verdict, "reason": reason}
