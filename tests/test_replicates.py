"""Replicates: every method trains `replicates` times with its own task-training seed, each a job of
its own; different replicates give different weights, the same replicate gives the same weights."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from lfsgan.io import load_checkpoint

pytestmark = pytest.mark.integration


def _weights(path) -> dict[str, torch.Tensor]:
    """The stored generator tensors, flattened (the metadata names the run, so it always differs)."""
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            walk(f"{prefix}{k}.", v) if isinstance(v, dict) else flat.__setitem__(f"{prefix}{k}", v)

    walk("", load_checkpoint(path)[0])
    return flat


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_replicates_differ_and_each_reproduces(completed_run, tmp_path):
    project = completed_run.copy(tmp_path / "p")
    cfg = yaml.safe_load(project.read_config())
    cfg["replicates"] = 2
    project.write_config(yaml.safe_dump(cfg, sort_keys=False))
    task = cfg["tasks"][0]
    plain, rep1 = f"results/tasks/finetune/{task}/task.pt", f"results/tasks/finetune@r1/{task}/task.pt"

    planned = project.dry_run()
    assert {j.wildcards.get("method") for j in planned if j.rule == "train_task"} == {f"{m}@r1" for m in cfg["methods"]}
    project.snakemake("--cores", "2", rep1, timeout=900)

    first = _weights(project.root / rep1)
    assert not _same(_weights(project.root / plain), first), "replicate 1 trained with replicate 0's seed"
    shutil.rmtree((project.root / rep1).parent)
    project.snakemake("--cores", "2", rep1, timeout=900)
    assert _same(_weights(project.root / rep1), first), "the same replicate did not reproduce its weights"
