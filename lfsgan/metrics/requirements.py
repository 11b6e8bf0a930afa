"""Every weights file a config needs, where it must lie, and whether it is there.

A run on an offline cluster must not discover a missing file after hours of training, at its
first evaluation job. :func:`required_weights` reads a resolved config and lists:

- the FID extractor's weights (torch-fidelity's Inception, unless ``evaluation.fid.weights`` names a
  local copy; the demo CNN is trained by the workflow itself and needs nothing);
- the LPIPS backbone of the evaluation (``evaluation.lpips``) and of every LFS-GAN method whose
  mode-seeking loss clusters with LPIPS (``methods.<m>.options``), unless a seeded random backbone
  is allowed (non-standard);
- the imported source checkpoint (``source.import_checkpoint``), which only its user can supply.

``lfsgan weights`` prints the list; ``--fetch`` downloads what has a public address into the torch hub
cache and verifies it; the Snakefile's start-up check (:func:`check_required_weights`) stops a run
before its first job when a file is missing and cannot be downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfsgan.metrics.weights import (
    INCEPTION_FILE,
    INCEPTION_URL,
    LPIPS_BACKBONE_FILES,
    MissingWeightsError,
    hub_checkpoint_path,
    network_reachable,
)

TORCHVISION_URL = "https://download.pytorch.org/models/{}"


@dataclass(frozen=True)
class WeightsFile:
    """One file a run needs: what it is for, the config key that points at it, where it must lie."""

    what: str
    config_key: str
    path: Path
    url: str | None  # a public address to fetch it from; None = only the user has it
    sha256_prefix: str | None  # torch hub's naming: the first hex digits of the file's sha256

    @property
    def present(self) -> bool:
        return self.path.is_file()

    @property
    def host(self) -> str | None:
        return self.url.split("/")[2] if self.url else None


def _hub_file(filename: str) -> tuple[Path, str | None]:
    prefix = Path(filename).stem.rsplit("-", 1)[-1]
    return hub_checkpoint_path(filename), prefix if len(prefix) >= 8 else None


def _lpips_need(what: str, net: str, weights: str | None, allow_random: bool, key: str) -> WeightsFile | None:
    if weights:
        return WeightsFile(what, key, Path(weights), None, None)
    if allow_random:
        return None
    filename = LPIPS_BACKBONE_FILES[net]
    path, prefix = _hub_file(filename)
    return WeightsFile(what, key, path, TORCHVISION_URL.format(filename), prefix)


def required_weights(cfg: dict[str, Any]) -> list[WeightsFile]:
    """The weights files a resolved config needs (see the module docstring), without duplicates."""
    needs: list[WeightsFile] = []
    fid = cfg["evaluation"]["fid"]
    if fid["extractor"] == "inception-v3-compat":
        if fid.get("weights"):
            needs.append(WeightsFile("FID Inception (torch-fidelity)", "evaluation.fid.weights", Path(fid["weights"]), None, None))
        else:
            path, _ = _hub_file(INCEPTION_FILE)
            needs.append(WeightsFile("FID Inception (torch-fidelity)", "evaluation.fid.weights", path, INCEPTION_URL, None))
    lp = cfg["evaluation"]["lpips"]
    needs.append(_lpips_need(f"LPIPS-{lp['net']} backbone (evaluation)", lp["net"], lp.get("backbone_weights"),
                             lp.get("allow_random_backbone", False), "evaluation.lpips.backbone_weights"))
    for name, method in cfg["methods"].items():
        opts = method.get("options") or {}
        if method["kind"] == "lfsgan" and opts.get("mode_seeking", "intended") != "off":
            needs.append(_lpips_need(f"LPIPS-vgg backbone (method {name}'s mode-seeking clusters)", "vgg",
                                     opts.get("lpips_backbone_weights"), opts.get("lpips_allow_random_backbone", False),
                                     f"methods.{name}.options.lpips_backbone_weights"))
    if cfg["source"].get("import_checkpoint"):
        needs.append(WeightsFile("source generator (rosinality format)", "source.import_checkpoint",
                                 Path(cfg["source"]["import_checkpoint"]), None, None))
    unique: dict[Path, WeightsFile] = {}
    for need in needs:
        if need is not None and need.path not in unique:
            unique[need.path] = need
    return list(unique.values())


def missing_weights(cfg: dict[str, Any], check_network: bool = True) -> list[str]:
    """One sentence per needed file that is absent and cannot be downloaded now (empty: all is well)."""
    problems = []
    reachable: dict[str, bool] = {}
    for need in required_weights(cfg):
        if need.present:
            continue
        if need.url is not None and check_network:
            host = need.host or ""
            if host not in reachable:
                reachable[host] = network_reachable(host)
            if reachable[host]:
                continue  # the library downloads it on first use
        where = f"copy it to {need.path}" if need.url else f"the file {need.path} does not exist"
        fetch = " or run `lfsgan weights --fetch` on a machine with internet" if need.url else ""
        problems.append(f"{need.what}: {where}{fetch} (config key `{need.config_key}`)")
    return problems


def check_required_weights(cfg: dict[str, Any], source: str = "config") -> None:
    """Raise :class:`MissingWeightsError` listing every missing file; run before the first job."""
    problems = missing_weights(cfg)
    if problems:
        raise MissingWeightsError(
            f"{source}: {len(problems)} weights file(s) missing, so the run would fail at its first job that needs them:\n  - "
            + "\n  - ".join(problems)
        )


def fetch_weights(need: WeightsFile) -> Path:
    """Download ``need`` into the torch hub cache and verify it (torch hub's sha256-prefix check when the
    name carries one; a tensors-only state dict in any case). Returns the path."""
    import torch

    from lfsgan.metrics.weights import load_state_dict_safely

    if need.url is None:
        raise MissingWeightsError(f"{need.what}: no public address; put the file at {need.path} (config key `{need.config_key}`)")
    if not need.present:
        torch.hub.load_state_dict_from_url(need.url, map_location="cpu", progress=True,
                                           check_hash=need.sha256_prefix is not None, weights_only=True)
    load_state_dict_safely(need.path, need.what, need.config_key)
    return need.path

