"""DVC over the Snakemake workflow (the real dvc.yaml, on config/test.yaml).

The session's completed run (tests/conftest.py) was made by `dvc repro` in a fresh git + DVC
repository; each test works on a copy of it:
- a second `dvc repro` runs nothing;
- a params change reruns only the stages that list the changed section, and inside the
  `experiments` stage Snakemake redoes only the affected rules; changing a param back restores
  the stage from DVC's run-cache;
- `dvc push` to a local remote and `dvc pull` in a fresh `git clone` restore the prepared data and
  every checkpoint, after which Snakemake has nothing to do.
"""

from __future__ import annotations

import re

import pytest
import yaml

pytestmark = pytest.mark.integration

UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture
def project(completed_run, tmp_path):
    return completed_run.copy(tmp_path / "lfsgan")


def stages_run(dvc_output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def set_param(project, section: str, key: str, value) -> None:
    config = yaml.safe_load(project.read_config())
    config[section][key] = value
    project.write_config(yaml.safe_dump(config, sort_keys=False))


def mtimes(project, prefix: str) -> dict[str, int]:
    return {
        str(p.relative_to(project.root)): p.stat().st_mtime_ns
        for p in sorted((project.root / prefix).rglob("*"))
        if p.is_file()
    }


def test_repro_again_is_a_no_op(project):
    assert UP_TO_DATE in project.run("dvc", "status").stdout
    out = project.run("dvc", "repro").stdout
    assert stages_run(out) == [], out
    assert UP_TO_DATE in out or "didn't change, skipping" in out, out


def test_params_change_reruns_only_affected_stages_and_rules(project):
    config = yaml.safe_load(project.read_config())
    lambdas = int(config["permutation"]["lambdas"])
    before = project.outputs()
    task_mtimes = mtimes(project, "results/tasks")

    set_param(project, "permutation", "lambdas", lambdas + 1)
    status = project.run("dvc", "status").stdout
    assert re.findall(r"^(\S+):$", status, flags=re.M) == ["experiments"], status
    assert "permutation" in status
    # Inside the stage, Snakemake plans only the LMC curve and what reads it.
    assert sorted(j.rule for j in project.dry_run()) == ["all", "lmc_curve", "report"]

    out = project.run("dvc", "repro", timeout=900).stdout
    assert stages_run(out) == ["experiments"], out
    after = project.outputs()
    changed = {p for p in before if before[p] != after.get(p)}
    assert any(p.startswith("results/lmc/") for p in changed), "the LMC curve was not recomputed"
    assert not {p for p in changed if not p.startswith(("results/lmc/", "results/report/"))}, (
        f"outputs outside lmc/ and report/ changed: {sorted(changed)}"
    )
    assert mtimes(project, "results/tasks") == task_mtimes, "task checkpoints were rewritten"
    assert UP_TO_DATE in project.run("dvc", "status").stdout


def test_upstream_params_change_and_run_cache(project):
    config = yaml.safe_load(project.read_config())
    n_samples = int(config["fisher"]["n_samples"])
    fisher_before = {p: d for p, d in project.outputs().items() if p.startswith("results/fisher/")}

    set_param(project, "fisher", "n_samples", n_samples + 2)
    status = project.run("dvc", "status").stdout
    assert re.findall(r"^(\S+):$", status, flags=re.M) == ["fisher"], status

    out = project.run("dvc", "repro", "fisher", timeout=600).stdout  # the stage alone (and what it needs)
    assert stages_run(out) == ["fisher"], out
    status = project.run("dvc", "status").stdout
    assert "experiments" in status and "results/fisher" in status, (
        "the experiments stage should now see a new Fisher\n" + status
    )

    set_param(project, "fisher", "n_samples", n_samples)
    out = project.run("dvc", "repro", "fisher").stdout
    assert "is cached - skipping run, checking out outputs" in out, out
    assert stages_run(out) == [], out
    restored = {p: d for p, d in project.outputs().items() if p.startswith("results/fisher/")}
    assert restored == fisher_before
    assert UP_TO_DATE in project.run("dvc", "status").stdout


def test_push_and_pull_restore_data_and_checkpoints(project, tmp_path):
    remote = tmp_path / "remote"
    project.run("dvc", "remote", "add", "-d", "local", str(remote))
    project.run("git", "commit", "-q", "-am", "local DVC remote")
    project.run("dvc", "push")
    expected = project.outputs()
    assert any(p.startswith("results/data/") for p in expected)
    assert any(p.endswith(".pt") and p.startswith("results/source/") for p in expected)
    assert any(p.endswith("task.pt") for p in expected)

    clone = project.git_clone(tmp_path / "clone")
    assert not (clone.root / "results").exists()
    clone.run("dvc", "pull")
    assert clone.outputs() == expected
    assert UP_TO_DATE in clone.run("dvc", "status").stdout

    # Restored files carry checkout-order mtimes and the clone has no .snakemake metadata: one
    # `snakemake --touch` (documented in dvc.yaml) tells Snakemake they are up to date.
    clone.snakemake("--touch", "--workflow-profile", "workflow/profiles/default", "--cores", "1")
    assert clone.dry_run() == []
    assert clone.outputs() == expected
