"""pandas tables: the per-method × task summary and the forgetting matrices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from lfsgan.config import REPLICATE_SEP
from lfsgan.metrics.forgetting import average_forgetting, forgetting_matrix

#: metric -> whether a higher value is better (correspondence: the same-latent correspondence to the
#: source's samples, lfsgan.metrics.correspondence; absent from metrics files written before it existed)
METRICS: dict[str, bool] = {"fid": False, "kid_mean": False, "intra_lpips": True, "b_lpips": True, "correspondence": True}


def collect_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (method, after_task, task) from ``lfsgan evaluate`` JSON files, with the
    protocol flattened into ``protocol.*`` columns."""
    rows = []
    for p in paths:
        rec = json.loads(Path(p).read_text())
        row = {k: rec[k] for k in ("method", "after_task", "task", "task_index", "after_index")}
        base, _, rep = row["method"].partition(REPLICATE_SEP)  # replicate k >= 1 runs as <method>@r<k>
        row.update(base_method=base, replicate=int(rep) if rep else 0)
        row.update({m: rec.get(m) for m in [*METRICS, "kid_std", "entropy"]})
        for key, value in _flatten(rec.get("protocol", {}), "protocol").items():
            row[key] = value
        rows.append(row)
    if not rows:
        raise ValueError("no metrics files given to the report")
    return pd.DataFrame(rows).sort_values(["method", "after_index", "task_index"]).reset_index(drop=True)


def _flatten(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def summary_table(df: pd.DataFrame, params_added: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Metrics of every (method, task) read after the last task, with the parameters the task added
    (counted from the stored per-task artefacts) and the protocol columns."""
    last = df.groupby("method")["after_index"].transform("max")
    final = df[df["after_index"] == last].copy()
    final["params_added"] = [params_added.get((m, t)) for m, t in zip(final["method"], final["task"])]
    lead = ["method", "task", *METRICS, "kid_std", "entropy", "params_added"]
    rest = [c for c in final.columns if c not in lead and c not in ("after_task", "after_index", "task_index")]
    return final[lead + rest].reset_index(drop=True)


def forgetting_tables(df: pd.DataFrame) -> tuple[dict[tuple[str, str], pd.DataFrame], pd.DataFrame]:
    """Per (method, metric): the matrix metric(task s after task t); and the average forgetting of
    every method and metric: mean over s < T of metric(s after T) − metric(s after s), sign-flipped
    for metrics where higher is better, so that positive always means old tasks got worse."""
    records = [
        {"method": r.method, "after_task": r.after_task, "task": r.task, "metric": m, "value": getattr(r, m)}
        for r in df.itertuples()
        for m in METRICS
    ]
    matrices = {}
    avg_rows = []
    task_order = list(dict.fromkeys(df.sort_values("task_index")["task"]))
    for metric, higher_is_better in METRICS.items():
        rows = [r for r in records if r["metric"] == metric and r["value"] is not None]
        if not rows:
            continue
        for method, mat in forgetting_matrix(rows, metric=metric, task_order=task_order).items():
            matrices[(method, metric)] = mat
            avg_rows.append(
                {"method": method, "metric": metric, "average_forgetting": average_forgetting(mat, higher_is_better)}
            )
    return matrices, pd.DataFrame(avg_rows)


#: method kinds whose tasks are stored apart and never changed: their forgetting is zero by construction
ISOLATED_KINDS = ("lfsgan", "piggyback")


def isolated_methods(methods: dict) -> set[str]:
    """Names of the config's ``methods`` entries whose kind isolates each task's state."""
    return {name for name, entry in methods.items() if entry["kind"] in ISOLATED_KINDS}


def label_by_construction(avg: pd.DataFrame, isolated: Iterable[str]) -> pd.DataFrame:
    """The average-forgetting table with a ``note`` column: the by-construction label on every run of
    an isolated method (its zero is not a measurement), empty otherwise."""
    from lfsgan.report.evidence import BY_CONSTRUCTION

    isolated = set(isolated)
    return avg.assign(note=[BY_CONSTRUCTION if m.partition(REPLICATE_SEP)[0] in isolated else "" for m in avg["method"]])


def replicated_table(summary: pd.DataFrame, avg: pd.DataFrame, isolated: Iterable[str] = ()) -> pd.DataFrame:
    """Per method and task, every metric after the last task as mean ± 95 % CI over the replicates
    (n given), and per method its average forgetting likewise (task ``"average forgetting"``); for the
    ``isolated`` methods that forgetting is labelled by construction instead of given an interval."""
    from lfsgan.report.evidence import estimate

    isolated = set(isolated)

    rows = []
    for (method, task), g in summary.groupby(["base_method", "task"], sort=False):
        rows.append({"method": method, "task": task, "n": len(g),
                     **{m: str(estimate(g[m])) if g[m].notna().any() else "" for m in METRICS}})
    if not avg.empty:
        avg = avg.assign(base_method=[m.partition(REPLICATE_SEP)[0] for m in avg["method"]])
        for method, g in avg.groupby("base_method", sort=False):
            values = {r.metric: [] for r in g.itertuples()}
            for r in g.itertuples():
                values[r.metric].append(r.average_forgetting)
            rows.append({"method": method, "task": "average forgetting", "n": max(len(v) for v in values.values()),
                         **{m: str(estimate(v, by_construction=method in isolated))
                            for m, v in values.items() if any(x == x for x in v)}})
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency); ``|`` inside a cell is escaped."""

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v).replace("|", "\\|")  # a bare | would split the cell

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, sep, *body]) + "\n"


#: columns of the quality read-out table (lfsgan.metrics.quality), after the generator's identity
#: below this share of confident samples the report says a generator makes nothing recognisable
UNRECOGNISED_SHARE = 0.1
QUALITY_COLUMNS = ["confident_share", "domain_share", "coverage", "coverage_of", "top_digit", "top_digit_share",
                   "correspondence", "memorised_share", "spread_ratio", "collapsed"]


def quality_table(metrics: Iterable[str | Path], sources: Iterable[str | Path] = ()) -> pd.DataFrame:
    """One row per generator read out: every source seed (``lfsgan quality`` JSONs) and every
    (method, after task t, task s) (the ``quality`` block of ``lfsgan evaluate`` JSONs).

    Columns: ``generator, domain, confident_share, domain_share, coverage, coverage_of, top_digit,
    top_digit_share, correspondence, memorised_share, spread_ratio, collapsed, digit_histogram,
    collapse_reasons, skipped`` (the reason when the read-out did not run, else empty; a field a file
    predates is None). ``correspondence`` is the metrics file's same-latent correspondence to the source's
    samples (every method row, every replicate; None for the sources themselves). ``source <seed>
    restyled`` rows (one per built-in task) read the source's samples redrawn by that task's recipe: the
    most a task generator from that source can reach.
    """
    rows = []
    for p in sources:
        rec = json.loads(Path(p).read_text())
        rows.append({"generator": f"source {rec['source']}", "after_index": -1, "task_index": -1,
                     "domain": rec["domain"], **_quality_fields(rec["quality"])})
        for task, block in rec.get("restyled", {}).items():  # the ceiling: the source's samples in the task's style
            rows.append({"generator": f"source {rec['source']} restyled", "after_index": -1, "task_index": -1,
                         "domain": task, **_quality_fields(block)})
    for p in metrics:
        rec = json.loads(Path(p).read_text())
        q = rec.get("quality", {"skipped": "metrics file written before the quality read-out existed"})
        rows.append({"generator": f"{rec['method']} after {rec['after_task']}", "after_index": rec["after_index"],
                     "task_index": rec["task_index"], "domain": rec["task"],
                     **_quality_fields(q), "correspondence": rec.get("correspondence")})
    if not rows:
        return pd.DataFrame(columns=["generator", "domain", *QUALITY_COLUMNS, "digit_histogram", "collapse_reasons", "skipped"])
    df = pd.DataFrame(rows).sort_values(["after_index", "generator", "task_index"], kind="stable")
    return df.drop(columns=["after_index", "task_index"]).reset_index(drop=True)


def _quality_fields(q: dict) -> dict:
    if "skipped" in q:
        return {**{c: None for c in QUALITY_COLUMNS}, "digit_histogram": None, "collapse_reasons": "", "skipped": q["skipped"]}
    return {**{c: q.get(c) for c in QUALITY_COLUMNS}, "digit_histogram": json.dumps(q["digit_histogram"]),
            "collapse_reasons": "; ".join(q["collapse_reasons"]), "skipped": ""}


def collapse_statement(quality: pd.DataFrame) -> str:
    """The report's plain sentence: which generators collapsed (or none, or why nothing was read)."""
    if quality.empty or quality["skipped"].astype(bool).all():
        why = quality["skipped"].iloc[0] if not quality.empty else "no generator was read out"
        return f"No quality read-out: {why}.\n"
    quality = quality[~quality["generator"].str.endswith(" restyled")]  # references (the ceiling), not generators
    bad = quality[quality["collapsed"] == True]  # noqa: E712 (None for skipped rows)
    if bad.empty:
        lines = [f"No generator met the collapse criterion ({len(quality)} read out)."]
    else:
        lines = [f"**{len(bad)} of {len(quality)} generators have collapsed:**\n"]
        lines += [f"- {r.generator}, {r.domain}: {r.collapse_reasons}" for r in bad.itertuples()]
    vague = quality[quality["confident_share"].astype(float) < UNRECOGNISED_SHARE]
    if not vague.empty:  # not a collapse, but nothing a reader would call a digit either
        names = ", ".join(f"{r.generator} ({r.domain})" for r in vague.itertuples())
        lines.append(f"\n**{len(vague)} of {len(quality)} generators make almost nothing the digit head recognises** "
                     f"(< {UNRECOGNISED_SHARE:.0%} confident samples): {names}.")
    return "\n".join(lines) + "\n"
