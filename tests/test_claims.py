"""Replicated numbers and the claims page: intervals from known values, verdicts derived from the
metrics (change a number, the verdict changes), by-construction zeros never counted as evidence."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from lfsgan.report.claims import claims_table, replicate_values
from lfsgan.report.evidence import BY_CONSTRUCTION, Estimate, detectable_difference, estimate, verdict


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


def test_detectable_difference_is_where_the_intervals_stop_overlapping():
    """The claims page's 'detectable' column: shifting the right side's values by just more than the
    stated gap turns the verdict from inconclusive to supported; by just less, it stays inconclusive."""
    left, right = estimate([1.0, 3.0, 5.0]), estimate([2.0, 4.0, 6.0])
    gap = detectable_difference(left, right)
    assert gap == pytest.approx(left.half_width + right.half_width)
    for shift, result in ((gap - (right.mean - left.mean) + 1e-6, "supported"), (gap - (right.mean - left.mean) - 1e-6, "inconclusive (intervals overlap)")):
        assert verdict(left, estimate([v + shift for v in (2.0, 4.0, 6.0)]), "less") == result
    assert detectable_difference(left, 0.0) == pytest.approx(left.half_width)  # a fixed number has no width
    assert detectable_difference(estimate([1.0]), right) is None  # n = 1: no gap can be called


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
            corr = (0.8 if method.startswith("lfsgan") else 0.55) + 0.01 * rep
            for after_index, after in enumerate(["a", "b"]):
                for task_index, task in enumerate(["a", "b"][: after_index + 1]):
                    fid = final if (after, task) == ("b", "a") else base
                    rows.append({"method": method, "replicate": rep, "after_task": after, "after_index": after_index,
                                 "task": task, "task_index": task_index, "fid": fid, "kid_mean": 0.0,
                                 "intra_lpips": b_lpips, "b_lpips": b_lpips, "correspondence": corr})
    return pd.DataFrame(rows)


def test_isolated_methods_zero_forgetting_is_labelled_in_the_tables():
    from lfsgan.report.tables import METRICS, forgetting_tables, isolated_methods, label_by_construction, replicated_table

    df = _metrics({"finetune": [14.0, 15.0, 16.0], "lfsgan": [10.0, 11.0, 12.0]})
    df.loc[df.method == "lfsgan", "fid"] = 10.0  # an isolated method: every earlier task unchanged
    df["method"] = [m if r == 0 else f"{m}@r{r}" for m, r in zip(df.method, df.replicate)]
    _, avg = forgetting_tables(df)
    isolated = isolated_methods(METHODS)
    assert isolated == {"lfsgan", "lfsgan-noms"}
    avg = label_by_construction(avg, isolated)
    notes = dict(zip(avg.method + "/" + avg.metric, avg.note))
    assert notes["lfsgan@r2/fid"] == BY_CONSTRUCTION and notes["finetune@r1/fid"] == ""
    last = df[df.after_task == "b"].assign(base_method=[m.partition("@")[0] for m in df[df.after_task == "b"].method])
    rep = replicated_table(last[["base_method", "task", *METRICS]], avg, isolated).set_index(["method", "task"])
    assert rep.loc[("lfsgan", "average forgetting"), "fid"] == f"0 ({BY_CONSTRUCTION})"
    assert rep.loc[("finetune", "average forgetting"), "fid"].startswith("4 ± ")  # (14, 15, 16) − (10, 11, 12)
    assert BY_CONSTRUCTION not in rep.loc[("lfsgan", "a"), "fid"]


def _verdicts(df):
    return dict(zip(claims_table(df, METHODS)["claim"], claims_table(df, METHODS)["verdict"]))


def test_claims_follow_the_metrics():
    df = _metrics({"finetune": [60, 62, 64], "ewc": [20, 21, 22], "lfsgan": [10, 11, 12], "lfsgan-noms": [10, 11, 12]})
    assert replicate_values(df, "ewc", "forgetting:fid") == [10.0, 10.0, 10.0]
    v = _verdicts(df)
    assert v["EWC forgets less than fine-tuning (average FID forgetting)"] == "supported"
    assert v["the mode-seeking loss raises diversity (B-LPIPS)"] == "supported"
    assert v["learning a new task does not change the earlier ones (average FID forgetting)"].startswith("not evidence")
    correspondence = "adapting through LeFT keeps each latent's source shape better than fine-tuning (same-latent correspondence)"
    assert v[correspondence] == "supported"  # LFS-GAN 0.80-0.82 against fine-tuning's 0.55-0.57
    swapped = df.assign(correspondence=[c - 0.5 if m == "lfsgan" else c for m, c in zip(df.method, df.correspondence)])
    assert _verdicts(swapped)[correspondence] == "contradicted"  # LFS-GAN now 0.30-0.32, below fine-tuning
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


# --- claims whose sides are analyses, not method rows -------------------------------------------------

from lfsgan.io import save_checkpoint  # noqa: E402
from lfsgan.report.claim_inputs import (  # noqa: E402
    fisher_by_group,
    pair_table,
    source_distance,
    task_weight_changes,
    weight_change,
)
from lfsgan.report.evidence import rank_correlation  # noqa: E402

FISHER_CLAIM = "the last layers carry the largest Fisher information (mean diagonal Fisher per parameter)"
CHANGE_CLAIM = "under plain fine-tuning the last layers change least (‖θ_task − θ_source‖ / ‖θ_source‖)"
DISTANCE_CLAIM = "EWC works worse the further the target is from the source (rank correlation)"
BARRIER_CLAIM = "weight matching cuts the LMC barrier (FID barrier)"
L2_CLAIM = "…while lowering the L2 distance only modestly (less than it lowers the barrier)"
TOP_CLAIM = "weight matching aligns the top singular vectors more than the tail (per-index alignment)"
R_CLAIM = "weight matching aligns the top singular vectors more than the tail (R(γ))"


def _analysis_verdicts(df=None, **analyses):
    df = _metrics({"finetune": [60], "ewc": [20]}) if df is None else df
    table = claims_table(df, METHODS, **analyses)
    return dict(zip(table["claim"], table["verdict"]))


def test_rank_correlation_from_known_values():
    # ρ = 1 − 6 Σd² / (n(n² − 1)) = 1 − 6·4/120 = 0.8; Fisher z with Bonett–Wright's standard error
    e = rank_correlation([1, 2, 3, 4, 5], [1, 3, 2, 5, 4])
    half = 1.959963984540054 * math.sqrt((1 + 0.8**2 / 2) / 2)
    assert e.mean == pytest.approx(0.8) and e.n == 5
    assert e.low == pytest.approx(math.tanh(math.atanh(0.8) - half)) and e.high == pytest.approx(math.tanh(math.atanh(0.8) + half))
    assert verdict(e, 0.0, "greater") == "inconclusive (intervals overlap)"
    assert verdict(rank_correlation(range(8), range(8)), 0.0, "greater") == "supported"
    assert verdict(rank_correlation(range(8), range(8, 0, -1)), 0.0, "greater") == "contradicted"
    # points that share x (replicates of one task): the interval counts the distinct x only
    assert rank_correlation([1, 1, 2, 2, 3, 3], [1, 2, 3, 4, 5, 6], n_independent=3).low is None
    assert verdict(rank_correlation([1, 2, 3], [1, 2, 3]), 0.0, "greater") == "inconclusive (n = 3)"


def _layers(last: float, rest: float) -> pd.DataFrame:
    """A Fisher per-layer table (lfsgan.fisher.fisher_summary's columns) of a 16-px generator."""
    rows = [("style.1", "mapping", 0, 256, 1e3), ("conv1", "synthesis", 4, 100, rest), ("convs.0", "synthesis", 8, 300, rest),
            ("convs.2", "synthesis", 16, 200, last), ("to_rgbs.1", "synthesis", 16, 50, last)]
    return pd.DataFrame(rows, columns=["layer", "stage", "resolution", "n_params", "fisher_mean"])


def test_fisher_groups_are_per_parameter_means_of_the_synthesis_layers():
    t = _layers(last=2.0, rest=1.0)
    t.loc[t["layer"] == "to_rgbs.1", "fisher_mean"] = 7.0
    g = fisher_by_group(t)  # the mapping network's 1e3 is in neither group
    assert g["last"] == pytest.approx((2.0 * 200 + 7.0 * 50) / 250) and g["rest"] == pytest.approx(1.0)


def test_fisher_claim_follows_the_fisher_values():
    bigger = (_layers(3e-4, 1e-5), _layers(2.5e-4, 2e-5), _layers(2.8e-4, 1.5e-5))
    assert _analysis_verdicts(fisher=bigger)[FISHER_CLAIM] == "supported"
    smaller = (_layers(1e-5, 3e-4), _layers(2e-5, 2.5e-4), _layers(1.5e-5, 2.8e-4))
    assert _analysis_verdicts(fisher=smaller)[FISHER_CLAIM] == "contradicted"
    assert _analysis_verdicts(fisher=bigger[:1])[FISHER_CLAIM] == "inconclusive (n = 1)"  # one source seed
    assert _analysis_verdicts()[FISHER_CLAIM].startswith("not run: the source Fisher per layer")


def _generator_state() -> tuple[dict, list[str]]:
    """A 16-px generator's state dict (parameters and buffers) and its parameter names."""
    from lfsgan.train import build_models

    G = build_models({"size": 16, "style_dim": 8, "n_mlp": 1, "channel_multiplier": 1, "channel_max": 8, "lr_mlp": 0.01})[0]
    return dict(G.state_dict()), [n for n, _ in G.named_parameters()]


def test_weight_change_per_group_of_a_real_generator(tmp_path):
    torch.manual_seed(0)
    source, names = _generator_state()
    task = {k: v.clone() for k, v in source.items()}
    for k in names:  # the 16-px block (convs.2, convs.3, to_rgbs.1) moves by 1 %, every other layer by 10 %
        task[k] = source[k] * (1.01 if k.startswith(("convs.2.", "convs.3.", "to_rgbs.1.")) else 1.10)
    change = weight_change(task, source, names)
    assert change["last"] == pytest.approx(0.01, rel=1e-4) and change["rest"] == pytest.approx(0.10, rel=1e-4)  # float32 weights
    save_checkpoint(tmp_path / "task.pt", {"g": task},
                    {"workflow": {"method": "finetune@r2", "task": "a", "task_index": 0, "replicate": 2}})
    save_checkpoint(tmp_path / "adapters.pt", {"adapters": {"x": torch.ones(2)}},
                    {"workflow": {"method": "lfsgan", "task": "a", "task_index": 0, "replicate": 0}})
    wc = task_weight_changes([tmp_path / "task.pt", tmp_path / "adapters.pt"], source, names)
    assert set(wc["base_method"]) == {"finetune"} and set(wc["replicate"]) == {2}  # no full "g": not a weight change
    assert wc.set_index("group").loc["last", "change"] == pytest.approx(0.01, rel=1e-4)


def _changes(last: list[float], rest: list[float]) -> pd.DataFrame:
    """Fine-tuning's weight change per (replicate, task); ``last[i]``/``rest[i]`` for the i-th of 2 tasks × reps."""
    rows = []
    for i, (lv, rv) in enumerate(zip(last, rest)):
        for group, v in (("last", lv), ("rest", rv)):
            rows.append({"method": "finetune", "base_method": "finetune", "replicate": i // 2, "task": "ab"[i % 2],
                         "task_index": i % 2, "group": group, "change": v})
    return pd.DataFrame(rows)


def test_weight_change_claim_follows_the_changes():
    df = _metrics({"finetune": [60, 62, 64], "ewc": [20, 21, 22]})
    least = _changes([0.01, 0.012, 0.011, 0.013, 0.01, 0.012], [0.1, 0.12, 0.11, 0.13, 0.1, 0.12])
    assert _analysis_verdicts(df, weight_change=least)[CHANGE_CLAIM] == "supported"
    most = _changes([0.1, 0.12, 0.11, 0.13, 0.1, 0.12], [0.01, 0.012, 0.011, 0.013, 0.01, 0.012])
    assert _analysis_verdicts(df, weight_change=most)[CHANGE_CLAIM] == "contradicted"
    assert _analysis_verdicts(df, weight_change=least.iloc[:2])[CHANGE_CLAIM] == "inconclusive (n = 1)"
    assert _analysis_verdicts(df)[CHANGE_CLAIM].startswith("not run: fine-tuning's task.pt files and the source")
    no_ft = claims_table(df[df["method"] == "ewc"], METHODS, weight_change=least).set_index("claim")
    assert no_ft.loc[CHANGE_CLAIM, "verdict"] == "not run: the config has no fine-tuning row"


def _own_fid(gaps: list[float], reps: int = 2) -> pd.DataFrame:
    """Own-task FID of fine-tuning (50 + r) and EWC (fine-tuning + gaps[task]) on tasks t0, t1, …"""
    rows = []
    for rep in range(reps):
        for i, gap in enumerate(gaps):
            for method, fid in (("finetune", 50.0 + rep), ("ewc", 50.0 + rep + gap + 0.1 * rep)):
                rows.append({"method": method, "base_method": method, "replicate": rep, "after_task": f"t{i}",
                             "after_index": i, "task": f"t{i}", "task_index": i, "fid": fid,
                             "kid_mean": 0.0, "intra_lpips": 0.1, "b_lpips": 0.1})
    return pd.DataFrame(rows)


def test_distance_claim_follows_the_gaps():
    distance = pd.DataFrame({"task": [f"t{i}" for i in range(6)], "distance": [5.0, 9.0, 14.0, 20.0, 31.0, 40.0]})
    worse = _own_fid([1.0, 2.0, 4.0, 7.0, 9.0, 15.0])
    assert _analysis_verdicts(worse, distance=distance)[DISTANCE_CLAIM] == "supported"
    better = _own_fid([15.0, 9.0, 7.0, 4.0, 2.0, 1.0])
    assert _analysis_verdicts(better, distance=distance)[DISTANCE_CLAIM] == "contradicted"
    three = _own_fid([1.0, 2.0, 4.0])  # three tasks: no interval, whatever the replicates
    assert _analysis_verdicts(three, distance=distance)[DISTANCE_CLAIM] == "inconclusive (n = 3)"
    one_rep = _own_fid([1.0, 2.0, 4.0, 7.0, 9.0, 15.0], reps=1)
    assert _analysis_verdicts(one_rep, distance=distance.iloc[:1])[DISTANCE_CLAIM] == "inconclusive (n = 1)"
    missing = _analysis_verdicts(worse, distance="the real source set's FID features")[DISTANCE_CLAIM]
    assert missing == "not run: the real source set's FID features"


def _pairs(naive, matched, l2, top=(0.6, 0.5, 0.7), tail=(0.05, 0.02, 0.04)) -> pd.DataFrame:
    return pd.DataFrame({"pair": [f"0_{i + 1}" for i in range(len(naive))], "naive_barrier": naive, "matched_barrier": matched,
                         "barrier_reduction": [1 - m / n if n > 0 else float("nan") for n, m in zip(naive, matched)], "l2_reduction": l2,
                         "top_gain": top[: len(naive)], "tail_gain": tail[: len(naive)]})


def test_weight_matching_claims_follow_the_pairs():
    cut = _pairs(naive=[40.0, 45.0, 50.0], matched=[5.0, 6.0, 4.0], l2=[0.05, 0.07, 0.06])
    v = _analysis_verdicts(pairs=cut)
    assert v[BARRIER_CLAIM] == "supported" and v[L2_CLAIM] == "supported" and v[TOP_CLAIM] == "supported"
    assert v[R_CLAIM].startswith("not run: R(γ) at two or more thresholds")  # the fixture has one γ only
    no_cut = _pairs(naive=[5.0, 6.0, 4.0], matched=[40.0, 45.0, 50.0], l2=[0.05, 0.07, 0.06], top=(0.01, 0.0, 0.02), tail=(0.3, 0.4, 0.35))
    v = _analysis_verdicts(pairs=no_cut)
    assert v[BARRIER_CLAIM] == "contradicted" and v[TOP_CLAIM] == "contradicted"
    assert v[L2_CLAIM] == "contradicted"  # the barrier grew: a 6 % L2 reduction is more than its (negative) reduction
    flat = _pairs(naive=[0.0, 0.0, 0.0], matched=[5.0, 6.0, 4.0], l2=[0.05, 0.07, 0.06])  # no naive barrier to reduce
    assert _analysis_verdicts(pairs=flat)[L2_CLAIM] == "inconclusive (no source pair has a naive barrier > 0 to reduce)"
    big_l2 = _pairs(naive=[40.0, 45.0, 50.0], matched=[30.0, 33.0, 38.0], l2=[0.7, 0.75, 0.72])
    assert _analysis_verdicts(pairs=big_l2)[L2_CLAIM] == "contradicted"
    one = _analysis_verdicts(pairs=cut.iloc[:1])  # two source seeds: one pair
    assert one[BARRIER_CLAIM] == "inconclusive (n = 1)" and one[TOP_CLAIM] == "inconclusive (n = 1)"
    none = _analysis_verdicts()
    assert none[BARRIER_CLAIM].startswith("not run: LMC curves of >= 2 source seeds")
    assert none[TOP_CLAIM].startswith("not run: weight matching of >= 2 source seeds")


def test_pair_table_reads_match_svd_and_lmc_outputs(tmp_path):
    for pair, (top_after, r_high) in {"0_1": (0.8, 0.6), "0_2": (0.7, 0.5), "1_2": (0.75, 0.55)}.items():
        (tmp_path / "permutation" / pair).mkdir(parents=True)
        (tmp_path / "lmc" / pair).mkdir(parents=True)
        (tmp_path / "permutation" / pair / "match.json").write_text(json.dumps({
            "g_l2_reduction": 0.04, "gammas": [0.0, 0.3], "g_r_gamma_0_before": 0.01, "g_r_gamma_0_after": 0.11,
            "g_r_gamma_0.3_before": 0.02, "g_r_gamma_0.3_after": r_high}))
        pd.DataFrame({"layer": ["a", "b", "c"], "align_top_before": [0.0, 0.1, 0.2], "align_top_after": [top_after, 0.9, 0.9],
                      "align_tail_before": [0.0, 0.0, float("nan")], "align_tail_after": [0.1, 0.2, float("nan")]}
                     ).to_csv(tmp_path / "permutation" / pair / "svd.csv", index=False)
        (tmp_path / "lmc" / pair / "lmc.json").write_text(json.dumps({"naive_fid_barrier_linear": 40.0, "matched_fid_barrier_linear": 10.0}))
    t = pair_table(sorted(tmp_path.glob("permutation/*/match.json")), sorted(tmp_path.glob("lmc/*/lmc.json"))).set_index("pair")
    # layer c has no tail: it is left out of both means
    assert t.loc["0_1", "top_gain"] == pytest.approx((0.8 + 0.8) / 2) and t.loc["0_1", "tail_gain"] == pytest.approx(0.15)
    assert t.loc["0_2", "r_gain_high"] == pytest.approx(0.48) and t.loc["0_2", "r_gain_low"] == pytest.approx(0.10)
    assert t.loc["0_1", "barrier_reduction"] == pytest.approx(0.75) and t.loc["0_1", "l2_reduction"] == 0.04
    assert _analysis_verdicts(pairs=t.reset_index())[R_CLAIM] == "supported"  # 3 pairs: 0.53 ± 0.12 vs 0.10


def test_source_distance_is_the_fid_of_the_cached_real_features(tmp_path):
    torch.manual_seed(0)
    base = torch.randn(64, 4, dtype=torch.float64)
    names = {"source": "real-" + "a" * 32 + "-w" + "f" * 16 + "-ldefault", "t0": "real-" + "b" * 32 + "-w" + "f" * 16 + "-ldefault",
             "t1": "real-" + "c" * 32 + "-w" + "f" * 16 + "-ldefault"}
    for key, shift in (("source", 0.0), ("t0", 1.0), ("t1", 3.0)):  # same covariance: FID = ||μ_t − μ_s||² = 4 shift²
        save_checkpoint(tmp_path / f"{names[key]}.pt", {"features": base + shift})
    (tmp_path / "lmc.json").write_text(json.dumps({"metric_protocol": {"real_stats_cache": {"name": names["source"]}}}))
    metrics = pd.DataFrame({"task": ["t0", "t1"], "protocol.fid_kid.real_stats_cache.name": [names["t0"], names["t1"]]})
    d = source_distance(metrics, [tmp_path / "lmc.json"], tmp_path).set_index("task")["distance"]
    assert d["t0"] == pytest.approx(4.0, abs=1e-6) and d["t1"] == pytest.approx(36.0, abs=1e-6)
    assert source_distance(metrics, [], tmp_path).startswith("the real source set's FID features")
    (tmp_path / f"{names['t1']}.pt").unlink()
    assert source_distance(metrics, [tmp_path / "lmc.json"], tmp_path).startswith("the FID cache entry")


def test_claims_page_markdown_keeps_one_cell_per_column():
    from lfsgan.report.tables import to_markdown

    md = to_markdown(claims_table(_metrics({"finetune": [60], "ewc": [20]}), METHODS)).splitlines()
    n_cols = md[0].count(" | ") + 1
    assert all(line.replace("\\|", "").count(" | ") + 1 == n_cols for line in md)
    assert to_markdown(pd.DataFrame({"x": ["a|b"]})).splitlines()[2] == "| a\\|b |"


def test_bad_analysis_inputs_name_their_file(tmp_path):
    from lfsgan.report.claim_inputs import read_fisher_layers

    (tmp_path / "layers.csv").write_text("layer,fisher_max\nconv1,1.0\n")
    with pytest.raises(ValueError, match="layers.csv: not a Fisher layer table"):
        read_fisher_layers(tmp_path / "layers.csv")
    (tmp_path / "0_1").mkdir()
    (tmp_path / "0_1" / "lmc.json").write_text(json.dumps({"naive_fid_barrier_max": 3.0}))
    with pytest.raises(ValueError, match=r"lmc.json: no 'naive_fid_barrier_linear'.*rerun `lfsgan lmc`"):
        pair_table([], [tmp_path / "0_1" / "lmc.json"])
