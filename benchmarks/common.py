"""Shared command-line set-up of the benchmark scripts: device and thread flags, and the header line."""

from __future__ import annotations

import argparse

import torch

from lfsgan.train import TrainConfig


def add_device_args(ap: argparse.ArgumentParser, default: str = "auto") -> None:
    ap.add_argument("--device", default=default, choices=["cpu", "cuda", "auto"])
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")


def setup_device(args: argparse.Namespace, extra: str = "") -> torch.device:
    """Apply ``--threads``, resolve ``--device`` and print what the numbers were measured on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = TrainConfig(device=args.device).resolved_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}{extra}", flush=True)
    return device
