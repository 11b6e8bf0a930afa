"""DVC over the Snakemake workflow (the real dvc.yaml, on config/test.yaml).

The session's completed run (tests/conftest.py) was made by `dvc repro` in a fresh git + DVC
repository; each test works on a copy of it:
- a second `dvc repro` runs nothing;
- a params change reruns only the stages that list the changed section, and inside the
  `experiments` stage Snakemake redoes only the affected rules; changing a param back restores
  the stage from DVC's run-cache;
- `dvc push` to a local remote and `dvc pull` in a fresh `git clone` restore the prepared data and
  every checkpoint, after which Snakemake has nothing to do;
- each stage's code deps cover every module its verbs import, and editing one changes the stage;
- a code-carrying pickle planted in the FID cache survives push/pull but runs nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lfsgan.codedeps import verb_sources
from lfsgan.io import sha256_file

pytestmark = pytest.mark.integration

UP_TO_DATE = "Data and pipelines are up to date."
REPO = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------- code dependencies


def _stage_rules(cmd: str, all_rules: set[str]) -> set[str]:
    """The Snakemake rules a stage's command may run: `--allowed-rules a b ...`, `--until r`, else all."""
    words = cmd.split()
    if "--allowed-rules" in words:
        i = words.index("--allowed-rules") + 1
        rules = []
        while i < len(words) and not words[i].startswith("-"):
            rules.append(words[i])
            i += 1
        return set(rules)
    if "--until" in words:
        return {words[words.index("--until") + 1]}
    return all_rules


def _rule_verbs() -> dict[str, str]:
    """{rule: the `lfsgan VERB` its shell command runs}, read from workflow/rules/*.smk."""
    verbs = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^\s*rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            found = re.search(r"\blfsgan ([a-z][a-z-]*) --config", block)
            if found:
                verbs[name] = found.group(1)
    return verbs


def test_dvc_code_deps_cover_every_module_the_stages_verbs_import():
    """Every file `lfsgan VERB` runs (lfsgan.codedeps, from the imports) is a dep of each stage that runs VERB."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rule_verbs = _rule_verbs()
    assert {"prepare", "pretrain", "import-source", "fisher", "train-task", "evaluate"} <= set(rule_verbs.values())
    checked = set()
    for name, stage in stages.items():
        body = stage.get("do", stage)
        cmd = " ".join(body["cmd"]) if isinstance(body["cmd"], list) else body["cmd"]
        deps = [d for d in body["deps"] if "${" not in d]
        for rule in sorted(_stage_rules(cmd, set(rule_verbs))):
            assert rule in rule_verbs, f"stage {name}: no rule {rule!r} that runs an lfsgan verb"
            for path in verb_sources(rule_verbs[rule], REPO):
                covered = any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)
                assert covered, f"dvc.yaml stage {name!r} runs `lfsgan {rule_verbs[rule]}`, which imports {path}; add it to the stage's deps"
                checked.add((name, path))
    # the modules the issue found missing are among those checked
    for stage, path in [("source", "lfsgan/data/prepare.py"), ("source", "lfsgan/methods/base.py"), ("source", "lfsgan/io.py"),
                        ("source", "lfsgan/config.py"), ("source", "workflow/schemas/config.schema.yaml"),
                        ("fisher", "lfsgan/verbs/fisher.py"), ("fisher", "lfsgan/models/generator.py"), ("fisher", "lfsgan/train/loop.py")]:
        assert (stage, path) in checked


def test_editing_a_covered_module_changes_the_stage(project):
    """`dvc status` reports the stages whose verbs import an edited module, and only those."""
    assert UP_TO_DATE in project.run("dvc", "status").stdout
    with open(project.root / "lfsgan" / "methods" / "base.py", "a") as f:
        f.write("\n# an edit\n")
    out = project.run("dvc", "status").stdout
    changed = set(re.findall(r"^(\S+):\s*$", out, flags=re.M))
    assert {"fisher", "experiments"} <= changed and any(s.startswith("source@") for s in changed), out
    assert "data" not in changed, out
    with open(project.root / "lfsgan" / "verbs" / "fisher.py", "a") as f:
        f.write("\n# an edit\n")
    project.run("git", "checkout", "lfsgan/methods/base.py")
    out = project.run("dvc", "status").stdout
    changed = set(re.findall(r"^(\S+):\s*$", out, flags=re.M))
    assert changed == {"fisher", "experiments"}, out


# ---------------------------------------------------------------- security


def test_poisoned_fid_cache_from_the_remote_runs_nothing(project, tmp_path, plant_poison):
    """A code-carrying pickle planted in results/eval/.cache, pushed and pulled by DVC, is refused by
    `lfsgan evaluate`; the metrics are those of the clean run."""
    marker = tmp_path / "pwned"
    cache = project.root / "results" / "eval" / ".cache"
    planted = plant_poison(cache, marker)
    assert planted and not marker.exists()
    project.run("dvc", "commit", "-f", "experiments")
    remote = tmp_path / "remote"
    project.run("dvc", "remote", "add", "-d", "local", str(remote))
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "poisoned cache, local DVC remote")
    project.run("dvc", "push")

    clone = project.git_clone(tmp_path / "clone")
    clone.run("dvc", "pull")
    for p in planted:
        assert sha256_file(clone.root / p.relative_to(project.root)) == sha256_file(p)
    metrics = sorted((clone.root / "results" / "eval").glob("*/after_*/*.json"))
    clean = json.loads(metrics[0].read_text())
    method, after, task = metrics[0].relative_to(clone.root / "results" / "eval").with_suffix("").parts
    out = tmp_path / "again.json"
    run = clone.run(
        "lfsgan", "evaluate", "--config", "config/config.yaml",
        "--samples", f"results/samples/{method}/{after}/{task}", "--data", f"results/data/{task}",
        "--extractor", "results/extractor/demo_cnn.pt", "--cache", "results/eval/.cache", "--out", str(out),
    )
    assert "refused" in run.stdout
    assert not marker.exists()
    again = json.loads(out.read_text())
    assert (again["fid"], again["kid_mean"], again["kid_std"]) == (clean["fid"], clean["kid_mean"], clean["kid_std"])
