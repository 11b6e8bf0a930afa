"""`lfsgan weights` and the workflow's start-up check: every weights file a config needs is listed,
and a run that lacks one stops before its first job (not at evaluation, after all training)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lfsgan.config import load_config, validate_config
from lfsgan.metrics.requirements import missing_weights, required_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_demo_config_needs_no_weights(torch_home):
    assert required_weights(load_config(REPO / "config" / "config.yaml")) == []


def test_paper_config_lists_inception_vgg_and_source(torch_home):
    needs = {n.config_key: n for n in required_weights(load_config(REPO / "config" / "paper.yaml"))}
    assert set(needs) == {"evaluation.fid.weights", "evaluation.lpips.backbone_weights", "source.import_checkpoint"}
    assert needs["evaluation.fid.weights"].path == torch_home / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    vgg = needs["evaluation.lpips.backbone_weights"]
    assert vgg.path.name == "vgg16-397923af.pth" and vgg.sha256_prefix == "397923af" and vgg.url.endswith(vgg.path.name)
    assert needs["source.import_checkpoint"].url is None  # only the user has it
    # both LFS-GAN rows cluster with LPIPS-VGG: the same hub file, listed once
    assert sum(n.path.name == "vgg16-397923af.pth" for n in needs.values()) == 1


def _weights_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lfsgan.cli", "weights", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def test_weights_verb_names_missing_file_and_accepts_local_copies(tmp_path, torch_home):
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["evaluation"]["lpips"].update(allow_random_backbone=False, backbone_weights=str(tmp_path / "vgg16.pth"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    missing = _weights_cli(path)
    assert missing.returncode == 1
    assert f"{tmp_path / 'vgg16.pth'} does not exist (config key `evaluation.lpips.backbone_weights`)" in missing.stderr
    assert "Traceback" not in missing.stderr
    torch.save({"w": torch.ones(1)}, tmp_path / "vgg16.pth")
    present = _weights_cli(path)
    assert present.returncode == 0, present.stderr
    assert "present  sha256 " in present.stdout
    assert missing_weights(validate_config(cfg)) == []


@pytest.mark.integration
def test_workflow_stops_before_any_job_when_weights_are_missing(fresh_project):
    cfg = yaml.safe_load(fresh_project.read_config())
    cfg["evaluation"]["lpips"].update(allow_random_backbone=False, backbone_weights="/nonexistent/vgg16.pth")
    fresh_project.write_config(yaml.safe_dump(cfg))
    run = fresh_project.snakemake("--cores", "1", check=False)
    assert run.returncode != 0
    assert "1 weights file(s) missing" in run.stdout and "/nonexistent/vgg16.pth" in run.stdout
    assert not (fresh_project.root / "results").exists(), "a job ran before the check"
