"""The claims page: each claim of the papers the workflow can test, its compared sides (mean ± 95 %
CI, with n) and a verdict computed from those numbers — never written by hand.

A side is either a *method row* (:class:`Row`) of the tidy table of evaluation results
(:func:`lfsgan.report.tables.collect_metrics`, one row per method, replicate, after-task and task),
found by what the method is in the config (``kind: ewc``; ``kind: lfsgan`` with ``mode_seeking:
off``), not by its name; or a *measure* (:class:`Measure`) of the workflow's analysis outputs
(:class:`ClaimInputs`: the Fisher per layer, fine-tuning's weight change, weight matching per source
pair, the tasks' distance from the source; read by :mod:`lfsgan.report.claim_inputs`); or a fixed
number (a correlation against 0). A claim whose input the config does not produce is listed as
*not run*, saying what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import pandas as pd

from lfsgan.report.claim_inputs import LAST, REST, fisher_by_group
from lfsgan.report.evidence import Estimate, detectable_difference, estimate, rank_correlation, verdict
from lfsgan.report.tables import METRICS, isolated_methods


class NotRun(Exception):
    """A side's input is not produced by this config; the message says what is needed."""


class Undefined(Exception):
    """A side's input was produced but its quantity is undefined on it (e.g. a relative reduction of a
    zero barrier); the message says why, and the verdict is inconclusive for that reason."""


@dataclass(frozen=True)
class ClaimInputs:
    """Everything a claim may read. ``fisher``: one ``layers.csv`` table per Fisher (source seed);
    ``weight_change``: :func:`~lfsgan.report.claim_inputs.task_weight_changes`; ``pairs``:
    :func:`~lfsgan.report.claim_inputs.pair_table`; ``distance``:
    :func:`~lfsgan.report.claim_inputs.source_distance` (or the sentence saying what it lacks)."""

    metrics: pd.DataFrame
    methods: dict[str, dict]
    fisher: tuple[pd.DataFrame, ...] = ()
    weight_change: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    distance: pd.DataFrame | str | None = None


def _method_column(df: pd.DataFrame) -> str:
    return "base_method" if "base_method" in df else "method"


def _first_method(inputs: ClaimInputs, pick: Callable[[dict[str, Any]], bool], label: str) -> str:
    """The first config method ``pick`` accepts that has results, else :class:`NotRun`."""
    present = set(inputs.metrics[_method_column(inputs.metrics)])
    names = [m for m, entry in inputs.methods.items() if pick(entry) and m in present]
    if not names:
        raise NotRun(f"the config has no {label} row")
    return names[0]


@dataclass(frozen=True)
class Row:
    """One side of a comparison: a method chosen by a predicate on its config entry, and a quantity."""

    label: str
    pick: Callable[[dict[str, Any]], bool]
    quantity: str  # "own:<metric>" (task s after task s) or "forgetting:<metric>"

    def measure(self, inputs: ClaimInputs) -> tuple[str, Estimate]:
        name = _first_method(inputs, self.pick, self.label)
        values = [v for v in replicate_values(inputs.metrics, name, self.quantity) if v == v]  # NaN: no such row
        if not values:
            raise NotRun(f"{name} has no {self.quantity} value in the metrics (forgetting needs >= 2 tasks)")
        isolated = self.quantity.startswith("forgetting:") and name in isolated_methods(inputs.methods)
        return name, estimate(values, by_construction=isolated)


@dataclass(frozen=True)
class Measure:
    """One side computed from the analysis outputs: ``compute(inputs)`` gives its estimate or raises
    :class:`NotRun`."""

    label: str
    quantity: str
    compute: Callable[[ClaimInputs], Estimate]

    def measure(self, inputs: ClaimInputs) -> tuple[str, Estimate]:
        return self.label, self.compute(inputs)


Side = Union[Row, Measure]


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str
    text: str
    left: Side
    right: Side | float  # a number: a fixed reference (e.g. ρ = 0)
    expect: str  # evidence.DIRECTIONS: what left should be relative to right


def _kind(kind: str, **options: Any) -> Callable[[dict[str, Any]], bool]:
    def pick(entry: dict[str, Any]) -> bool:
        opts = entry.get("options") or {}
        return entry["kind"] == kind and all(opts.get(k) == v for k, v in options.items())

    return pick


def _lfsgan_with_ms(entry: dict[str, Any]) -> bool:
    return entry["kind"] == "lfsgan" and (entry.get("options") or {}).get("mode_seeking", "intended") != "off"


def _fisher(group: str) -> Callable[[ClaimInputs], Estimate]:
    """Mean diagonal Fisher per parameter of ``group``, one value per Fisher (source seed)."""

    def compute(inputs: ClaimInputs) -> Estimate:
        if not inputs.fisher:
            raise NotRun("the source Fisher per layer (results/fisher/layers.csv of rule fisher)")
        return estimate([fisher_by_group(t)[group] for t in inputs.fisher])

    return compute


def _change(group: str) -> Callable[[ClaimInputs], Estimate]:
    """Relative weight change of ``group`` under plain fine-tuning, one value per replicate × task."""

    def compute(inputs: ClaimInputs) -> Estimate:
        name = _first_method(inputs, _kind("finetune"), "fine-tuning")
        wc = inputs.weight_change
        if wc is None or wc.empty or name not in set(wc["base_method"]):
            raise NotRun("fine-tuning's task.pt files and the source checkpoint (report --tasks, --source)")
        rows = wc[(wc["base_method"] == name) & (wc["group"] == group)].sort_values(["replicate", "task_index"])
        return estimate(rows["change"])

    return compute


def _pairs(column: str, needs: str, undefined: str = "") -> Callable[[ClaimInputs], Estimate]:
    """``column`` of the source-pair table, one value per pair (NaN where ``undefined`` says why)."""

    def compute(inputs: ClaimInputs) -> Estimate:
        pairs = inputs.pairs
        if pairs is None or pairs.empty or column not in pairs:
            raise NotRun(needs)
        if pairs[column].isna().all():
            raise Undefined(undefined or f"{column} is undefined for every source pair")
        return estimate(pairs[column])

    return compute


_NEEDS_MATCH = "weight matching of >= 2 source seeds (permutation enabled; match.json, svd.csv)"
_NEEDS_LMC = "LMC curves of >= 2 source seeds (permutation enabled; lmc.json)"
_NEEDS_GAMMAS = "R(γ) at two or more thresholds (permutation.gammas with >= 2 values)"


def _ewc_distance_trend(inputs: ClaimInputs) -> Estimate:
    """Spearman ρ between each task's distance from the source and EWC's own-task FID minus fine-tuning's
    (same replicate, same task), over tasks × replicates; the interval counts the tasks (the distances)."""
    if inputs.distance is None or isinstance(inputs.distance, str):
        raise NotRun(inputs.distance or "each task's FID(real target, real source)")
    df = inputs.metrics
    own = df[df["after_task"] == df["task"]]
    col = _method_column(df)
    if "replicate" not in own:
        own = own.assign(replicate=0)
    sides = {}
    for label, kind in (("EWC", "ewc"), ("fine-tuning", "finetune")):
        name = _first_method(inputs, _kind(kind), label)
        sides[label] = own[own[col] == name].set_index(["replicate", "task"])["fid"]
    gap = (sides["EWC"] - sides["fine-tuning"]).dropna().reset_index(name="gap")
    distance = inputs.distance.set_index("task")["distance"]
    gap = gap[gap["task"].isin(distance.index)]
    return rank_correlation(distance.loc[gap["task"]].to_numpy(), gap["gap"].to_numpy(), n_independent=gap["task"].nunique())


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
    Claim("left-correspondence", "CDC (Ojha et al. 2021) / LFS-GAN",
          "adapting through LeFT keeps each latent's source shape better than fine-tuning (same-latent correspondence)",
          Row("LFS-GAN", _kind("lfsgan"), "own:correspondence"), Row("fine-tuning", _kind("finetune"), "own:correspondence"),
          "greater"),
    Claim("ewc-forgetting", "EWC (Li et al. 2020)", "EWC forgets less than fine-tuning (average FID forgetting)",
          Row("EWC", _kind("ewc"), "forgetting:fid"), Row("fine-tuning", _kind("finetune"), "forgetting:fid"), "less"),
    Claim("ewc-diversity", "EWC (Li et al. 2020)", "EWC keeps more of the source's diversity on 10 shots (intra-cluster LPIPS)",
          Row("EWC", _kind("ewc"), "own:intra_lpips"), Row("fine-tuning", _kind("finetune"), "own:intra_lpips"), "greater"),
    Claim("isolation", "LFS-GAN / Piggyback GAN", "learning a new task does not change the earlier ones (average FID forgetting)",
          Row("LFS-GAN", _kind("lfsgan"), "forgetting:fid"), Row("fine-tuning", _kind("finetune"), "forgetting:fid"), "less"),
    Claim("fisher-last", "EWC (Li et al. 2020)",
          "the last layers carry the largest Fisher information (mean diagonal Fisher per parameter)",
          Measure("last layers", "Fisher: output-resolution synthesis block", _fisher(LAST)),
          Measure("earlier layers", "Fisher: lower-resolution synthesis layers", _fisher(REST)), "greater"),
    Claim("finetune-last-change", "EWC (Li et al. 2020)",
          "under plain fine-tuning the last layers change least (‖θ_task − θ_source‖ / ‖θ_source‖)",
          Measure("last layers", "fine-tuning weight change: output-resolution synthesis block", _change(LAST)),
          Measure("earlier layers", "fine-tuning weight change: lower-resolution synthesis layers", _change(REST)), "less"),
    Claim("ewc-distance", "EWC (Li et al. 2020)",
          "EWC works worse the further the target is from the source (rank correlation)",
          Measure("EWC vs distance", "Spearman ρ of FID(real target, real source) and FID(EWC) − FID(fine-tuning), "
                  "per task × replicate (CI over tasks)", _ewc_distance_trend), 0.0, "greater"),
    Claim("wm-barrier", "Ito et al. 2024 (claim 1)", "weight matching cuts the LMC barrier (FID barrier)",
          Measure("matched path", "FID barrier of A → π(B), per source pair", _pairs("matched_barrier", _NEEDS_LMC)),
          Measure("naive path", "FID barrier of A → B, per source pair", _pairs("naive_barrier", _NEEDS_LMC)), "less"),
    Claim("wm-l2-modest", "Ito et al. 2024 (claim 1)",
          "…while lowering the L2 distance only modestly (less than it lowers the barrier)",
          Measure("L2 reduction", "1 − ‖W_A − π(W_B)‖ / ‖W_A − W_B‖, per source pair", _pairs("l2_reduction", _NEEDS_MATCH)),
          Measure("barrier reduction", "1 − barrier(matched) / barrier(naive), per source pair",
                  _pairs("barrier_reduction", _NEEDS_LMC, "no source pair has a naive barrier > 0 to reduce")), "less"),
    Claim("wm-top-vs-tail", "Ito et al. 2024 (claim 2)",
          "weight matching aligns the top singular vectors more than the tail (per-index alignment)",
          Measure("top-k", "gain in (u_i^A·u_i^B)(v_i^A·v_i^B) over the top-k pairs, mean over layers, per source pair",
                  _pairs("top_gain", _NEEDS_MATCH)),
          Measure("tail", "the same over the tail pairs", _pairs("tail_gain", _NEEDS_MATCH)), "greater"),
    Claim("wm-r-gamma", "Ito et al. 2024 (claim 2)",
          "weight matching aligns the top singular vectors more than the tail (R(γ))",
          Measure("R(γ), largest γ", "R_after − R_before at the largest γ, per source pair", _pairs("r_gain_high", _NEEDS_GAMMAS)),
          Measure("R(γ), smallest γ", "R_after − R_before at the smallest γ, per source pair", _pairs("r_gain_low", _NEEDS_GAMMAS)),
          "greater"),
)


def replicate_values(df: pd.DataFrame, method: str, quantity: str) -> list[float]:
    """One value per replicate of ``method``: the mean over tasks of the metric read right after
    learning the task (``own:``), or its average forgetting (``forgetting:``: mean over s < T of
    metric(s after T) − metric(s after s), sign-flipped where higher is better)."""
    what, metric = quantity.split(":")
    if metric not in df:
        return []  # a table without the metric (e.g. built by hand): the claim is not run
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


def claims_table(df: pd.DataFrame, methods: dict[str, dict], **analyses: Any) -> pd.DataFrame:
    """One row per claim: the paper, the claim, both sides (what is compared, mean ± CI, n) and the
    verdict. ``analyses`` are the other fields of :class:`ClaimInputs` (``fisher``, ``weight_change``,
    ``pairs``, ``distance``); a claim whose input is missing says ``not run: <what it needs>``."""
    inputs = ClaimInputs(df, methods, **analyses)
    out = []
    for c in CLAIMS:
        shown, values, missing, undefined = [], [], [], []
        for side in (c.left, c.right):
            if not isinstance(side, (Row, Measure)):
                shown.append(f"{side:g} (fixed)")
                values.append(float(side))
                continue
            try:
                name, value = side.measure(inputs)
            except NotRun as e:
                name, value = side.label, None
                missing.append(str(e))
            except Undefined as e:
                name, value = side.label, None
                undefined.append(str(e))
            shown.append(f"{name}: {side.quantity}")
            values.append(value)
        if missing:
            result = "not run: " + "; ".join(dict.fromkeys(missing))
        elif undefined:
            result = f"inconclusive ({'; '.join(undefined)})"
        else:
            result = verdict(values[0], values[1], c.expect)
        out.append({
            "claim": c.text, "paper": c.paper,
            "left": shown[0], "left_value": _shown(values[0]),
            "expect": c.expect.replace("_", " "),
            "right": shown[1], "right_value": _shown(values[1]),
            "verdict": result,
            "detectable": _detectable(values, result),
        })
    return pd.DataFrame(out)


def _detectable(values: list, result: str) -> str:
    """For an inconclusive verdict on two intervals: the smallest difference of means they could have
    called at this n (:func:`detectable_difference`), as the claims page states it."""
    if not result.startswith("inconclusive") or any(v is None for v in values):
        return ""
    gap = detectable_difference(values[0], values[1])
    return "" if gap is None else f"|Δ| > {gap:.3g}"


def _shown(value: Estimate | float | None) -> str:
    return "" if value is None else str(value) if isinstance(value, Estimate) else f"{value:g}"
