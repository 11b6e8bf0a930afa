"""A killed training job resumes only with the code that wrote its checkpoint.

The kill-and-edit case, for real: `lfsgan train-task` runs from a copy of the package (PYTHONPATH), is
SIGKILLed once its first checkpoint is on disk, a loss term is added to the copy's
`lfsgan/methods/finetune.py`, and the job is run again. It must start afresh, say in its log which
module changed, and end bit for bit where a fresh run of the edited code ends; an unedited rerun
resumes, and records the step it resumed at.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lfsgan.config import load_config
from lfsgan.io import load_checkpoint
from lfsgan.train import build_models
from lfsgan.train.checkpoint import save_final
from lfsgan.verbs._models import model_config

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / "config" / "test.yaml"
TASK = "inverted"
FINETUNE = "lfsgan/methods/finetune.py"
#: a real change of the computation: an L2 penalty on G's weights, a new generator loss term
NEW_LOSS_TERM = '''

    def generator_loss_terms(self, G, D, real, step, extra=None):
        return {"weight_decay": 1e-4 * sum(p.square().sum() for p in G.parameters())}
'''


class Setup:
    """A copy of the package, a config with a longer task training, prepared data and a source."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(REPO / "lfsgan", root / "lfsgan", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO / "workflow" / "schemas", root / "workflow" / "schemas")
        cfg = yaml.safe_load(TEST_CONFIG.read_text())
        cfg["task_train"].update(iterations=60, checkpoint_every=5, sample_every=1000, log_every=1)
        self.config = root / "config.yaml"
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.data = root / "data" / TASK
        self.lfsgan("prepare", "--domain", TASK, "--out", self.data).check_returncode()
        torch.manual_seed(0)
        model = model_config(load_config(self.config))
        self.source = root / "source" / "final.pt"
        save_final(self.source, *build_models(model), None, {"model": model})

    def command(self, verb: str, *args: Path | str) -> list[str]:
        return [sys.executable, "-m", "lfsgan.cli", verb, "--config", str(self.config), *map(str, args)]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.root), "OMP_NUM_THREADS": "1"}

    def lfsgan(self, verb: str, *args: Path | str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(verb, *args), cwd=self.root, env=self.env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)

    def train_args(self, out: Path) -> list[Path | str]:
        return ["--method", "finetune", "--task", TASK, "--source", self.source, "--data", self.data, "--out", out]

    def train(self, out: Path) -> str:
        run = self.lfsgan("train-task", *self.train_args(out))
        assert run.returncode == 0, run.stdout
        return run.stdout

    def train_and_kill(self, out: Path, timeout: float = 600) -> int:
        """Start the job, SIGKILL it once its checkpoint is on disk; the step the checkpoint holds."""
        proc = subprocess.Popen(self.command("train-task", *self.train_args(out)), cwd=self.root, env=self.env(),
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while not (out / "checkpoint.pt").is_file():
                assert proc.poll() is None, "the job ended before writing a checkpoint"
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert not (out / "task.pt").exists(), "the job finished before it was killed"
        return load_checkpoint(out / "checkpoint.pt")[1]["step"]

    def edit_finetune(self) -> None:
        with open(self.root / FINETUNE, "a") as f:
            f.write(NEW_LOSS_TERM)


def same_tensors(a: Path, b: Path) -> bool:
    (ta, _), (tb, _) = load_checkpoint(a), load_checkpoint(b)
    flat_a, flat_b = _flat(ta), _flat(tb)
    return flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a)


def _flat(tree: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path)


def test_killed_job_after_a_code_edit_starts_afresh_and_names_the_module(setup, tmp_path):
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    step = setup.train_and_kill(killed)
    old_code = load_checkpoint(killed / "checkpoint.pt")[1]["code"]
    setup.edit_finetune()

    log = setup.train(killed)
    afresh = [line for line in log.splitlines() if "starting afresh" in line]
    assert len(afresh) == 1 and f"code: {FINETUNE}" in afresh[0], log
    assert "resumed from" not in log and f"step {step}" not in afresh[0]
    setup.train(fresh)  # the edited code, never interrupted

    for name in ("final.pt", "task.pt"):
        assert same_tensors(killed / name, fresh / name), f"{name}: the rerun differs from a fresh run of the edited code"
        meta = load_checkpoint(killed / name)[1]
        assert meta == load_checkpoint(fresh / name)[1]
        assert meta["resumed_at_steps"] == []
        assert meta["code"]["files"][FINETUNE] != old_code["files"][FINETUNE]
        assert {f: h for f, h in meta["code"]["files"].items() if f != FINETUNE} == \
               {f: h for f, h in old_code["files"].items() if f != FINETUNE}

    losses = (killed / "losses.csv").read_text()
    assert losses == (fresh / "losses.csv").read_text()
    first = dict(zip(*(line.split(",") for line in losses.splitlines()[:2])))
    assert float(first["g_extra"]) > 0, "the new loss term is missing from the first steps"


def test_killed_job_with_the_same_code_resumes_and_records_where(setup, tmp_path):
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    step = setup.train_and_kill(killed)
    log = setup.train(killed)
    assert f"resumed from {killed / 'checkpoint.pt'} at step {step}" in log and "starting afresh" not in log
    setup.train(fresh)
    for name in ("final.pt", "task.pt"):
        assert same_tensors(killed / name, fresh / name), f"{name}: the resumed run differs from an uninterrupted one"
        meta, fresh_meta = load_checkpoint(killed / name)[1], load_checkpoint(fresh / name)[1]
        assert meta["resumed_at_steps"] == [step] and fresh_meta["resumed_at_steps"] == []
        assert meta["code"] == fresh_meta["code"]
