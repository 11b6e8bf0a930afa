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


def test_shots_per_replicate_draws_each_replicate_its_own_shots(completed_run, tmp_path):
    """With data.shots_per_replicate, replicate 1 trains on other shots than replicate 0 — drawn by the
    preparation's rule with seed shot_seed + 1 — and its task.pt and its evaluation record which."""
    import json

    import numpy as np

    project = completed_run.copy(tmp_path / "p")
    cfg = yaml.safe_load(project.read_config())
    cfg["replicates"] = 2
    cfg["data"]["shots_per_replicate"] = True
    project.write_config(yaml.safe_dump(cfg, sort_keys=False))
    task = cfg["tasks"][0]
    rep1 = f"results/tasks/finetune@r1/{task}/task.pt"
    evaluation = f"results/eval/finetune@r1/after_{task}/{task}.json"
    planned = project.dry_run()
    retrained = {j.wildcards.get("method") for j in planned if j.rule == "train_task"}
    assert retrained == {f"{m}@r1" for m in cfg["methods"]}, "the option changed replicate 0's training"
    project.snakemake("--cores", "2", rep1, evaluation, timeout=900)

    manifest = json.loads((project.root / "results" / "data" / task / "manifest.json").read_text())
    shots0 = load_checkpoint(project.root / f"results/tasks/finetune/{task}/task.pt")[1]["data"]["shots"]
    meta1 = load_checkpoint(project.root / rep1)[1]["data"]
    assert shots0 == manifest["shots"]
    expected = sorted(np.random.default_rng(cfg["data"]["shot_seed"] + 1).choice(manifest["n_images"], cfg["data"]["n_shots"], replace=False).tolist())
    assert meta1["shots"] == expected and meta1["shots"] != shots0
    assert "replicate 1" in meta1["shot_rule"] and meta1["shots_sha256"] != manifest["shots_sha256"]
    lp = json.loads((project.root / evaluation).read_text())["protocol"]["lpips"]
    assert lp["reference"]["shots"] == expected  # B-LPIPS centres and memorisation use the replicate's shots
