"""Images per second of a full training iteration (``lfsgan.train.Trainer.step``), grouped vs scaled modconv.

One iteration = D step + G step, with lazy R1 (every ``r1_every``) and path-length regularisation
(every ``path_reg_every``) at their intervals, EMA update included. Two ways to average over the
regularisers:

- ``consecutive`` (``--steps N``, N >= 16): mean time of iterations ``0..N-1`` after warm-up; with
  N a multiple of 16 that holds exactly N/16 R1 and N/4 path-length passes.
- ``weighted`` (configs with fewer steps, e.g. ``--full``): time iteration 1 (plain), 4 (path length)
  and 0 (path length + R1) and combine ``t1 + (t4 - t1) / path_reg_every + (t0 - t4) / r1_every``.

Configs: the demo (size 32, channel_max 64, style_dim 64, n_mlp 4, channel_multiplier 1, batch 16;
override with the flags) and, with ``--full``, the paper's 256 px / multiplier 2 / style_dim 512 /
batch 4 (slow on a CPU). Prints images/s per modconv path and speed-up = scaled / grouped, by
wall clock and by process CPU time (the CPU column is the robust one on a machine shared with other
jobs; on CUDA it only counts the host side).

    python benchmarks/train_step.py [--device auto] [--threads N] [--steps 16] [--full]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import add_device_args, setup_device
from lfsgan.data import InfiniteSampler
from lfsgan.train import TrainConfig, Trainer, build_models


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trainer(model: dict, batch: int, mode: str, device: torch.device) -> tuple[Trainer, InfiniteSampler]:
    torch.manual_seed(0)
    G, D = build_models({**model, "modconv": mode})
    G.to(device), D.to(device)
    cfg = TrainConfig(batch=batch, iterations=10**6, device=device.type)  # rosinality regulariser settings
    images = torch.randint(0, 256, (64, 3, model["size"], model["size"]), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return Trainer(G, D, cfg), InfiniteSampler(images, batch, seed=0, device=device)


def _timed(trainer: Trainer, data: InfiniteSampler, step: int, device: torch.device) -> tuple[float, float]:
    """(wall-clock s, process CPU s summed over threads) of iteration ``step``."""
    real = next(data)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.step(step, real)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def seconds_per_iteration(
    model: dict, batch: int, mode: str, device: torch.device, steps: int, warmup: int
) -> tuple[float, float, str]:
    """Mean wall-clock and CPU seconds of one iteration with regularisers amortised; and the averaging used."""
    trainer, data = _trainer(model, batch, mode, device)
    for i in range(warmup):
        trainer.step(1 + i, next(data))  # plain iterations (1 is neither an R1 nor a path-length step)
    cfg = trainer.cfg
    if steps >= cfg.r1_every:
        times = [_timed(trainer, data, i, device) for i in range(steps)]
        wall, cpu = (sum(t) / steps for t in zip(*times))
        return wall, cpu, f"consecutive x{steps}"
    t1, t4, t0 = (_timed(trainer, data, i, device) for i in (1, cfg.path_reg_every, 0))
    wall, cpu = (a + (b - a) / cfg.path_reg_every + (c - b) / cfg.r1_every for a, b, c in zip(t1, t4, t0))
    return wall, cpu, f"weighted (steps 1, {cfg.path_reg_every}, 0)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channel-max", type=int, default=64)
    ap.add_argument("--channel-multiplier", type=int, default=1)
    ap.add_argument("--style-dim", type=int, default=64)
    ap.add_argument("--n-mlp", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help=">= 16: consecutive iterations; fewer: weighted")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also 256 px, multiplier 2, style_dim 512, batch 4 (weighted)")
    add_device_args(ap)
    args = ap.parse_args()
    device = setup_device(args)
    configs = [("demo", dict(size=args.size, channel_max=args.channel_max, channel_multiplier=args.channel_multiplier,
                             style_dim=args.style_dim, n_mlp=args.n_mlp), args.batch, args.steps, args.warmup)]
    if args.full:
        configs.append(("paper-256", dict(size=256, channel_max=512, channel_multiplier=2, style_dim=512, n_mlp=8), 4, 3, 1))
    print(f"{'config':<10} {'modconv':<8} {'batch':>5} {'s/iter':>9} {'img/s':>9} {'cpu-s/iter':>10}  averaging")
    for label, model, batch, steps, warmup in configs:
        speed, cpu_time = {}, {}
        for mode in ("grouped", "scaled"):
            sec, cpu, how = seconds_per_iteration(model, batch, mode, device, steps, warmup)
            speed[mode], cpu_time[mode] = batch / sec, cpu
            print(f"{label:<10} {mode:<8} {batch:>5} {sec:>9.4f} {speed[mode]:>9.3g} {cpu:>10.4f}  {how}", flush=True)
        print(f"{label:<10} speed-up scaled / grouped = {speed['scaled'] / speed['grouped']:.2f}x wall-clock, "
              f"{cpu_time['grouped'] / cpu_time['scaled']:.2f}x CPU time  ({model})", flush=True)


if __name__ == "__main__":
    main()
