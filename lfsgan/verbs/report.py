"""`lfsgan report`: summary table, forgetting matrices, plots and sample mosaic (rule `report`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from lfsgan.io import atomic_path, load_checkpoint, write_json
from lfsgan.metrics import count_tensors
from lfsgan.report.merging import claim3_verdict, merge_comparison
from lfsgan.report import (
    collect_metrics,
    forgetting_tables,
    plot_along_tasks,
    plot_forgetting,
    sample_mosaic,
    summary_table,
    to_markdown,
)
from lfsgan.report.claim_inputs import pair_table, read_fisher_layers, source_distance, task_weight_changes
from lfsgan.report.claims import claims_table
from lfsgan.report.figures import plot_quality, same_latent_grid
from lfsgan.train import build_models
from lfsgan.verbs._models import load_source, model_config
from lfsgan.verbs.sample import check_same_latents
from lfsgan.report.tables import (METRICS, collapse_statement, isolated_methods, label_by_construction, quality_table,
                                  replicated_table)

log = logging.getLogger("lfsgan")


def _params_added(task_files: list[str]) -> dict[tuple[str, str], int]:
    """Parameters each stored per-task artefact holds (counted from the tensors, not the config)."""
    out = {}
    for f in task_files:
        tensors, meta = load_checkpoint(f)
        out[(meta["workflow"]["method"], meta["workflow"]["task"])] = count_tensors(tensors)
    return out


def _grid_key(path: str) -> tuple[str, str]:
    p = Path(path)  # results/samples/<method>/after_<t>/<task>/grid.png
    return p.parent.parent.parent.name, p.parent.name


def run(
    cfg: dict,
    metrics: list[str],
    tasks: list[str],
    out: str,
    grids: list[str] = (),
    lmc: list[str] = (),
    match: list[str] = (),
    merge: list[str] = (),
    fisher: str | None = None,
    quality: list[str] = (),
    source: str | None = None,
    cache: str | None = None,
    same_latents: list[str] = (),
) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = collect_metrics(metrics)
    params = _params_added(tasks)
    summary = summary_table(df, params)
    matrices, avg = forgetting_tables(df)
    isolated = isolated_methods(cfg["methods"])
    avg = label_by_construction(avg, isolated)
    metric_names = list(METRICS)

    with atomic_path(out / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(out / "all_metrics.csv") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out / "average_forgetting.csv") as tmp:
        avg.to_csv(tmp, index=False)
    for (method, metric), mat in matrices.items():
        with atomic_path(out / "forgetting" / f"{method}_{metric}.csv") as tmp:
            mat.to_csv(tmp)

    # DVC metrics: one flat JSON of the headline numbers (read after the last task).
    headline = {
        f"{r.method}/{r.task}/{m}": (None if pd.isna(getattr(r, m)) else float(getattr(r, m)))
        for r in summary.itertuples()
        for m in metric_names
    }
    headline.update({f"{m}/params_added_total": int(v) for m, v in _totals(params).items()})
    write_json(out / "metrics.json", headline)

    plot_forgetting(matrices, metric_names, out / "forgetting.png")
    plot_along_tasks(df, metric_names, out / "metrics_along_tasks.png")
    methods = list(dict.fromkeys(df["method"]))
    task_order = list(dict.fromkeys(df.sort_values("task_index")["task"]))
    sample_mosaic({_grid_key(g): g for g in grids}, methods, task_order, out / "samples.png")
    if same_latents:
        from lfsgan.data.demo import task_styles

        styles = task_styles(cfg["data"]["domains"], cfg["source"]["domain"], task_order)
        same_latent_figures(same_latents, task_order, out, metrics, n=cfg["evaluation"]["grid"] // 2, styles=styles)

    qual = quality_table(metrics, quality)
    with atomic_path(out / "quality.csv") as tmp:
        qual.to_csv(tmp, index=False)
    plot_quality(qual, out / "quality.png")

    claims = claims_table(df, cfg["methods"], **_analyses(cfg, df, tasks, match, lmc, fisher, source, cache))
    replicated = replicated_table(summary, avg, isolated)
    with atomic_path(out / "claims.csv") as tmp:
        claims.to_csv(tmp, index=False)
    with atomic_path(out / "replicated.csv") as tmp:
        replicated.to_csv(tmp, index=False)

    n_reps = int(df.groupby("base_method")["replicate"].nunique().min())
    md = ["# lfsgan report\n", "## Claims of the papers, tested\n",
          f"Verdicts computed from the numbers below: mean ± 95 % CI over {n_reps} replicate(s) per method row, "
          "over Fisher estimates (source seeds), fine-tuning's replicates × tasks, or source pairs for the analyses, "
          "and a Fisher-z interval over tasks for a rank correlation; inconclusive when a side has too few values "
          "for an interval or the intervals overlap.\n\n", to_markdown(claims)]
    md += ["\n## Results after the last task (mean ± 95 % CI over replicates)\n", to_markdown(replicated)]
    md += ["\n## Results after the last task, per run\n", to_markdown(_headline_columns(summary))]
    md += ["\n## Quality read-out (demo CNN: digit and domain heads)\n", collapse_statement(qual), "\n",
           _quality_protocol(metrics, quality), "\n", to_markdown(qual.drop(columns=["skipped"]) if not qual["skipped"].astype(bool).any() else qual)]
    md += ["\n## Parameters added per task\n", to_markdown(_params_table(params))]
    md += ["\n## Average forgetting\n", "mean over s < T of metric(s after T) − metric(s after s), sign-flipped for LPIPS and the "
           "correspondence (higher is better): positive = old tasks got worse.\n\n", to_markdown(avg)]
    for (method, metric), mat in sorted(matrices.items()):
        md += [f"\n### Forgetting matrix — {method}, {metric}\n", to_markdown(mat.reset_index())]
    if match:
        md += ["\n## Weight matching\n", to_markdown(pd.DataFrame([_match_row(p) for p in match]))]
    if lmc:
        md += ["\n## Linear mode connectivity\n", to_markdown(pd.DataFrame([_lmc_row(p) for p in lmc]))]
    if merge:
        md += _merge_section(merge, out)
    if fisher:
        md += ["\n## Fisher information per layer (source)\n", to_markdown(pd.read_csv(fisher))]
    md += ["\n" + _protocol_header(summary)]
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text("\n".join(md))
    log.info("report written to %s", out)


def same_latent_figures(samples: list[str], tasks: list[str], out: Path, metrics: list[str], n: int = 8,
                        styles: dict | None = None) -> None:
    """``same_latents_<task>.png`` per task: the source's first ``n`` samples in the top row and, below,
    each method's generator right after learning that task, drawn from the same latents — checked by
    the ``z_sha256`` every sample file records — plus ``same_latents.json`` naming each row's file and
    its same-latent correspondence (:mod:`lfsgan.metrics.correspondence`), read from the metrics file
    ``lfsgan evaluate`` wrote for that sample set (its recorded latents must be the figure's).

    ``samples``: sample folders' ``samples.pt``; the one without a method is the source's.
    ``metrics``: the metrics JSONs of ``lfsgan evaluate``.
    ``styles``: ``{task: DemoDomain}`` (:func:`lfsgan.data.demo.task_styles`): for these tasks a second
    row, ``source restyled``, redraws the source's row by the task's own recipe — what a task generator
    that kept every latent's digit and took the style perfectly would draw (the quality table's ceiling
    row, as a picture). The JSON names the recipe under ``restyled``.
    """
    loaded = [(p, *load_checkpoint(p)) for p in samples]
    source = [x for x in loaded if x[2].get("method") is None]
    if len(source) != 1:
        raise ValueError(f"same-latent grids need exactly one source sample file among --same-latents, got {len(source)}")
    measured = {}
    for p in metrics:
        rec = json.loads(Path(p).read_text())
        if rec.get("correspondence") is not None:
            measured[(rec["method"], rec["after_task"], rec["task"])] = (p, rec)
    styles = styles or {}
    record = {"n_per_row": n, "latents": source[0][2]["latents"], "tasks": {}, "restyled": {}}
    for task in tasks:
        rows = source + [x for x in loaded if x[2].get("method") is not None and x[2]["task"] == task == x[2]["after_task"]]
        z = check_same_latents([(x[0], x[2]) for x in rows], f"same-latent grid of task '{task}'")
        labels = ["source"] + [x[2]["method"] for x in rows[1:]]
        strips = [(label, x[1]["images"][:n].numpy()) for label, x in zip(labels, rows)]
        if task in styles:
            from lfsgan.data.demo import restyle

            style = styles[task]
            ideal = restyle(source[0][1]["images"][:n], style.style, seed=style.seed)  # [n, 3, H, W] uint8
            strips.insert(1, ("source\nrestyled", ideal.numpy()))
            record["restyled"][task] = {"recipe": style.name, "style": style.style, "seed": style.seed,
                                        "what": "the source's row redrawn by the task's recipe (ink mask = channel mean)"}
        same_latent_grid(strips, out / f"same_latents_{task}.png",
                         f"Task '{task}': each column one latent z\nthe source"
                         + (", the source redrawn by the task's recipe (the ideal)," if task in styles else "")
                         + " and each method right after learning the task")
        # the source against itself: 1 by construction (every latent's nearest source sample is its own)
        entries = [{"row": "source", "samples": str(source[0][0]), "z_sha256": z, "correspondence": 1.0,
                    "top1": 1.0, "by_construction": True}]
        for label, x in zip(labels[1:], rows[1:]):
            key = (label, task, task)
            if key not in measured:
                raise ValueError(f"same-latent grid of task '{task}': no metrics file with a correspondence for "
                                 f"'{label}' after '{task}' (samples {x[0]}); run `lfsgan evaluate` with --source-samples")
            path, rec = measured[key]
            proto = rec["protocol"]["correspondence"]
            if proto["z_sha256"] != z:
                raise ValueError(f"same-latent grid of task '{task}': {path} measured its correspondence on latents "
                                 f"{proto['z_sha256'][:12]}…, the figure's samples were drawn from {z[:12]}…; re-run evaluate")
            entries.append({"row": label, "samples": str(x[0]), "z_sha256": z, "correspondence": rec["correspondence"],
                            "top1": proto["top1"], "metrics": str(path)})
            record["protocol"] = proto["measure"]
        record["tasks"][task] = entries
    write_json(out / "same_latents.json", record)


def _analyses(cfg: dict, df: pd.DataFrame, tasks: list[str], match: list[str], lmc: list[str], fisher: str | None,
              source: str | None, cache: str | None) -> dict:
    """The claims' inputs besides the method rows (:class:`lfsgan.report.claims.ClaimInputs`)."""
    out = {"fisher": (read_fisher_layers(fisher),) if fisher else (),
           "pairs": pair_table(match, lmc) if match or lmc else None,
           "distance": source_distance(df, lmc, cache)}
    if source:
        mcfg = model_config(cfg)
        g_source, _, _ = load_source(source, mcfg)
        names = [n for n, _ in build_models(mcfg)[0].named_parameters()]
        out["weight_change"] = task_weight_changes(tasks, g_source, names)
    return out


def _quality_protocol(metrics: list[str], sources: list[str]) -> str:
    """The read-out's protocol, from the first file that ran it (the same for every generator)."""
    for p in [*sources, *metrics]:
        q = json.loads(Path(p).read_text()).get("quality", {})
        if "protocol" in q and "skipped" not in q:
            pr, ex = q["protocol"], q["protocol"].get("extractor", {})
            data = ", ".join(f"{d['name']} (images sha256 {d['images_sha256'][:12]}…)" for d in ex.get("training_data") or [])
            return (f"Protocol: {pr['n_samples']} samples per generator (seed {pr['seed']}); confident = {pr['confident']} "
                    f"(threshold {pr['threshold']}); {pr['collapse_criterion']}. Extractor {ex.get('path')} "
                    f"(sha256 {str(ex.get('sha256'))[:12]}…), trained on {data}; held-out accuracy "
                    f"{ex.get('heldout_accuracy')} on {(ex.get('heldout') or {}).get('n_images')} images never trained on. "
                    "Digit histogram: confident samples per digit 0–9. correspondence (every method row, against the base "
                    "source's samples of the same latents; no classifier): for each latent, the share of other latents' source samples less like "
                    "its task sample than its own latent's source sample is, in thickened, blurred ink maps, averaged "
                    "over latents — 1 when every latent keeps its source shape, 0.5 for one shape for every latent or "
                    "shapes unrelated to the latents; its protocol is in each metrics file. 'source <seed> restyled' rows: "
                    "the source's own samples redrawn by each task's style recipe — what a task generator that kept every "
                    "latent's digit and took the style perfectly would read, the ceiling of coverage and top-digit share.\n")
    return ""


def _totals(params: dict[tuple[str, str], int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (method, _task), n in params.items():
        totals[method] = totals.get(method, 0) + n
    return totals


def _params_table(params: dict[tuple[str, str], int]) -> pd.DataFrame:
    df = pd.DataFrame([{"method": m, "task": t, "params_added": n} for (m, t), n in params.items()])
    return df.pivot(index="method", columns="task", values="params_added").reset_index()


def _headline_columns(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[["method", "task", *METRICS, "params_added"]]


def _protocol_header(summary: pd.DataFrame) -> str:
    cols = [c for c in summary.columns if c.startswith("protocol.")]
    first = summary.iloc[0]
    lines = ["## Protocol\n"]
    lines += [f"- `{c.removeprefix('protocol.')}`: {first[c]}" for c in cols if summary[c].nunique(dropna=False) == 1]
    varying = [c for c in cols if summary[c].nunique(dropna=False) > 1]
    if varying:
        lines.append(f"- varying per row (see summary.csv): {', '.join(c.removeprefix('protocol.') for c in varying)}")
    return "\n".join(lines) + "\n"


def _match_row(path: str) -> dict:
    rec = json.loads(Path(path).read_text())
    return {k: v for k, v in rec.items() if not isinstance(v, (dict, list))}


def _lmc_row(path: str) -> dict:
    rec = json.loads(Path(path).read_text())
    return {k: v for k, v in rec.items() if not isinstance(v, (dict, list))}


def _merge_section(merge: list[str], out: Path) -> list[str]:
    """Markdown (and merging.csv, merging.json) comparing naive, WM (MergeMany) and STE merges."""
    table = merge_comparison(merge)
    verdict = claim3_verdict(table)
    with atomic_path(out / "merging.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(out / "merging.json", verdict)
    return ["\n## Merging: naive vs weight matching (MergeMany) vs STE\n",
            "merge barrier = FID(merged) − mean FID(endpoints) (two models: the barrier at λ = ½); loss = the STE "
            "objective on held-out latents; L2 = summed pairwise distance of the aligned members (effective weights), "
            "its reduction against naive; R(γ) = Ito et al.'s alignment, mean over member pairs.\n",
            to_markdown(table),
            f"\n**Claim 3 (Ito et al.: WM outperforms STE, especially for ≥ 3 models): {verdict['verdict']}** — "
            f"{verdict['reason']} (seed sets: {verdict['n_2']} of 2 models, {verdict['n_many']} of ≥ 3).\n"]
