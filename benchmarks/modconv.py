"""Time the two modulated-convolution computations, ``grouped`` vs ``scaled``.

Prints seconds per forward+backward (all gradients: input, weight, style) of
  1. one ModulatedConv2d, 512→512 channels, 3×3, at 32×32, batch 4 (plain and upsampling 16→32);
  2. a full G + D step at size 32 (channel_max 64, style_dim 512, n_mlp 8), batch 4:
     D(G(z)).sum() backward through both networks;
and the ratio grouped / scaled (> 1: scaled is faster). ``modconv="auto"`` in
``lfsgan.models.layers.resolve_modconv`` follows these numbers.

    python benchmarks/modconv.py [--device cuda] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from common import add_device_args, setup_device
from lfsgan.models import Discriminator, Generator, ModulatedConv2d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], None], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``step()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def modconv_step(mode: str, upsample: bool, device: torch.device, batch: int = 4) -> Callable[[], None]:
    torch.manual_seed(0)
    layer = ModulatedConv2d(512, 512, 3, 512, upsample=upsample, modconv=mode).to(device)
    res = 16 if upsample else 32
    x = torch.randn(batch, 512, res, res, device=device, requires_grad=True)  # [B, 512, r, r]
    w = torch.randn(batch, 512, device=device, requires_grad=True)  # [B, style_dim]

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = w.grad = None
        layer(x, w).square().mean().backward()

    return step


def gd_step(mode: str, device: torch.device, batch: int = 4) -> Callable[[], None]:
    torch.manual_seed(0)
    G = Generator(32, channel_max=64, modconv=mode).to(device)
    D = Discriminator(32, channel_max=64).to(device)
    z = torch.randn(batch, 512, device=device)

    def step() -> None:
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        D(G(z, noise_mode="const")).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(parser, default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = setup_device(args, f"; median of {args.repeats}, seconds per forward+backward")
    cases = [
        ("ModulatedConv2d 512ch 32px B4", lambda m: modconv_step(m, False, device)),
        ("ModulatedConv2d up 512ch 16->32px B4", lambda m: modconv_step(m, True, device)),
        ("G+D size 32 channel_max 64 B4", lambda m: gd_step(m, device)),
    ]
    print(f"{'case':40s} {'grouped':>10s} {'scaled':>10s} {'grouped/scaled':>15s}")
    for label, make in cases:
        t = {m: time_step(make(m), device, args.repeats) for m in ("grouped", "scaled")}
        print(f"{label:40s} {t['grouped']:10.4f} {t['scaled']:10.4f} {t['grouped'] / t['scaled']:15.2f}")


if __name__ == "__main__":
    main()
