"""Per-job overhead of the `sample` and `evaluate` rules: a job's wall time against the work it does.

Sets up, in a temporary folder, what one demo job reads: the config's source (its shipped
``source.checkpoints``), the first task's prepared data, a demo extractor (a few steps) and a task
state of ``--method`` (two iterations: the job's cost does not depend on how well it was trained).
Then, ``--reps`` times, alternating:

- ``python -c 'import torch'``: the floor any job of this package pays (interpreter + torch);
- ``lfsgan sample`` (the method's task generator) and ``lfsgan evaluate`` as the workflow runs them,
  each a fresh process: wall time;

and, in this process after one warm-up call, each verb's ``run`` again: what the job computes once
everything is imported (the rebuild of the generator, 500 samples, the metrics). Overhead = job wall
time - in-process time; the ratio job / in-process says how much of the job is start-up.

Then the two groupings of each rule (``evaluation.jobs``), alternating: ``--sets`` one-set jobs
(``per_set``) against one job sampling or evaluating the ``--sets`` sets in one process (``per_method``;
the demo's methods have 6 sets each), and the overhead per set of each.

    python benchmarks/job_overhead.py [--config config/config.yaml] [--method lfsgan] [--reps 3] [--sets 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LFSGAN = [sys.executable, "-m", "lfsgan.cli"]


def _run(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of ``cmd`` (a fresh process, one torch thread as the demo's jobs use)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _setup(work: Path, config: str, method: str) -> tuple[dict, dict[str, list[str]]]:
    """Write the small config and the inputs of one sample and one evaluate job; return the jobs' arguments."""
    cfg = yaml.safe_load((REPO / config).read_text())
    cfg["task_train"].update(iterations=2, checkpoint_every=2, sample_every=2)
    cfg["evaluation"]["fid"]["extractor_steps"] = 5
    for entry in cfg["source"].get("checkpoints") or []:
        entry["path"] = str(REPO / entry["path"])
    if not cfg["source"].get("checkpoints"):
        raise SystemExit(f"{config} has no source.checkpoints; this benchmark samples a shipped source")
    (work / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    task, src_domain = cfg["tasks"][0], cfg["source"]["domain"]
    source = cfg["source"]["checkpoints"][0]["path"]
    base = [*LFSGAN]
    for domain in (src_domain, task):
        _run([*base, "prepare", "--config", "cfg.yaml", "--domain", domain, "--out", f"data/{domain}"], work)
    _run([*base, "train-extractor", "--config", "cfg.yaml", "--data", f"data/{src_domain}", f"data/{task}", "--out", "ext.pt"], work)
    _run([*base, "train-task", "--config", "cfg.yaml", "--method", method, "--task", task, "--source", source,
          "--data", f"data/{task}", "--out", "task"], work)
    jobs = {
        "sample": ["sample", "--config", "cfg.yaml", "--method", method, "--after", task, "--task", task,
                   "--source", source, "--states", "task/task.pt", "--out", "samples"],
        "evaluate": ["evaluate", "--config", "cfg.yaml", "--samples", "samples", "--data", f"data/{task}",
                     "--extractor", "ext.pt", "--cache", "cache", "--out", "eval.json"],
    }
    return cfg, jobs


def _in_process(work: Path, jobs: dict[str, list[str]], reps: int) -> dict[str, float]:
    """Median seconds of each verb's ``run`` in this process, after one warm-up call (imports done)."""
    sys.path.insert(0, str(REPO))
    os.chdir(work)
    import torch

    torch.set_num_threads(1)
    from lfsgan.cli import build_parser
    from lfsgan.config import load_config
    import importlib

    out = {}
    for name, argv in jobs.items():
        args = build_parser().parse_args(argv)
        cfg = load_config(args.config)
        module = importlib.import_module(f"lfsgan.verbs.{name}")
        kwargs = {k: v for k, v in vars(args).items() if k not in ("verb", "config")}
        times = []
        for i in range(reps + 1):
            t0 = time.perf_counter()
            module.run(cfg, **kwargs)
            if i:
                times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--method", default="lfsgan", help="a key of the config's methods")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sets", type=int, default=6, help="sample sets of one per_method sample / evaluate job")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lfsgan-job-overhead-") as tmp:
        work = Path(tmp)
        _cfg, jobs = _setup(work, args.config, args.method)
        walls: dict[str, list[float]] = {"import torch": [], "sample": [], "evaluate": []}
        for _ in range(args.reps):  # alternating, so a load change on a shared machine hits all alike
            walls["import torch"].append(_run([sys.executable, "-c", "import torch"], work))
            for name, argv in jobs.items():
                walls[name].append(_run([*LFSGAN, *argv], work))
        grouped = {verb: _grouping(work, verb, argv, args.sets, args.reps) for verb, argv in jobs.items()}
        inner = _in_process(work, jobs, args.reps)
    floor = statistics.median(walls["import torch"])
    print(f"config {args.config}, method {args.method}, medians of {args.reps} (1 torch thread)")
    print(f"{'job':<10} {'wall s':>7} {'in-process s':>12} {'overhead s':>10} {'job/in-process':>14} {'overhead/import-torch':>21}")
    print(f"{'import torch':<10} {floor:>7.2f}")
    for name in jobs:
        wall = statistics.median(walls[name])
        over = wall - inner[name]
        print(f"{name:<10} {wall:>7.2f} {inner[name]:>12.2f} {over:>10.2f} {wall / inner[name]:>13.2f}x {over / floor:>20.2f}x")
    for verb, times in grouped.items():
        work = inner[verb]
        per_set, per_method = statistics.median(times["per_set"]), statistics.median(times["per_method"])
        print(f"\n{verb}, {args.sets} sets (work {work:.2f} s per set, in-process), medians of {args.reps}:")
        print(f"  per_set:    {args.sets} jobs {per_set:6.2f} s, overhead per set {per_set / args.sets - work:5.2f} s")
        print(f"  per_method: 1 job  {per_method:6.2f} s, overhead per set {per_method / args.sets - work:5.2f} s"
              f"  ({per_set / per_method:.2f}x faster)")


#: the arguments a grouped job takes once per set (``evaluation.jobs: per_method``)
PER_SET_ARGS = {"sample": ("--after", "--task", "--out"), "evaluate": ("--samples", "--data", "--out")}


def _grouping(work: Path, verb: str, argv: list[str], sets: int, reps: int) -> dict[str, list[float]]:
    """Wall seconds of ``sets`` one-set jobs of ``verb`` and of one job handling ``sets`` sets (the same
    set each time, each to its own output), ``reps`` times, alternating."""
    flags = PER_SET_ARGS[verb]
    value = {f: argv[argv.index(f) + 1] for f in flags}
    common = [a for i, a in enumerate(argv) if a not in flags and (i == 0 or argv[i - 1] not in flags)]
    suffix = Path(value["--out"]).suffix

    def per_set_args(f: str, k: int, name: str) -> str:
        return f"{name}{k}{suffix}" if f == "--out" else value[f]

    times: dict[str, list[float]] = {"per_set": [], "per_method": []}
    for _ in range(reps):
        times["per_set"].append(sum(
            _run([*LFSGAN, *common, *[x for f in flags for x in (f, per_set_args(f, k, f"{verb}-set"))]], work)
            for k in range(sets)))
        many = [x for f in flags for x in (f, *[per_set_args(f, k, f"{verb}-grouped") for k in range(sets)])]
        times["per_method"].append(_run([*LFSGAN, *common, *many], work))
    return times


if __name__ == "__main__":
    main()
