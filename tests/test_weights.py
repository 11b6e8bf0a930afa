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
from lfsgan.metrics.requirements import required_weights, weights_problems

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


def _weights_cli(config: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lfsgan.cli", "weights", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def _one_error_line(run: subprocess.CompletedProcess, *names: str) -> str:
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, run.stderr
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def _config_needing_the_hub_vgg(tmp_path: Path) -> Path:
    """The test config with the ImageNet LPIPS-VGG backbone (torch hub's vgg16-397923af.pth) required."""
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["evaluation"]["lpips"]["allow_random_backbone"] = False
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _plant_truncated_vgg(torch_home: Path) -> Path:
    """A file under the published name whose sha256 is not the published one (as a cut-off download)."""
    hub_file = torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    hub_file.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.ones(64, 3, 3, 3)}, hub_file)
    hub_file.write_bytes(hub_file.read_bytes()[:-100])
    return hub_file


def test_weights_verb_refuses_a_file_whose_sha256_is_not_the_published_one(tmp_path, torch_home):
    hub_file = _plant_truncated_vgg(torch_home)
    run = _weights_cli(_config_needing_the_hub_vgg(tmp_path), cwd=tmp_path)
    line = _one_error_line(run, str(hub_file), "not that of the published vgg16-397923af.pth", "397923af8e79cdbb",
                           "lfsgan weights --fetch")
    assert "1 weights file(s) not the published one" in line
    assert "WRONG  sha256 " in run.stdout and "present" not in run.stdout
    fetched = _weights_cli(_config_needing_the_hub_vgg(tmp_path), "--fetch", cwd=tmp_path)  # --fetch keeps no wrong file either
    _one_error_line(fetched, str(hub_file), "not that of the published vgg16-397923af.pth")
    assert not (tmp_path / "results").exists()


def test_weights_fetch_offline_says_which_file_and_what_to_do(tmp_path, torch_home):
    from lfsgan.metrics.weights import TORCHVISION_HOST, network_reachable

    if network_reachable(TORCHVISION_HOST):
        pytest.skip(f"{TORCHVISION_HOST} is reachable: the download would succeed")
    run = _weights_cli(_config_needing_the_hub_vgg(tmp_path), "--fetch", cwd=tmp_path)
    hub_file = torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    _one_error_line(run, "cannot download https://download.pytorch.org/models/vgg16-397923af.pth", str(hub_file),
                    "copy the file to", "evaluation.lpips.backbone_weights")
    assert not hub_file.exists() and not (tmp_path / "results").exists()


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
    assert weights_problems(validate_config(cfg)) == ([], [])


@pytest.mark.integration
def test_workflow_stops_before_any_job_when_weights_are_missing(fresh_project):
    cfg = yaml.safe_load(fresh_project.read_config())
    cfg["evaluation"]["lpips"].update(allow_random_backbone=False, backbone_weights="/nonexistent/vgg16.pth")
    fresh_project.write_config(yaml.safe_dump(cfg))
    run = fresh_project.snakemake("--cores", "1", check=False)
    assert run.returncode != 0
    assert "1 weights file(s) missing" in run.stdout and "/nonexistent/vgg16.pth" in run.stdout
    assert not (fresh_project.root / "results").exists(), "a job ran before the check"


@pytest.mark.integration
def test_workflow_stops_before_any_job_when_a_weights_file_is_not_the_published_one(fresh_project, tmp_path):
    cfg = yaml.safe_load(fresh_project.read_config())
    cfg["evaluation"]["lpips"]["allow_random_backbone"] = False
    fresh_project.write_config(yaml.safe_dump(cfg))
    torch_home = tmp_path / "torch-home"
    hub_file = _plant_truncated_vgg(torch_home)
    run = fresh_project.snakemake("--cores", "1", check=False, env=fresh_project.env(TORCH_HOME=str(torch_home)))
    assert run.returncode != 0
    assert "1 weights file(s) not the published one" in run.stdout and str(hub_file) in run.stdout
    assert not (fresh_project.root / "results").exists(), "a job ran before the check"
