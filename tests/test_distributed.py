"""Data-parallel training under torchrun with 2 gloo processes on the CPU (tests/distributed_worker.py,
tiny models, a few steps): the same updates as one process, only rank 0 writes, a killed rank ends
the job with its rank named and the rerun resumes bit for bit. ~1.5 min on 2 cores (each 2-process
run pays ~15 s of start-up)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from lfsgan.data import InfiniteSampler
from lfsgan.io import load_checkpoint
from lfsgan.train import TrainConfig
from lfsgan.train.augment import POLICIES, diff_augment
from lfsgan.train.distributed import SINGLE, Shard, shard_from_env

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed_worker.py"
#: what the same 3 updates may differ by, 2 processes vs 1: float sums in another order (the 2-process
#: gradient is the mean of two half-batch means), amplified by Adam's normalisation in the first steps
WEIGHT_TOLERANCE = 1e-4
#: a rank's death must end the job within this many seconds
FAILURE_DEADLINE_S = 120


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}


def torchrun(nproc: int, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(WORKER), *map(str, args)]


def run(command: list[str], timeout: float = 300) -> str:
    done = subprocess.run(command, env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


def weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(path)
    return {f"{m}.{k}": v for m in ("g", "d", "g_ema") for k, v in tensors[m].items()}


def test_shard_splits_the_batch_and_reads_torchrun_env():
    assert shard_from_env({}) == SINGLE
    shard = shard_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert shard == Shard(1, 2, 1) and not shard.is_main
    x = torch.arange(8)
    assert torch.equal(shard.rows(x), torch.tensor([4, 5, 6, 7])) and shard.rng_key("torch_cpu") == "torch_cpu:rank1"
    with pytest.raises(ValueError, match="multiple of 2"):
        shard.per_rank(5)
    with pytest.raises(ValueError, match="multiple of 4"):
        TrainConfig(batch=6, devices=2, nodes=2)


@pytest.mark.parametrize("sampling", ["epochs", "replacement"])
def test_rank_samplers_split_the_one_process_batches_and_share_one_state(sampling):
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    whole = InfiniteSampler(images, 4, seed=2, sampling=sampling)
    ranks = [InfiniteSampler(images, 4, seed=2, sampling=sampling, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(5):  # across epoch boundaries
        assert torch.equal(torch.cat([next(s) for s in ranks]), next(whole))
    states = [s.state_dict() for s in (whole, *ranks)]
    assert all(torch.equal(states[0][k], st[k]) for st in states[1:] for k in states[0])
    with pytest.raises(ValueError, match="equal share"):
        InfiniteSampler(images, 3, seed=2, rank=0, world_size=2)


def test_each_rank_augments_its_rows_as_one_process_augments_the_whole_batch():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = diff_augment(x, POLICIES, torch.Generator().manual_seed(5))
    parts = [diff_augment(Shard(r, 2).rows(x), POLICIES, torch.Generator().manual_seed(5), Shard(r, 2)) for r in (0, 1)]
    assert torch.allclose(torch.cat(parts), whole, atol=1e-6, rtol=0)


def test_two_processes_update_as_one_with_the_whole_batch(tmp_path):
    """2 ranks x batch 2 vs 1 process x batch 4, the same images and latents, no stddev grouping across
    the split and no noise: after 3 steps (D, R1, G, path length, EMA) the weights agree to 1e-4."""
    common = ["--iterations", "3", "--batch", "4", "--no-cross-rank-coupling"]
    run([sys.executable, str(WORKER), tmp_path / "one", *common])
    run(torchrun(2, tmp_path / "two", *common))
    one, two = weights(tmp_path / "one" / "final.pt"), weights(tmp_path / "two" / "final.pt")
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < WEIGHT_TOLERANCE, f"2 processes differ from 1 by {worst:.3g}"
    # the logged losses are those of the whole batch
    rows = [(tmp_path / d / "losses.csv").read_text().splitlines() for d in ("one", "two")]
    assert [r.split(",")[:2] for r in rows[0]] == [r.split(",")[:2] for r in rows[1]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """An uninterrupted 2-process run of 6 steps, every write of each rank audited."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "audit").mkdir()
    run(torchrun(2, root / "run", "--iterations", "6", "--audit", root / "audit"))
    return root


def test_only_rank_0_writes_each_file_once_and_atomically(uninterrupted):
    out = (uninterrupted / "run").resolve()
    rank0, rank1 = (json.loads((uninterrupted / "audit" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1 == [], f"rank 1 wrote: {rank1[:5]}"

    renamed = Counter(Path(e[2]).relative_to(out).as_posix() for e in rank0 if e[0] == "os.rename")
    opened = [e for e in rank0 if e[0] == "open"]
    # every finished file came from a rename of a complete temporary, once (checkpoint.pt once per checkpoint)
    assert renamed == {"losses.csv": 1, "metrics.jsonl": 1, "checkpoint.pt": 3, "final.pt": 1, "samples.png": 1,
                       **{f"samples/step_{s:06d}.png": 1 for s in (2, 4, 6)}}, renamed
    # direct writes: only the temporaries, and the loss log's one append per logged step
    direct = Counter(Path(p).name for _, p, _ in opened if not Path(p).name.endswith(".tmp"))
    assert direct == {"losses.csv": 6, "metrics.jsonl": 6}, direct
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        {"losses.csv", "metrics.jsonl", "final.pt", "samples.png", *(f"samples/step_{s:06d}.png" for s in (2, 4, 6))})
    steps = [line.split(",")[0] for line in (out / "losses.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(6)]


def test_killed_rank_ends_the_job_naming_it_and_the_rerun_resumes_bit_identical(uninterrupted, tmp_path):
    out, stall = tmp_path / "run", tmp_path / "rank1.pid"
    job = subprocess.Popen(torchrun(2, out, "--iterations", "6", "--stall-rank", "1", "--stall-at-step", "3", "--stall-file", stall),
                           env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not stall.exists() or not stall.read_text():
            assert job.poll() is None and time.monotonic() < deadline, "the run ended before rank 1 reached step 3"
            time.sleep(0.2)
        os.kill(int(stall.read_text()), signal.SIGKILL)  # rank 1 dies mid-training (after the step-2 checkpoint)
        killed = time.monotonic()
        output, _ = job.communicate(timeout=FAILURE_DEADLINE_S)
        took = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0, output[-3000:]
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s+exitcode\s*: -9", output), output[-3000:]  # torchrun's report
    assert took < FAILURE_DEADLINE_S
    assert load_checkpoint(out / "checkpoint.pt")[1]["step"] == 2 and not (out / "final.pt").exists()

    run(torchrun(2, out, "--iterations", "6"))
    resumed, reference = weights(out / "final.pt"), weights(uninterrupted / "run" / "final.pt")
    assert load_checkpoint(out / "final.pt")[1]["resumed_at_steps"] == [2]
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference), "the resumed run differs from the uninterrupted one"
    assert (out / "losses.csv").read_text() == (uninterrupted / "run" / "losses.csv").read_text()


def _planned_pretrain(project, **train) -> tuple[str, str]:
    """The shell command and resources `snakemake -n -p` plans for pretrain_source with `source.train` updated."""
    import yaml

    config = yaml.safe_load(project.read_config())
    config["source"]["train"].update(train)
    config["use_gpu"] = True
    project.write_config(yaml.safe_dump(config, sort_keys=False))
    out = project.snakemake("results/source/seed0/final.pt", "-n", "-p", "--workflow-profile", "workflow/profiles/default").stdout
    block = out[out.index("rule pretrain_source"):]
    resources = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
    command = next(line for line in block.splitlines() if "lfsgan pretrain" in line)
    return command, resources


def test_rule_launches_torchrun_for_several_devices_and_srun_for_several_nodes(fresh_project):
    command, resources = _planned_pretrain(fresh_project)
    assert command.split(": ", 1)[1].startswith("lfsgan pretrain") and "gpu=1" in resources  # one process: as before
    command, resources = _planned_pretrain(fresh_project, devices=2)
    assert "python -m torch.distributed.run --standalone --nproc-per-node=2 --no-python lfsgan pretrain" in command
    assert "gpu=2" in resources and "nodes=" not in resources
    command, resources = _planned_pretrain(fresh_project, devices=4, nodes=3)
    assert command.split(": ", 1)[1].startswith("srun --nodes=3 --ntasks-per-node=1 --kill-on-bad-exit=1 python -m torch.distributed.run "
                                                "--nnodes=3 --nproc-per-node=4 --rdzv-backend=c10d")
    assert all(r in resources for r in ("nodes=3", "tasks=3", "mpi=srun", "gres=gpu:4")) and not re.search(r"\bgpu=", resources)


def test_hung_rank_makes_the_others_give_up_after_the_collective_timeout(tmp_path):
    """Rank 1 stops answering (alive, stalled): rank 0 gives up after `collective_timeout` (10 s here)
    in its next collective, saying so, and torchrun ends the job."""
    started = time.monotonic()
    job = subprocess.run(torchrun(2, tmp_path / "run", "--iterations", "6", "--stall-rank", "1", "--stall-at-step", "3",
                                  "--stall-file", tmp_path / "rank1.pid", "--collective-timeout", "10"),
                         env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=FAILURE_DEADLINE_S + 60)
    assert job.returncode != 0 and time.monotonic() - started < FAILURE_DEADLINE_S + 60
    assert "TimeoutError: rank 0 of 2 waited more than train.collective_timeout = 10 s" in job.stdout, job.stdout[-3000:]
    assert re.search(r"rank\s*: 0 \(local_rank: 0\)\s+exitcode\s*: 1", job.stdout), job.stdout[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")[1]["step"] == 2
