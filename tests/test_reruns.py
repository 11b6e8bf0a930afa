"""Reruns, planned and trained.

Plans: after a completed run, a config change makes `snakemake -n` plan exactly the jobs that depend
on the changed section, for Snakemake's stated reasons (params, then updated inputs); a folder
domain's images are inputs of its preparation.

Weights: a rerun Snakemake decides on (a changed setting, `--forcerun` after a code edit) trains
from scratch: its weights equal those of a fresh run with the new setting, bit for bit on the CPU,
and differ from the old ones; an interrupted job (SIGKILL) rerun through Snakemake resumes and ends
bit-identical to an uninterrupted run, with every row of `losses.csv`.

Works on copies of the session's completed run of config/test.yaml (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from lfsgan.io import load_checkpoint

pytestmark = pytest.mark.integration

TRAINING_RULES = {"prepare_data", "pretrain_source", "install_source", "import_source", "fisher", "train_task", "train_extractor",
                  "install_extractor"}


@pytest.fixture(scope="module")
def project(completed_run, tmp_path_factory):
    return completed_run.copy(tmp_path_factory.mktemp("reruns") / "lfsgan")


@pytest.fixture
def config(project):
    """The copy's config as a dict; whatever a test changes is written back, then restored."""
    original = project.read_config()
    yield yaml.safe_load(original)
    project.write_config(original)


def eval_jobs(config: dict, n_methods: int) -> int:
    """`sample` (and `evaluate`) jobs for ``n_methods`` method runs: one per run (evaluation.jobs per_method,
    the test config's and the demo's) or one per (after t, task s <= t) sample set of each run."""
    n = len(config["tasks"])
    per_run = 1 if config["evaluation"].get("jobs") == "per_method" else n * (n + 1) // 2
    return n_methods * per_run


def plan_after(project, config: dict):
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    return project.dry_run()


def test_completed_run_has_nothing_to_do(project):
    assert project.dry_run() == []


def test_method_change_reruns_only_that_method(project, config):
    methods = list(config["methods"])
    changed = "ewc" if "ewc" in methods else methods[0]
    options = config["methods"][changed].setdefault("options", {})
    options["lambda"] = float(options.get("lambda", 1.0)) * 2  # EWC's penalty weight
    tasks = config["tasks"]

    jobs = plan_after(project, config)

    per_method = [j for j in jobs if "method" in j.wildcards]
    assert per_method, "nothing planned for the changed method"
    assert {j.wildcards["method"] for j in per_method} == {changed}, (
        f"only method {changed!r} may rerun, planned: "
        f"{sorted({(j.rule, j.wildcards['method']) for j in per_method})}"
    )
    counts = Counter(j.rule for j in jobs)
    assert counts == Counter(
        {"train_task": len(tasks), "sample": eval_jobs(config, 1), "evaluate": eval_jobs(config, 1), "report": 1, "all": 1}
    ), f"unexpected plan: {dict(counts)}"

    # Snakemake's reasons: the first task's params changed; the later ones follow from its output.
    by_task = {j.wildcards["task"]: j.reason for j in jobs if j.rule == "train_task"}
    assert by_task[tasks[0]].startswith("Params have changed"), by_task[tasks[0]]
    for task in tasks[1:]:
        assert "Input files updated by another job" in by_task[task], by_task[task]


def test_method_code_edit_reruns_only_that_method(project, config):
    """Editing ewc.py reruns EWC's tasks and what follows; finetune (whose module EWC imports, not
    the other way round) and every other method stay done."""
    tasks = config["tasks"]
    assert config["methods"]["ewc"]["kind"] == "ewc", "config/test.yaml must keep its `ewc` method"
    module = project.root / "lfsgan" / "methods" / "ewc.py"
    original, stat = module.read_text(), module.stat()
    try:
        module.write_text(original + "\n# an edit\n")
        jobs = project.dry_run()
    finally:
        module.write_text(original)
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert {j.wildcards["method"] for j in jobs if "method" in j.wildcards} == {"ewc"}
    assert Counter(j.rule for j in jobs) == Counter(
        {"train_task": len(tasks), "sample": eval_jobs(config, 1), "evaluate": eval_jobs(config, 1), "report": 1, "all": 1})
    first = next(j for j in jobs if j.rule == "train_task" and j.wildcards["task"] == tasks[0])
    assert "lfsgan/methods/ewc.py" in first.reason, first.reason
    assert project.dry_run() == []  # the file and its mtime are back


def test_evaluation_protocol_change_reruns_no_training(project, config):
    config["evaluation"]["lpips"]["cluster_size"] = int(config["evaluation"]["lpips"]["cluster_size"]) + 1
    methods, tasks = list(config["methods"]), config["tasks"]

    jobs = plan_after(project, config)

    rules = Counter(j.rule for j in jobs)
    assert not TRAINING_RULES & set(rules), f"training planned after an evaluation change: {dict(rules)}"
    assert "sample" not in rules, "sampling does not depend on the LPIPS protocol"
    assert rules == Counter({"evaluate": eval_jobs(config, len(methods)), "report": 1, "all": 1}), (
        f"unexpected plan: {dict(rules)}")
    assert all(j.reason.startswith("Params have changed") for j in jobs if j.rule == "evaluate")


def test_reverting_a_change_plans_nothing(project, config):
    """Snakemake compares params with those of the last execution, not the last dry run."""
    config["evaluation"]["lpips"]["cluster_size"] += 1
    assert plan_after(project, config)
    config["evaluation"]["lpips"]["cluster_size"] -= 1
    assert plan_after(project, config) == []


def test_folder_domain_images_are_inputs_of_prepare_data(fresh_project):
    """A changed, added or removed image of a folder domain reruns its preparation."""
    from PIL import Image

    project = fresh_project
    folder = project.root / "my_images"
    folder.mkdir()
    rng = torch.Generator().manual_seed(0)
    for i in range(12):
        pixels = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=rng).numpy()
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    config = yaml.safe_load(project.read_config())
    config["data"]["domains"]["mine"] = {"path": "my_images"}
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    target = "results/data/mine/images.pt"
    project.snakemake("-c1", "--workflow-profile", "workflow/profiles/default", target)

    def planned() -> list[str]:
        return [j.reason for j in project.dry_run(target) if j.rule == "prepare_data"]

    time.sleep(1.1)  # a newer mtime even on file systems with 1 s resolution
    Image.fromarray(255 - torch.zeros(16, 16, 3, dtype=torch.uint8).numpy()).save(folder / "img03.png")  # edited
    assert planned() and "img03.png" in planned()[0]
    project.snakemake("-c1", "--workflow-profile", "workflow/profiles/default", target)
    shutil.copyfile(folder / "img00.png", folder / "img12.png")  # added (Snakemake names it as a new, newer input)
    assert planned() and "img12.png" in planned()[0]
    (folder / "img12.png").unlink()
    (folder / "img05.png").unlink()
    assert planned() and "Set of input files has changed" in planned()[0]


# --- weights: reruns train from scratch, interrupted runs resume ------------------------------

SOURCE = "results/source/seed0/final.pt"
FISHER = "results/fisher/fisher.pt"
EWC_TASK = "results/tasks/ewc/inverted/task.pt"  # the first task of `ewc`: source -> fisher -> task
EWC_DIR = str(Path(EWC_TASK).parent)
PROFILE = ("--workflow-profile", "workflow/profiles/default", "-c1")


def weights(project, path: str) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, flattened to dotted names."""
    flat = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, torch.Tensor):
            flat[prefix] = node
        else:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)

    walk("", load_checkpoint(project.root / path)[0])
    return flat


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def changed_copy(completed_run, dst: Path, change):
    project = completed_run.copy(dst)
    config = yaml.safe_load(project.read_config())
    change(config, project.root)
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    return project


def fresh_like(project, fresh):
    """`fresh` (a fresh_project: no results, no Snakemake records) with `project`'s config and code."""
    fresh.write_config(project.read_config())
    shutil.copytree(project.root / "lfsgan", fresh.root / "lfsgan", dirs_exist_ok=True)
    return fresh


def assert_retrained(old, rerun, fresh, paths: list[str]) -> None:
    for path in paths:
        new = weights(rerun, path)
        assert same_weights(new, weights(fresh, path)), f"{path}: the rerun differs from a fresh run with the new setting"
        assert not same_weights(new, weights(old, path)), f"{path}: the rerun kept the old weights"


def set_key(*keys, value):
    def change(config: dict, root: Path) -> None:
        node = config
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value

    return change


# (change, target, checkpoints compared); the fresh run is a new project, since everything reruns
UPSTREAM_CASES = {
    "data.shot_seed": (set_key("data", "shot_seed", value=1), EWC_TASK, [EWC_TASK]),
    "data.hflip": (set_key("data", "hflip", value=True), SOURCE, [SOURCE]),
    "model.style_dim": (set_key("model", "style_dim", value=8), SOURCE, [SOURCE]),
}


@pytest.mark.parametrize("case", list(UPSTREAM_CASES))
def test_upstream_change_retrains_from_scratch(completed_run, fresh_project, tmp_path, case):
    change, target, compared = UPSTREAM_CASES[case]
    rerun = changed_copy(completed_run, tmp_path / "rerun", change)
    rerun.snakemake(*PROFILE, target)
    fresh = fresh_like(rerun, fresh_project)
    fresh.snakemake(*PROFILE, target)
    assert_retrained(completed_run, rerun, fresh, compared)


def _edit_shared_code(config: dict, root: Path) -> None:
    """Not a config change: an edit of shared training code (no rule's input), made effective by --forcerun."""
    losses = root / "lfsgan" / "train" / "losses.py"
    text = losses.read_text()
    assert "return F.softplus(-fake_pred).mean()" in text
    losses.write_text(text.replace("return F.softplus(-fake_pred).mean()", "return 2 * F.softplus(-fake_pred).mean()"))


# (change, extra snakemake arguments); only the task's own job reruns, so its fresh run is that job
# with its run folder removed
TASK_CASES = {
    "methods.ewc.options.lambda": (set_key("methods", "ewc", "options", "lambda", value=1.0e6), ()),
    "task_train.lr_g": (set_key("task_train", "lr_g", value=0.004), ()),
    "forcerun after a code edit": (_edit_shared_code, ("--forcerun", "train_task")),
}


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_task_change_retrains_from_scratch(completed_run, tmp_path, case):
    change, extra = TASK_CASES[case]
    rerun = changed_copy(completed_run, tmp_path / "rerun", change)
    rerun.snakemake(*PROFILE, EWC_TASK, *extra)  # the target first: --forcerun takes every name after it
    log = (rerun.root / "logs" / "train_task" / "ewc" / "inverted.log").read_text()
    assert "resumed" not in log

    fresh = rerun.copy(tmp_path / "fresh")
    shutil.rmtree(fresh.root / EWC_DIR)
    fresh.snakemake(*PROFILE, EWC_TASK)
    assert_retrained(completed_run, rerun, fresh, [EWC_TASK])
    for path in (SOURCE, FISHER):  # upstream untouched
        assert same_weights(weights(rerun, path), weights(completed_run, path))


def _kill_when_checkpointed(project, checkpoint: Path, *args: str, timeout: float = 600) -> None:
    """Run Snakemake and SIGKILL it and its job once `checkpoint` is on disk (atomically written)."""
    proc = subprocess.Popen(
        ["snakemake", *args], cwd=project.root, env=project.env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while not checkpoint.is_file():
            assert proc.poll() is None, "the job ended before writing a checkpoint"
            assert time.monotonic() < deadline, f"no {checkpoint} after {timeout} s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_source_iterations_change_retrains_and_a_killed_job_resumes(completed_run, fresh_project, tmp_path):
    """`source.train.iterations` 20 -> 60: the source retrains from scratch (not continued from the
    finished 20-step run) and so do the tasks after it. The pretraining job is SIGKILLed after its
    first checkpoint; the rerun resumes it and still equals an uninterrupted fresh run, losses.csv included."""
    def change(config: dict, root: Path) -> None:
        config["source"]["train"].update(iterations=60, log_every=1)  # log_every: resumable, a row per step

    rerun = changed_copy(completed_run, tmp_path / "rerun", change)
    run_dir = rerun.root / Path(SOURCE).parent
    _kill_when_checkpointed(rerun, run_dir / "checkpoint.pt", *PROFILE, EWC_TASK)
    assert not (run_dir / "final.pt").exists()
    rerun.snakemake("--unlock")  # the killed Snakemake left its lock, as after a lost node
    rerun.snakemake(*PROFILE, EWC_TASK)
    log = (rerun.root / "logs" / "pretrain_source" / "seed0.log").read_text()
    assert "resumed from" in log, "the killed job was not resumed"

    fresh = fresh_like(rerun, fresh_project)
    fresh.snakemake(*PROFILE, EWC_TASK)
    assert_retrained(completed_run, rerun, fresh, [SOURCE, EWC_TASK])
    losses = (rerun.root / run_dir.relative_to(rerun.root) / "losses.csv").read_text()
    assert losses == (fresh.root / run_dir.relative_to(rerun.root) / "losses.csv").read_text()
    assert len(losses.splitlines()) == 1 + 60  # header + every step (log_every 1)
    assert not (run_dir / "checkpoint.pt").exists() and not list(run_dir.glob(".*.tmp"))


def _mtimes(project) -> dict[str, int]:
    """{path under results/: mtime in ns} of every file the workflow wrote (the FID cache aside)."""
    base = project.root / "results"
    return {str(p.relative_to(project.root)): p.stat().st_mtime_ns
            for p in base.rglob("*") if p.is_file() and ".cache" not in p.relative_to(base).parts}


def test_reruns_rewrite_only_what_a_change_reaches(completed_run, tmp_path):
    """Run, not planned: an evaluation-protocol change rewrites every evaluation and no sample, task or
    source file; then a method option rewrites that method's tasks, samples and evaluations (new
    weights) and nothing of the other methods."""
    project = completed_run.copy(tmp_path / "lfsgan")
    config = yaml.safe_load(project.read_config())
    before = _mtimes(project)
    config["evaluation"]["lpips"]["cluster_size"] += 1
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    project.snakemake(*PROFILE)
    after = _mtimes(project)
    rewritten = {p for p in before if after[p] != before[p]}
    evals = {p for p in before if p.startswith("results/eval/")}
    assert evals and evals <= rewritten, sorted(evals - rewritten)
    untouched = ("results/samples/", "results/tasks/", "results/source/", "results/fisher/", "results/data/",
                 "results/extractor/")
    assert not [p for p in rewritten if p.startswith(untouched)], sorted(rewritten)

    config["methods"]["ewc"]["options"]["lambda"] *= 2
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    project.snakemake(*PROFILE)
    final = _mtimes(project)
    rewritten = {p for p in after if final[p] != after[p]}
    ewc = {p for p in after if p.startswith(("results/tasks/ewc/", "results/samples/ewc/", "results/eval/ewc/"))}
    assert ewc and ewc <= rewritten, sorted(ewc - rewritten)
    others = [p for p in rewritten if any(f"/{m}/" in p for m in config["methods"] if m != "ewc")]
    assert not others, others
    assert not same_weights(weights(project, EWC_TASK), weights(completed_run, EWC_TASK))


def test_one_sample_process_per_set_writes_what_the_grouped_job_wrote(completed_run, tmp_path):
    """evaluation.jobs groups sampling too: `lfsgan sample` of one set alone (a per_set job, given only the
    states up to its task) draws the same images as the run's job that sampled all of the method's sets
    in one process; a grouped call whose lists differ in length stops before writing anything."""
    config = yaml.safe_load(completed_run.read_config())
    assert config["evaluation"]["jobs"] == "per_method", "config/test.yaml samples per method, as the demo"
    first, last = config["tasks"][0], config["tasks"][-1]
    states = [f"results/tasks/ewc/{t}/task.pt" for t in config["tasks"]]
    args = ["lfsgan", "sample", "--config", "config/config.yaml", "--method", "ewc",
            "--source", f"results/source/seed{config['source']['seeds'][0]}/final.pt"]
    # EWC after its first task is the generator stored after that task: the grouped job, given every
    # task's state, must have used the first one only
    completed_run.run(*args, "--after", first, "--task", first, "--states", states[0], "--out", str(tmp_path / "alone"))
    alone, _ = load_checkpoint(tmp_path / "alone" / "samples.pt")
    grouped, _ = load_checkpoint(completed_run.root / "results" / "samples" / "ewc" / f"after_{first}" / first / "samples.pt")
    later, _ = load_checkpoint(completed_run.root / "results" / "samples" / "ewc" / f"after_{last}" / first / "samples.pt")
    assert torch.equal(alone["images"], grouped["images"])
    assert not torch.equal(alone["images"], later["images"])  # the states differ, so would the samples

    bad = completed_run.run(*args, "--after", last, last, "--task", first, "--states", *states,
                            "--out", str(tmp_path / "a"), str(tmp_path / "b"), check=False)
    assert bad.returncode != 0 and "--after (2), --task (1) and --out (2)" in bad.stdout
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_one_evaluate_process_per_set_writes_what_the_grouped_job_wrote(completed_run, tmp_path):
    """evaluation.jobs only groups work: `lfsgan evaluate` on one sample set alone (a per_set job)
    writes the same metrics JSON as the run's job that evaluated all of the method's sets in one
    process; and a grouped call names its sets consistently or stops before writing anything."""
    import json

    config = yaml.safe_load(completed_run.read_config())
    assert config["evaluation"]["jobs"] == "per_method", "config/test.yaml evaluates per method, as the demo"
    task = config["tasks"][-1]
    cell = f"lfsgan/after_{task}/{task}"
    args = ["--config", "config/config.yaml", "--extractor", "results/extractor/demo_cnn.pt", "--cache", str(tmp_path / "cache"),
            "--source-samples", f"results/samples/source/seed{config['source']['seeds'][0]}"]
    completed_run.run("lfsgan", "evaluate", *args, "--samples", f"results/samples/{cell}", "--data", f"results/data/{task}",
                      "--out", str(tmp_path / "alone.json"))
    alone = json.loads((tmp_path / "alone.json").read_text())
    grouped = json.loads((completed_run.root / "results" / "eval" / f"{cell}.json").read_text())
    assert alone == grouped

    bad = completed_run.run("lfsgan", "evaluate", *args, "--samples", f"results/samples/{cell}", f"results/samples/{cell}",
                            "--data", f"results/data/{task}", "--out", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                            check=False)
    assert bad.returncode != 0 and "--samples (2), --data (1) and --out (2)" in bad.stdout
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()
