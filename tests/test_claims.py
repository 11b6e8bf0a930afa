"""Replicated numbers and the claims page: intervals from known values, verdicts derived from the
metrics (change a number, the verdict changes), by-construction zeros never counted as evidence."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lfsgan.report.claims import claims_table, replicate_values
from lfsgan.report.evidence import BY_CONSTRUCTION, Estimate, estimate, verdict


def test_interval_from_known_values():
    e = estimate([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, s = sqrt(5/3), t_{3, 0.975} = 3.182446305...
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert e.n == 4 and e.mean == pytest.approx(2.5)
    assert e.low == pytest.approx(2.5 - half, rel=1e-9) and e.high == pytest.approx(2.5 + half, rel=1e-9)
    one = estimate([7.0])
    assert one.n == 1 and one.low is None and "n = 1" in str(one)
    assert estimate([float("nan"), 2.0, 4.0]).n == 2


@pytest.mark.parametrize("left, right, expect, result", [
    ([1, 1.1, 0.9], [5, 5.2, 4.8], "less", "supported"),
    ([5, 5.2, 4.8], [1, 1.1, 0.9], "less", "contradicted"),
    ([1, 3, 5], [2, 4, 6], "less", "inconclusive (intervals overlap)"),
    ([1], [5, 6], "less", "inconclusive (n = 1)"),
    ([5, 5.2, 4.8], [1, 1.1, 0.9], "not_greater", "contradicted"),
    ([1, 3, 5], [2, 4, 6], "not_greater", "supported (no significant increase)"),
])
def test_verdict_from_intervals(left, right, expect, result):
    assert verdict(estimate(left), estimate(right), expect) == result


def test_by_construction_is_never_evidence():
    zero = estimate([0.0, 0.0, 0.0], by_construction=True)
    assert verdict(zero, estimate([3.0, 4.0, 5.0]), "less") == f"not evidence: {BY_CONSTRUCTION}"
    assert BY_CONSTRUCTION in str(zero)


METHODS = {
    "finetune": {"kind": "finetune"},
    "ewc": {"kind": "ewc", "options": {"lambda": 1e4}},
    "lfsgan": {"kind": "lfsgan", "options": {"mode_seeking": "intended"}},
    "lfsgan-noms": {"kind": "lfsgan", "options": {"mode_seeking": "off"}},
}


def _metrics(fid_after: dict[str, list[float]]) -> pd.DataFrame:
    """Two tasks, three replicates; `fid_after[method][r]` is task a's FID after task b (forgetting)."""
    rows = []
    for method, finals in fid_after.items():
        for rep, final in enumerate(finals):
            base = 10.0 + rep
            b_lpips = 0.3 + 0.01 * rep if method == "lfsgan" else 0.1 + 0.01 * rep
            for after_index, after in enumerate(["a", "b"]):
                for task_index, task in enumerate(["a", "b"][: after_index + 1]):
                    fid = final if (after, task) == ("b", "a") else base
                    rows.append({"method": method, "replicate": rep, "after_task": after, "after_index": after_index,
                                 "task": task, "task_index": task_index, "fid": fid, "kid_mean": 0.0,
                                 "intra_lpips": b_lpips, "b_lpips": b_lpips})
    return pd.DataFrame(rows)


def _verdicts(df):
    return dict(zip(claims_table(df, METHODS)["claim"], claims_table(df, METHODS)["verdict"]))


def test_claims_follow_the_metrics():
    df = _metrics({"finetune": [60, 62, 64], "ewc": [20, 21, 22], "lfsgan": [10, 11, 12], "lfsgan-noms": [10, 11, 12]})
    assert replicate_values(df, "ewc", "forgetting:fid") == [10.0, 10.0, 10.0]
    v = _verdicts(df)
    assert v["EWC forgets less than fine-tuning (average FID forgetting)"] == "supported"
    assert v["the mode-seeking loss raises diversity (B-LPIPS)"] == "supported"
    assert v["learning a new task does not change the earlier ones (average FID forgetting)"].startswith("not evidence")
    # the same table with EWC forgetting more than fine-tuning: the verdict turns
    df2 = _metrics({"finetune": [20, 21, 22], "ewc": [60, 62, 64], "lfsgan": [10, 11, 12], "lfsgan-noms": [10, 11, 12]})
    assert _verdicts(df2)["EWC forgets less than fine-tuning (average FID forgetting)"] == "contradicted"


def test_a_claim_without_its_rows_is_not_run():
    df = _metrics({"finetune": [60, 62, 64], "lfsgan": [10, 11, 12]})
    table = claims_table(df, {k: METHODS[k] for k in ("finetune", "lfsgan")})
    row = table[table["claim"] == "the mode-seeking loss raises diversity (B-LPIPS)"].iloc[0]
    assert row["verdict"] == "not run: the config has no LFS-GAN without mode seeking row"
    single = _metrics({"finetune": [60], "ewc": [20], "lfsgan": [10], "lfsgan-noms": [10]})
    assert _verdicts(single)["EWC forgets less than fine-tuning (average FID forgetting)"] == "inconclusive (n = 1)"
