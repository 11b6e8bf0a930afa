"""Per-rule reruns: after a completed run, a config change makes `snakemake -n` plan exactly the jobs
that depend on the changed section, for Snakemake's stated reasons (params, then updated inputs).

Works on a copy of the session's completed run of config/test.yaml (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import yaml

pytestmark = pytest.mark.integration

TRAINING_RULES = {"prepare_data", "pretrain_source", "install_source", "import_source", "fisher", "train_task", "train_extractor"}


@pytest.fixture(scope="module")
def project(completed_run, tmp_path_factory):
    return completed_run.copy(tmp_path_factory.mktemp("reruns") / "lfsgan")


@pytest.fixture
def config(project):
    """The copy's config as a dict; whatever a test changes is written back, then restored."""
    original = project.read_config()
    yield yaml.safe_load(original)
    project.write_config(original)


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
    n_pairs = len(tasks) * (len(tasks) + 1) // 2  # (after t, task s <= t)
    assert counts == Counter(
        {"train_task": len(tasks), "sample": n_pairs, "evaluate": n_pairs, "report": 1, "all": 1}
    ), f"unexpected plan: {dict(counts)}"

    # Snakemake's reasons: the first task's params changed; the later ones follow from its output.
    by_task = {j.wildcards["task"]: j.reason for j in jobs if j.rule == "train_task"}
    assert by_task[tasks[0]].startswith("Params have changed"), by_task[tasks[0]]
    for task in tasks[1:]:
        assert "Input files updated by another job" in by_task[task], by_task[task]


def test_method_code_edit_reruns_only_that_method(project, config):
    """Editing ewc.py reruns EWC's tasks and what follows; finetune (whose module EWC imports, not
    the other way round) and every other method stay done."""
    tasks, n_pairs = config["tasks"], len(config["tasks"]) * (len(config["tasks"]) + 1) // 2
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
        {"train_task": len(tasks), "sample": n_pairs, "evaluate": n_pairs, "report": 1, "all": 1})
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
    n_pairs = len(methods) * len(tasks) * (len(tasks) + 1) // 2
    assert rules == Counter({"evaluate": n_pairs, "report": 1, "all": 1}), f"unexpected plan: {dict(rules)}"
    assert all(j.reason.startswith("Params have changed") for j in jobs if j.rule == "evaluate")


def test_reverting_a_change_plans_nothing(project, config):
    """Snakemake compares params with those of the last execution, not the last dry run."""
    config["evaluation"]["lpips"]["cluster_size"] += 1
    assert plan_after(project, config)
    config["evaluation"]["lpips"]["cluster_size"] -= 1
    assert plan_after(project, config) == []
