"""The workflow on a real single-node SLURM cluster (tests/slurm/*.sh), through the project's
profile workflow/profiles/slurm, on config/test.yaml:

(a) a run from scratch of a slice of the DAG that reaches every rule but `report` finishes; every
    job Snakemake submitted is in SLURM's job-completion log as COMPLETED, every rule's log names
    the SLURM job it ran in, the job comments name the rules, and the outputs equal those of the
    session's local run (checkpoints by tensors; the folder path and timings in text outputs
    aside, see conftest.content_digest);
(b) with `use_gpu: true` a GPU rule's job is allocated the (fake) GPU (with `use_gpu: false`,
    in (a), no job is);
(c) a failing rule fails the run with its log path in the message, and the rerun redoes only it.
(d) data-parallel pretraining (`source.train.devices: 2`, gloo on the CPU) runs as one SLURM job
    through the profile (torchrun inside it) and writes the checkpoint of the local torchrun run.

Each SLURM job costs ~15-30 s here (queue polling plus Snakemake starting twice inside the job),
and the whole test workflow ~10 min (benchmarks/slurm_overhead.py): hence the slice in (a), and
(b), (c) on copies of the session's completed run. ~5 min in all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
PROFILE = ("--workflow-profile", "workflow/profiles/slurm")


def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S*)", line))


class Cluster:
    """The running test cluster and SLURM's own records of its jobs."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.jobcomp_file = state_dir / "jobcomp.txt"

    def completed_records(self) -> dict[int, dict[str, str]]:
        """jobcomp/filetxt: one line per finished job (JobId, JobState, Name, Tres, ...)."""
        if not self.jobcomp_file.exists():
            return {}
        records = [_fields(line) for line in self.jobcomp_file.read_text().splitlines() if line.strip()]
        return {int(r["JobId"]): r for r in records}

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job`: the controller's record (Comment, TresPerJob, ...), kept for
        MinJobAge (an hour, tests/slurm/up.sh) after the job ends."""
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return _fields(out)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the single-node SLURM fixture starts munged and slurmd: run the tests as root")
    if not (shutil.which("sbatch") and Path("/usr/sbin/slurmctld").exists()):
        subprocess.run(["bash", SCRIPTS / "install.sh"], check=True, timeout=900)
    state = tmp_path_factory.mktemp("slurm_state")
    env = {**os.environ, "LFSGAN_SLURM_DIR": str(state), "LFSGAN_SLURM_GPUS": "1"}
    up = subprocess.run(["bash", SCRIPTS / "up.sh"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, f"tests/slurm/up.sh failed:\n{up.stdout}\n{up.stderr}"
    try:
        yield Cluster(state)
    finally:
        down = subprocess.run(["bash", SCRIPTS / "down.sh"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, f"tests/slurm/down.sh failed:\n{down.stdout}\n{down.stderr}"


def set_use_gpu(project, on: bool) -> None:
    config = yaml.safe_load(project.read_config())
    config["use_gpu"] = on
    project.write_config(yaml.safe_dump(config, sort_keys=False))


def submitted_jobs(snakemake_output: str) -> list[int]:
    return [int(j) for j in re.findall(r"has been submitted with SLURM jobid (\d+)", snakemake_output)]


def slurm_job_of_log(log: Path) -> int:
    """The SLURM job a rule ran in, as the lfsgan CLI logs it at start."""
    match = re.search(r"SLURM_JOB_ID=(\S+)", log.read_text())
    assert match and match.group(1).isdigit(), f"{log} does not name a SLURM job (local run?)"
    return int(match.group(1))


def rule_logs(project) -> dict[str, Path]:
    """{logs/<rule>/<wildcards>.log: path} of every rule that ran."""
    return {str(p.relative_to(project.root)): p for p in sorted((project.root / "logs").rglob("*.log"))}


def slice_targets(project) -> tuple[list[str], set[str]]:
    """Targets reaching every rule but `report` in few jobs: one (method, task) evaluation of an
    EWC method (so the Fisher and the base source's sampling run) and the LMC curve of the first seed
    pair; and those rules."""
    config = yaml.safe_load(project.read_config())
    method = next(m for m, spec in config["methods"].items() if spec["kind"] == "ewc")
    task = config["tasks"][0]
    a, b = config["source"]["seeds"][:2]
    targets = [f"results/eval/{method}/after_{task}/{task}.json", f"results/lmc/{a}_{b}/lmc.json"]
    rules = {"prepare_data", "pretrain_source", "fisher", "train_task", "sample", "sample_source", "evaluate",
             "match_permutation", "lmc_curve"}  # sample_source: evaluate's same-latent correspondence reads the source's samples
    if config["evaluation"]["fid"]["extractor"] == "lfsgan-demo-cnn":
        rules.add("train_extractor")
    return targets, rules


def test_workflow_on_slurm_matches_local_run(slurm, completed_run, fresh_project):
    project = fresh_project
    set_use_gpu(project, False)
    targets, expected_rules = slice_targets(project)
    out = project.snakemake(*targets, *PROFILE, timeout=1800).stdout
    jobs = submitted_jobs(out)
    assert jobs, out[-4000:]

    # SLURM's own record of every submitted job.
    records = slurm.completed_records()
    assert set(jobs) <= set(records), f"jobs missing from jobcomp: {sorted(set(jobs) - set(records))}"
    assert {j: records[j]["JobState"] for j in jobs} == {j: "COMPLETED" for j in jobs}
    run_names = {records[j]["Name"] for j in jobs}
    assert len(run_names) == 1, f"one run, one SLURM job name (the run id): {run_names}"

    # Every rule instance ran inside one of those jobs, and the job's comment names its rules.
    logs = rule_logs(project)
    assert {Path(name).parts[1] for name in logs} == expected_rules
    assert set(logs) <= set(rule_logs(completed_run))
    rules_per_job: dict[int, set[str]] = {}
    for name, path in logs.items():
        rules_per_job.setdefault(slurm_job_of_log(path), set()).add(Path(name).parts[1])
    assert set(rules_per_job) == set(jobs), "a submitted job ran no rule, or a rule ran outside them"
    for job_id, rules in rules_per_job.items():
        record = slurm.job(job_id)
        assert all(rule in record["Comment"] for rule in rules), f"job {job_id}: {record['Comment']!r} vs {rules}"
        assert "gpu" not in record.get("TresPerJob", ""), f"`use_gpu: false`, yet job {job_id} asked for a GPU"
    for path in logs.values():
        assert "CUDA_VISIBLE_DEVICES=-" in path.read_text(), f"{path}: a GPU was visible with `use_gpu: false`"

    # Same outputs as the local run (deterministic on CPU with the config's seeds).
    local = completed_run.outputs(across_folders=True)
    remote = project.outputs(across_folders=True)
    assert set(remote) <= set(local)
    differ = sorted(p for p in remote if local[p] != remote[p])
    assert not differ, f"outputs differ between the SLURM and the local run: {differ}"


def test_gpu_rule_gets_the_gpu_when_configured(slurm, completed_run, tmp_path):
    """`use_gpu: true`: a GPU rule's sbatch asks --gpus=1 and SLURM allocates the fake GPU.
    (The other way round, `use_gpu: false` -> no GPU, is checked for every GPU rule in (a).)"""
    project = completed_run.copy(tmp_path / "lfsgan")
    set_use_gpu(project, True)
    out = project.snakemake(
        "results/fisher/fisher.pt", "--allowed-rules", "fisher", "--forcerun", "fisher", *PROFILE, "--verbose"
    ).stdout
    (job_id,) = submitted_jobs(out)
    sbatch = next(line for line in out.splitlines() if "sbatch call:" in line)
    assert "--gpus=1" in sbatch, sbatch
    assert slurm.job(job_id).get("TresPerJob") == "gres:gpu:1", slurm.job(job_id)
    log = project.root / "logs" / "fisher" / "fisher.log"
    assert slurm_job_of_log(log) == job_id
    # (SLURM_GPUS is set in the batch job but dropped by the plugin's `srun` step; CUDA sees the GPU.)
    assert "CUDA_VISIBLE_DEVICES=0" in log.read_text()


def test_failed_rule_names_its_log_and_rerun_redoes_only_it(slurm, completed_run, tmp_path):
    project = completed_run.copy(tmp_path / "lfsgan")
    lmc = next((project.root / "results" / "lmc").rglob("lmc.json"))
    lmc_mtime = lmc.stat().st_mtime_ns

    failed = project.snakemake(
        "--forcerun", "lmc_curve", *PROFILE, env=project.env(LFSGAN_FAIL_RULE="report"), check=False
    )
    assert failed.returncode != 0, failed.stdout[-4000:]
    assert "logs/report/report.log" in failed.stdout, failed.stdout[-4000:]
    assert "LFSGAN_FAIL_RULE" in (project.root / "logs" / "report" / "report.log").read_text()
    assert not (project.root / "results" / "report" / "summary.csv").exists()
    assert lmc.stat().st_mtime_ns > lmc_mtime, "the forced LMC curve did not run"
    lmc_mtime = lmc.stat().st_mtime_ns

    assert sorted(j.rule for j in project.dry_run()) == ["all", "report"]
    rerun = project.snakemake(*PROFILE).stdout
    (job_id,) = submitted_jobs(rerun)
    assert slurm.job(job_id)["Comment"] == "rule_report"
    assert lmc.stat().st_mtime_ns == lmc_mtime, "the finished LMC curve was redone"
    assert (project.root / "results" / "report" / "summary.csv").exists()


def test_two_process_pretraining_is_one_slurm_job_equal_to_the_local_torchrun_run(slurm, fresh_project, tmp_path):
    project = fresh_project
    config = yaml.safe_load(project.read_config())
    config["source"]["train"]["devices"] = 2
    config["use_gpu"] = False
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    target, local_profile = "results/source/seed0/final.pt", ("--workflow-profile", "workflow/profiles/default")
    project.snakemake(f"results/data/{config['source']['domain']}/images.pt", *local_profile)
    local = project.copy(tmp_path / "local")
    local.snakemake(target, *local_profile)

    out = project.snakemake(target, "--allowed-rules", "pretrain_source", *PROFILE).stdout
    (job_id,) = submitted_jobs(out)
    assert slurm.completed_records()[job_id]["JobState"] == "COMPLETED"
    assert "pretrain_source" in slurm.job(job_id)["Comment"]  # the group job of the source
    log = project.root / "logs" / "pretrain_source" / "seed0.log"
    assert slurm_job_of_log(log) == job_id
    assert "--nproc-per-node=2" in out and "torch.distributed.run" in out, out[-4000:]
    source = {p: d for p, d in project.outputs(across_folders=True).items() if p.startswith("results/source/")}
    assert {Path(p).name for p in source} >= {"final.pt", "losses.csv", "samples.png"}
    assert source == {p: d for p, d in local.outputs(across_folders=True).items() if p.startswith("results/source/")}
