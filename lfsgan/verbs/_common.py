"""What every verb does first: pick the device, set threads, record versions."""

from __future__ import annotations

import logging
import platform

import torch

log = logging.getLogger("lfsgan")


def setup_torch(cfg: dict) -> torch.device:
    """Resolve ``cfg['device']`` ("auto" = CUDA when available) and apply ``cfg['threads']``."""
    if cfg.get("threads", 0) > 0:
        torch.set_num_threads(cfg["threads"])
    name = cfg.get("device", "cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("config key 'device' is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    device = torch.device(name)
    log.info("device=%s torch=%s threads=%d", device, torch.__version__, torch.get_num_threads())
    return device


def versions() -> dict[str, str]:
    """Library versions recorded next to every result."""
    from lfsgan.metrics.protocol import library_versions

    pkgs = ("lfsgan", "torch", "torchvision", "lpips", "torch-fidelity", "tensorly", "numpy", "scipy")
    return {"python": platform.python_version(), **library_versions(pkgs)}
