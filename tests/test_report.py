"""The researcher-facing outputs of a complete run: tables, forgetting matrices, figures, the HTML
report rendered in a real browser, and the fidelity of the stored per-task artefacts."""

import json
import shutil
import subprocess

import pandas as pd
import yaml
import pytest

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def test_summary_and_forgetting_tables(completed_run):
    rep = completed_run.root / "results" / "report"
    summary = pd.read_csv(rep / "summary.csv")
    cfg_methods = {"finetune", "ewc", "piggyback", "lfsgan"}
    assert set(summary["method"]) == cfg_methods
    assert set(summary["task"]) == {"inverted", "sketch"}
    for col in ("fid", "kid_mean", "intra_lpips", "b_lpips", "correspondence", "params_added"):
        assert summary[col].notna().all(), col
    # the protocol travels with every value, and the demo extractor is flagged as non-standard
    assert (summary["protocol.fid_kid.comparable_to_published"] == False).all()  # noqa: E712
    assert (summary["protocol.fid_kid.n_fake"] == 48).all()
    # parameter overhead is counted from the stored artefacts: adapters store far less than a full G
    per = summary.groupby("method")["params_added"].first()
    assert per["lfsgan"] < per["piggyback"] < per["finetune"]
    # adapter methods forget nothing: task 1 after task 2 equals task 1 after task 1, exactly
    allm = pd.read_csv(rep / "all_metrics.csv")
    for method in ("lfsgan", "piggyback"):
        m = allm[(allm.method == method) & (allm.task == "inverted")].set_index("after_task")
        assert m.loc["sketch", "fid"] == m.loc["inverted", "fid"]
    avg = pd.read_csv(rep / "average_forgetting.csv")
    assert set(avg["metric"]) == {"fid", "kid_mean", "intra_lpips", "b_lpips", "correspondence"}
    isolated = avg.method.isin(["lfsgan", "piggyback"])
    assert (avg[isolated]["average_forgetting"] == 0).all()
    assert (avg[isolated]["note"] == "by construction (isolated task state)").all() and avg[~isolated]["note"].isna().all()
    md = (rep / "summary.md").read_text()
    assert "## Protocol" in md and "Forgetting matrix" in md and "Linear mode connectivity" in md
    # claims and results come first, the protocol last
    assert md.index("## Claims of the papers") < md.index("## Results after the last task") < md.index("## Protocol")
    claims = pd.read_csv(rep / "claims.csv").set_index("claim")
    assert claims.loc["EWC forgets less than fine-tuning (average FID forgetting)", "verdict"] == "inconclusive (n = 1)"
    isolation = claims.loc["learning a new task does not change the earlier ones (average FID forgetting)"]
    assert isolation["verdict"] == "not evidence: by construction (isolated task state)"
    assert "by construction" in isolation["left_value"]
    assert claims.loc["the mode-seeking loss raises diversity (B-LPIPS)", "verdict"].startswith("not run: the config has no")
    # the analysis claims, from the run's own Fisher, task states, weight matching and FID cache:
    # one Fisher and one source pair (seeds 0, 1) -> n = 1; two tasks -> no interval for the trend
    assert claims.loc["the last layers carry the largest Fisher information (mean diagonal Fisher per parameter)", "verdict"] == "inconclusive (n = 1)"
    change = claims.loc["under plain fine-tuning the last layers change least (‖θ_task − θ_source‖ / ‖θ_source‖)"]
    assert "n = 2" in change["left_value"] and not change["verdict"].startswith("not run")  # 1 replicate x 2 tasks
    assert claims.loc["EWC works worse the further the target is from the source (rank correlation)", "verdict"] == "inconclusive (n = 2)"
    for claim in ("weight matching cuts the LMC barrier (FID barrier)",
                  "weight matching aligns the top singular vectors more than the tail (per-index alignment)",
                  "weight matching aligns the top singular vectors more than the tail (R(γ))"):
        assert claims.loc[claim, "verdict"] == "inconclusive (n = 1)", claim
    # n = 1, or no naive barrier to reduce on these barely trained sources: inconclusive either way
    assert claims.loc["…while lowering the L2 distance only modestly (less than it lowers the barrier)", "verdict"].startswith("inconclusive")
    metrics = json.loads((rep / "metrics.json").read_text())
    assert "lfsgan/sketch/fid" in metrics


def test_quality_readout_runs_and_records_its_protocol(completed_run):
    """Every source seed and every (method, after t, task s) generator is read out by the demo CNN's
    digit and domain heads; the protocol (extractor identity, its training data and held-out
    accuracy, threshold, sample count, seed, collapse criterion) sits next to the values."""
    root = completed_run.root
    rec = json.loads((root / "results" / "eval" / "lfsgan" / "after_sketch" / "inverted.json").read_text())
    q = rec["quality"]
    assert set(q) >= {"confident_share", "digit_histogram", "domain_share", "collapsed", "collapse_reasons", "protocol"}
    assert len(q["digit_histogram"]) == 10 and sum(q["digit_histogram"]) == round(q["confident_share"] * 48)
    p = q["protocol"]
    assert p["n_samples"] == 48 and p["seed"] == 10 and p["threshold"] == 0.9 and "collapse_criterion" in p
    ex = p["extractor"]
    assert len(ex["sha256"]) == 64 and ex["label_names"] == ["mnist-source", "inverted", "sketch"]
    assert {d["name"] for d in ex["training_data"]} == {"mnist-source", "inverted", "sketch"}
    assert all(len(d["images_sha256"]) == 64 and len(d["labels_sha256"]) == 64 for d in ex["training_data"])
    assert 0 <= ex["heldout_accuracy"]["digit"] <= 1 and 0 <= ex["heldout_accuracy"]["domain"] <= 1
    per_style = ex["heldout_accuracy"]["digit_per_style"]  # digits 0-9 in each domain's style and in random renderings
    assert set(per_style) == {"plain", "inverted", "sketch", "random"} and all(0 <= a <= 1 for a in per_style.values())
    assert q["coverage_of"] == 7 and 0 <= q["coverage"] <= 7 and 0 <= q["memorised_share"] <= 1
    assert len(p["memorisation_tau"]) == 10  # one threshold per training shot
    src = json.loads((root / "results" / "quality" / "source" / "seed1.json").read_text())
    assert src["domain"] == "mnist-source" and src["quality"]["protocol"]["samples"]["n_samples"] == 48
    table = pd.read_csv(root / "results" / "report" / "quality.csv")
    assert {"coverage", "coverage_of", "top_digit_share", "memorised_share"} <= set(table.columns)
    assert {"source seed0", "source seed1"} <= set(table["generator"])
    # each source's ceiling per task: its own samples redrawn by the task's recipe, read as the task's domain
    ceiling = table[table["generator"].str.endswith(" restyled")]
    assert sorted(zip(ceiling["generator"], ceiling["domain"])) == [
        (f"source seed{s} restyled", t) for s in (0, 1) for t in ("inverted", "sketch")]
    assert src["restyled"]["sketch"]["coverage_of"] == 7 and "perfect restyling" in src["restyled"]["sketch"]["protocol"]["restyled"]
    assert len(table) == 2 + 2 * 2 + 4 * 3  # 2 sources, their 2 x 2 ceilings, 4 methods x (inverted after inverted, both after sketch)
    assert table["collapsed"].isin([True, False]).all() and table["confident_share"].between(0, 1).all()
    md = (root / "results" / "report" / "summary.md").read_text()
    assert "## Quality read-out" in md and "held-out accuracy" in md and "restyled' rows" in md
    generators = table[~table["generator"].str.endswith(" restyled")]  # the ceilings are references, not counted
    n_bad = int(generators["collapsed"].sum())
    assert (f"**{n_bad} of {len(generators)} generators have collapsed:**" in md) if n_bad else ("No generator met" in md)
    assert (root / "results" / "report" / "quality.png").stat().st_size > 0


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is installed by scripts/test.sh")
def test_html_report_renders_in_a_browser(completed_run, tmp_path):
    project = completed_run.copy(tmp_path / "p")
    html = project.root / "results" / "report" / "report.html"
    build = project.snakemake("--cores", "1", "--report", str(html), timeout=600)
    # docutils reports caption problems as "(ERROR/3)" / "(WARNING/2)" in the build log, not as a failure
    assert "(ERROR/" not in build.stdout and "(WARNING/" not in build.stdout, build.stdout[-3000:]
    dom = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=10000",
         "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=180,
    ).stdout
    # the rendered page lists the result categories and embeds the tables and figures
    for needle in ("Results", "Weight matching", "Fisher information", "summary.csv", "forgetting.png", "quality.png",
                   "lmc.png", ";base64,iVBORw0KGgo"):  # embedded PNG data
        assert needle in dom, needle
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chrome2'}", "--virtual-time-budget=10000",
         "--window-size=1400,900", f"--screenshot={shot}", html.as_uri()],
        capture_output=True, timeout=180,
    )
    assert shot.stat().st_size > 20_000  # a painted page, not a blank one


def test_same_latent_grids_put_the_source_beside_each_method_on_identical_latents(completed_run, tmp_path):
    """One figure per task: the source's row and each method's row (right after that task) drawn from
    the same latents — the sample files' z_sha256 agree with each other and with the latents
    recomputed from the evaluation seed; a sample file drawn from other latents is refused."""
    from lfsgan.io import load_checkpoint, save_checkpoint
    from lfsgan.verbs.report import same_latent_figures
    from lfsgan.verbs.sample import latent_codes, latents_sha256

    root = completed_run.root
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    rec = json.loads((root / "results" / "report" / "same_latents.json").read_text())
    expected = latents_sha256(latent_codes(cfg["evaluation"]["n_samples"], cfg["model"]["style_dim"], cfg["evaluation"]["seed"]))
    assert set(rec["tasks"]) == set(cfg["tasks"])
    for task, rows in rec["tasks"].items():
        assert rows[0]["row"] == "source" and [r["row"] for r in rows[1:]] == list(cfg["methods"])
        assert {r["z_sha256"] for r in rows} == {expected}, task
        assert rows[1]["samples"] == f"results/samples/{rows[1]['row']}/after_{task}/{task}/samples.pt"
        assert (root / "results" / "report" / f"same_latents_{task}.png").stat().st_size > 0
        assert rows[0]["correspondence"] == 1.0 and all(0 <= r["correspondence"] <= 1 for r in rows)  # source vs itself: 1
    # every method's generator on every domain it learnt has the correspondence `lfsgan evaluate` measured
    # (right after its task: the figure's number); the sources' rows have none
    quality = pd.read_csv(root / "results" / "report" / "quality.csv")
    is_source = quality["generator"].str.startswith("source ")
    assert quality.loc[~is_source, "correspondence"].between(0, 1).all() and quality.loc[is_source, "correspondence"].isna().all()
    shown = quality.set_index(["generator", "domain"])["correspondence"]
    for task, rows in rec["tasks"].items():
        for r in rows[1:]:
            assert shown[(f"{r['row']} after {task}", task)] == pytest.approx(r["correspondence"], abs=1e-12)
            metrics = json.loads((root / "results" / "eval" / r["row"] / f"after_{task}" / f"{task}.json").read_text())
            assert metrics["protocol"]["correspondence"]["z_sha256"] == expected
    src_images, src_meta = load_checkpoint(root / rec["tasks"][cfg["tasks"][0]][0]["samples"])
    assert src_meta["method"] is None and src_meta["z_sha256"] == expected
    # built-in tasks from the plain demo source get the source's row redrawn by their recipe, one row more
    from PIL import Image

    from lfsgan.data.demo import demo_domain

    domains = cfg["data"]["domains"]
    assert rec["restyled"] == {t: {"recipe": demo_domain(domains[t]["builtin"]).name,
                                   "style": demo_domain(domains[t]["builtin"]).style,
                                   "seed": demo_domain(domains[t]["builtin"]).seed, "what": rec["restyled"][t]["what"]}
                               for t in cfg["tasks"]}
    task = cfg["tasks"][0]
    files = [str(root / r["samples"]) for r in rec["tasks"][task]]
    same_latent_figures(files, [task], tmp_path / "plain", [str(root / r["metrics"]) for r in rec["tasks"][task][1:]])
    assert json.loads((tmp_path / "plain" / "same_latents.json").read_text())["restyled"] == {}
    with_row = Image.open(root / "results" / "report" / f"same_latents_{task}.png").height
    assert with_row > Image.open(tmp_path / "plain" / f"same_latents_{task}.png").height

    # a method's sample file drawn from other latents: the figure refuses it
    task = cfg["tasks"][0]
    method_file = root / rec["tasks"][task][1]["samples"]
    images, meta = load_checkpoint(method_file)
    forged = tmp_path / "forged" / "samples.pt"
    save_checkpoint(forged, images, {**meta, "z_sha256": latents_sha256(latent_codes(4, 3, 0))})
    with pytest.raises(ValueError, match="not drawn from the same latents"):
        same_latent_figures([str(root / rec["tasks"][task][0]["samples"]), str(forged)], [task], tmp_path / "out", [])
    # the figure's number is the metrics file's: one that measured on other latents is refused too
    row = rec["tasks"][task][1]
    measured = json.loads((root / row["metrics"]).read_text())
    assert row["metrics"] == f"results/eval/{row['row']}/after_{task}/{task}.json"
    measured["protocol"]["correspondence"]["z_sha256"] = latents_sha256(latent_codes(4, 3, 0))
    (tmp_path / "stale.json").write_text(json.dumps(measured))
    with pytest.raises(ValueError, match="measured its correspondence on latents"):
        same_latent_figures([str(root / rec["tasks"][task][0]["samples"]), str(method_file)], [task], tmp_path / "out",
                            [str(tmp_path / "stale.json")])
    # ... and so does `lfsgan evaluate`, before it writes anything, when the source's samples are the forged ones
    from lfsgan.config import validate_config
    from lfsgan.verbs import evaluate

    out = tmp_path / "eval" / "forged.json"
    with pytest.raises(ValueError, match="not drawn from the same latents"):
        evaluate.run(validate_config(cfg), str(method_file.parent), str(root / "results" / "data" / task),
                     str(tmp_path / "cache"), str(out), source_samples=str(forged.parent))
    assert not out.exists()
