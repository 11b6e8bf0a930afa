"""What SLURM costs: the test workflow (config/test.yaml) run locally and through SLURM.

Runs, each in a fresh copy of the working tree (tracked and untracked files, no results):
  local      snakemake --workflow-profile workflow/profiles/default --cores N
  slurm      snakemake --workflow-profile workflow/profiles/slurm        (its `groups:`)
  ungrouped  the same profile without `groups:`/`group-components:` (one SLURM job per rule instance)
and prints wall time, SLURM jobs submitted and the ratio to the local run.

Needs a SLURM cluster whose nodes see this file system: on a CI machine start one with
`--start-cluster` (root; runs tests/slurm/up.sh, and down.sh at the end).

    python benchmarks/slurm_overhead.py --start-cluster
    python benchmarks/slurm_overhead.py --variants local slurm --target results/lmc/0_1/lmc.json
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PROFILES = REPO / "workflow" / "profiles"
VARIANTS = ("local", "slurm", "ungrouped")


def copy_sources(dst: Path, config: str) -> None:
    """Copy what git would commit (tracked + untracked, minus .gitignore'd) and use `config`."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    shutil.copyfile(REPO / config, dst / "config" / "config.yaml")


def ungrouped_profile(dst: Path) -> Path:
    """The SLURM profile minus its grouping: every rule instance is its own SLURM job."""
    profile = yaml.safe_load((PROFILES / "slurm" / "config.yaml").read_text())
    for key in ("groups", "group-components"):
        profile.pop(key, None)
    dst.mkdir(parents=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dst


def run_variant(variant: str, work: Path, args: argparse.Namespace) -> dict:
    project = work / variant
    project.mkdir()
    copy_sources(project, args.config)
    if variant == "local":
        profile = ["--workflow-profile", "workflow/profiles/default", "--cores", str(args.cores)]
    elif variant == "slurm":
        profile = ["--workflow-profile", "workflow/profiles/slurm"]
    else:
        profile = ["--workflow-profile", str(ungrouped_profile(work / "profile_ungrouped"))]
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(project)}
    cmd = ["snakemake", *args.target, *profile]
    print(f"[{variant}] {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    # SIGINT on timeout: Snakemake then cancels its SLURM jobs (SIGTERM would leave them running).
    proc = subprocess.run(
        ["timeout", "-s", "INT", "-k", "60", str(args.timeout), *cmd],
        cwd=project, env=env, capture_output=True, text=True,
    )
    wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    (work / f"{variant}.log").write_text(out)
    if proc.returncode != 0:
        raise SystemExit(f"[{variant}] failed (exit {proc.returncode}); log: {work / f'{variant}.log'}\n{out[-3000:]}")
    n_rules = len(list((project / "logs").rglob("*.log")))
    n_slurm = len(re.findall(r"has been submitted with SLURM jobid \d+", out))
    print(f"[{variant}] {wall:.1f} s, {n_rules} rule instances, {n_slurm} SLURM jobs", flush=True)
    return {"variant": variant, "wall_s": wall, "rule_instances": n_rules, "slurm_jobs": n_slurm}


def cluster_is_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "up" in out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/test.yaml", help="config to run (copied over config/config.yaml)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--target", nargs="*", default=[], help="Snakemake targets (default: the whole workflow)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores of the local run")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    parser.add_argument("--start-cluster", action="store_true", help="start tests/slurm/up.sh for the run (root)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies and logs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lfsgan-slurm-overhead-"))
    cluster_env = {**os.environ, "LFSGAN_SLURM_DIR": str(work / "slurm_state")}
    started = False
    try:
        if any(v != "local" for v in args.variants) and not cluster_is_up():
            if not args.start_cluster:
                raise SystemExit("no SLURM cluster answers `sinfo`: pass --start-cluster (root) or start one")
            subprocess.run(["bash", REPO / "tests" / "slurm" / "up.sh"], env=cluster_env, check=True)
            started = True
        results = [run_variant(v, work, args) for v in args.variants]
    finally:
        if started:
            subprocess.run(["bash", REPO / "tests" / "slurm" / "down.sh"], env=cluster_env, check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    base = next((r["wall_s"] for r in results if r["variant"] == "local"), None)
    print(f"\n{'variant':<10} {'wall s':>8} {'rules':>6} {'SLURM jobs':>11} {'x local':>8}")
    for r in results:
        ratio = f"{r['wall_s'] / base:.2f}" if base else "-"
        print(f"{r['variant']:<10} {r['wall_s']:>8.1f} {r['rule_instances']:>6} {r['slurm_jobs']:>11} {ratio:>8}")
    print(f"config {args.config}, targets {args.target or ['all']}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
