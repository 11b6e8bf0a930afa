"""The LFS-GAN protocol as published, shrunk: `config/paper.yaml` with only its sizes made small runs
every rule to the report, and with its real sizes plans the whole DAG.

The shrunk run keeps the paper's layout and rows — an imported rosinality-format source (written
here, with the `argparse.Namespace` the field's files carry), task folders with separate 10-shot and
full sets, the released and the fixed LFS-GAN side by side with the three baselines — and changes
resolution, widths, iterations, sample counts and the number of tasks; the demo CNN stands in for
Inception and a seeded random LPIPS backbone for ImageNet VGG (no network here).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lfsgan.io import load_checkpoint
from lfsgan.train import build_models

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
SMALL_MODEL = {"style_dim": 16, "n_mlp": 2, "channel_multiplier": 1, "channel_max": 16, "lr_mlp": 0.01, "modconv": "auto"}


def _domain_images(folder: Path, n: int, hue: int, seed: int) -> list[Path]:
    """``n`` 40×40 PNGs of coloured rectangles, one colour family per domain (the extractor can tell them apart)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = np.full((40, 40, 3), 20, np.uint8)
        x, y, w, h = rng.integers(2, 20, 4)
        img[y : y + h + 10, x : x + w + 10] = (np.array([hue, 255 - hue, (hue * 7) % 256]) * rng.uniform(0.6, 1)).astype(np.uint8)
        paths.append(folder / f"img{i:03d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def _official_layout(root: Path, tasks: list[str]) -> dict[str, dict]:
    """Per task a `full/` set and a `10shot/` set (8 of the full set plus 2 images of its own)."""
    domains = {"ffhq": {"path": str(root / "ffhq")}}
    _domain_images(root / "ffhq", 24, hue=40, seed=0)
    for k, task in enumerate(tasks):
        full = _domain_images(root / task / "full", 24, hue=90 + 50 * k, seed=10 + k)
        shots = root / task / "10shot"
        shots.mkdir()
        for p in full[:8]:
            (shots / p.name).write_bytes(p.read_bytes())
        for p in _domain_images(root / task / "extra", 2, hue=90 + 50 * k, seed=20 + k):
            (shots / f"own_{p.name}").write_bytes(p.read_bytes())
        domains[task] = {"path": str(root / task / "full"), "shots": str(shots)}
    return domains


def _rosinality_checkpoint(path: Path, resolution: int, model: dict) -> Path:
    torch.manual_seed(0)
    G, D = build_models({"size": resolution, **model})
    torch.save({"g": G.state_dict(), "d": D.state_dict(), "g_ema": G.state_dict(),
                "args": argparse.Namespace(size=resolution, lr=0.002)}, path)
    return path


def _with_inputs(cfg: dict, data_root: Path, resolution: int, model: dict, tasks: list[str]) -> dict:
    cfg = json.loads(json.dumps(cfg))
    cfg["data"]["domains"] = _official_layout(data_root, tasks)
    cfg["source"]["import_checkpoint"] = str(_rosinality_checkpoint(data_root / "source.pt", resolution, model))
    return cfg


def test_paper_config_runs_every_rule_shrunk(fresh_project, tmp_path):
    tasks = PAPER["tasks"][:2]
    cfg = _with_inputs(PAPER, tmp_path / "data", 32, SMALL_MODEL, PAPER["tasks"])
    cfg.update(device="cpu", use_gpu=False, threads=1, tasks=tasks, model=SMALL_MODEL)
    cfg["data"]["resolution"] = 32
    cfg["task_train"].update(iterations=4, checkpoint_every=2, sample_every=4, n_sample_grid=4)
    for m in cfg["methods"].values():
        if m["kind"] == "lfsgan":
            m["options"].update(lpips_allow_random_backbone=True, n_anchors=4)
    cfg["fisher"].update(n_samples=8)
    cfg["evaluation"].update(n_samples=48, batch_size=48, grid=4)
    cfg["evaluation"]["fid"] = {"extractor": "lfsgan-demo-cnn", "kid_subset_size": 16, "extractor_steps": 10}
    cfg["evaluation"]["lpips"].update(allow_random_backbone=True, n_fake=24, cluster_size=4)
    cfg["resources"] = {"mem_mb": 1000, "runtime": 10, "train_runtime": 10}
    fresh_project.write_config(yaml.safe_dump(cfg, sort_keys=False))

    fresh_project.snakemake("--workflow-profile", "workflow/profiles/default", "--cores", "2", timeout=1800)

    results = fresh_project.root / "results"
    assert (results / "report" / "summary.csv").is_file()
    manifest = json.loads((results / "data" / tasks[0] / "manifest.json").read_text())
    assert [f["name"] for f in manifest["shot_files"]] == [f"img{i:03d}.png" for i in range(8)] + ["own_img000.png", "own_img001.png"]
    assert manifest["shots"][:8] == list(range(8)) and manifest["shots"][8:] == [None, None] and manifest["n_images"] == 24
    # the released row keeps its additive LeFT factors at zero; the fixed row trains them
    additive = ("U_a", "V_a", "P", "Q", "R", "S")

    def additive_norm(method: str) -> float:
        state, _ = load_checkpoint(results / "tasks" / method / tasks[0] / "task.pt")
        flat = {}

        def walk(prefix, node):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v) if isinstance(v, dict) else flat.__setitem__(f"{prefix}{k}", v)

        walk("", state)
        picked = [v for k, v in flat.items() if k.rsplit(".", 1)[-1] in additive]
        assert picked, f"no additive LeFT factors in {method}'s task.pt: {sorted(flat)[:5]}"
        return float(sum(v.abs().sum() for v in picked))

    assert additive_norm("lfsgan-released") == 0.0
    assert additive_norm("lfsgan") > 0.0
    planned = fresh_project.dry_run()
    assert planned == [], f"work left after the run: {planned}"


def test_paper_config_plans_the_whole_dag_at_real_size(fresh_project, tmp_path):
    cfg = _with_inputs(PAPER, tmp_path / "data", 256, PAPER["model"], PAPER["tasks"])
    fresh_project.write_config(yaml.safe_dump(cfg, sort_keys=False))
    jobs = fresh_project.dry_run()
    counts = Counter(j.rule for j in jobs)
    n_methods, n_tasks = len(PAPER["methods"]), len(PAPER["tasks"])
    pairs = n_tasks * (n_tasks + 1) // 2  # (after t, task s <= t)
    assert counts["import_source"] == 1 and "pretrain_source" not in counts
    assert counts["prepare_data"] == n_tasks  # the source is imported: its images are never read
    assert counts["train_task"] == n_methods * n_tasks == 25
    assert counts["sample"] == counts["evaluate"] == n_methods * pairs == 75
    assert counts["fisher"] == 1 and counts["report"] == 1
