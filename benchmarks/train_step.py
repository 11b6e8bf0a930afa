"""Images per second of a full training iteration (``lfsgan.train.Trainer.step``): modconv paths,
fast paths and rosinality's own code, alternating in one run; and the step's achieved FLOP rate.

One iteration = D step + G step, with lazy R1 (every ``r1_every``) and path-length regularisation
(every ``path_reg_every``) at their intervals, EMA update included. Two ways to average over the
regularisers:

- ``consecutive`` (``--steps N``, N >= 16): mean time of iterations ``0..N-1`` after warm-up; with
  N a multiple of 16 that holds exactly N/16 R1 and N/4 path-length passes.
- ``weighted`` (configs with fewer steps): time iteration 1 (plain), 4 (path length) and 0
  (path length + R1) and combine ``t1 + (t4 - t1) / path_reg_every + (t0 - t4) / r1_every``.

Variants (``--variants``; the first is the baseline every ratio is against):

- ``grouped``, ``scaled``: lfsgan's two modulated-convolution paths, float32 eager;
- ``bf16``, ``channels_last``, ``compile``, ``foreach``, ``fused``, ``bf16+channels_last``: the
  ``train`` fast paths (lfsgan.train.fastpath) on the ``auto`` modconv path;
- ``rosinality``: rosinality/stylegan2-pytorch's train.py iteration, from ``--rosinality DIR`` (a
  folder holding its ``model.py`` and ``op/``, e.g. ``git show`` of the public repository into a
  temporary folder; see benchmarks/rosinality.py). Added to the variants when that flag is given.

Each of ``--rounds`` rounds times every variant once, in order, on freshly built models (so a load
change on a shared machine hits them alike); the table gives medians over rounds and the median of
the round-by-round ratios ``baseline time / variant time`` (> 1: the variant is faster).

Presets (``--preset``): ``demo`` (size 32, channel_max 64, style_dim 64, n_mlp 4, multiplier 1, batch
16; override with the flags; rosinality's G has no channel_max, so it is not run there) and the
issue's comparison points, channel_max 512, style_dim 512, n_mlp 8: ``r32`` (32 px, multiplier 1,
batch 4), ``r64`` (64 px, 1, batch 8), ``r256`` (256 px, 2, batch 4: minutes per round on a CPU).

With ``--flops``, the first lfsgan variant's FLOPs per iteration (torch.utils.flop_counter, the same
averaging over regularisers) divided by its time, against this machine's float32 rate on a large
matrix product (``torch.mm`` of 4096 x 4096 on the CPU, 8192 on CUDA), printed as a fraction.

With ``--breakdown``, every variant's plain iteration once more under torch.profiler: the time inside
convolution kernels and everything else. It bounds what a faster implementation of the rest can gain:
against rosinality, ``ratio <= rosinality's iteration / lfsgan's convolution time``.

    python benchmarks/train_step.py [--device auto] [--threads N] [--preset demo] [--rounds 3]
    python benchmarks/train_step.py --preset r32 --rosinality /tmp/rosinality --flops
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from common import add_device_args, setup_device
from lfsgan.data import InfiniteSampler
from lfsgan.train import TrainConfig, Trainer, build_models

PRESETS = {
    "r32": (dict(size=32, channel_max=512, channel_multiplier=1, style_dim=512, n_mlp=8), 4),
    "r64": (dict(size=64, channel_max=512, channel_multiplier=1, style_dim=512, n_mlp=8), 8),
    "r256": (dict(size=256, channel_max=512, channel_multiplier=2, style_dim=512, n_mlp=8), 4),
}
#: variant -> (modconv path, TrainConfig fast-path keys)
LFSGAN_VARIANTS = {
    "grouped": ("grouped", {}),
    "scaled": ("scaled", {}),
    "auto": ("auto", {}),
    "bf16": ("auto", {"precision": "bfloat16"}),
    "channels_last": ("auto", {"channels_last": True}),
    "bf16+channels_last": ("auto", {"precision": "bfloat16", "channels_last": True}),
    "compile": ("auto", {"compile": True}),
    "foreach": ("auto", {"adam_impl": "foreach"}),
    "fused": ("auto", {"adam_impl": "fused"}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(model: dict, device: torch.device) -> torch.Tensor:
    return torch.randint(0, 256, (64, 3, model["size"], model["size"]), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def build_step(variant: str, model: dict, batch: int, device: torch.device, rosinality=None
               ) -> tuple[Callable[[int, torch.Tensor], object], InfiniteSampler]:
    """``(step(i, real), data)`` of one variant on fresh models (rosinality's regulariser settings)."""
    torch.manual_seed(0)
    data = InfiniteSampler(_images(model, device), batch, seed=0, device=device)
    if variant == "rosinality":
        from rosinality import RosinalityStep

        r = RosinalityStep(rosinality, model["size"], model["style_dim"], model["n_mlp"], model["channel_multiplier"], batch, device)
        return r.step, data
    mode, fast = LFSGAN_VARIANTS[variant]
    G, D = build_models({**model, "modconv": mode})
    G.to(device), D.to(device)
    trainer = Trainer(G, D, TrainConfig(batch=batch, iterations=10**6, device=device.type, **fast))
    return trainer.step, data


def _timed(step, data: InfiniteSampler, i: int, device: torch.device) -> tuple[float, float]:
    """(wall-clock s, process CPU s summed over threads) of iteration ``i``."""
    real = next(data)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    step(i, real)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def _amortised(measure: Callable[[int], tuple[float, ...]], steps: int, cfg: TrainConfig) -> tuple[tuple[float, ...], str]:
    """Per-iteration means of ``measure(i)`` with the regularisers amortised, and the averaging used."""
    if steps >= cfg.r1_every:
        values = [measure(i) for i in range(steps)]
        return tuple(sum(v) / steps for v in zip(*values)), f"consecutive x{steps}"
    t1, t4, t0 = (measure(i) for i in (1, cfg.path_reg_every, 0))
    mix = tuple(a + (b - a) / cfg.path_reg_every + (c - b) / cfg.r1_every for a, b, c in zip(t1, t4, t0))
    return mix, f"weighted (steps 1, {cfg.path_reg_every}, 0)"


def seconds_per_iteration(variant: str, model: dict, batch: int, device: torch.device, steps: int, warmup: int,
                          rosinality=None) -> tuple[float, float, str]:
    """Mean wall-clock and CPU seconds of one iteration with regularisers amortised; and the averaging used."""
    step, data = build_step(variant, model, batch, device, rosinality)
    for i in range(warmup):
        step(1 + i, next(data))  # plain iterations (1..3 are neither R1 nor path-length steps)
    (wall, cpu), how = _amortised(lambda i: _timed(step, data, i, device), steps, TrainConfig())
    return wall, cpu, how


class _FlopCount:
    """FLOPs of every op run inside the block, by torch.utils.flop_counter's per-op formulas.

    ``FlopCounterMode`` itself tracks modules with backward hooks that ``autograd.grad`` (R1, path
    length) refuses; this counts the same ops through a plain dispatch mode."""

    def __enter__(self) -> "_FlopCount":
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    counter.total += formula(*args, **kwargs, out_val=out)
                return out

        self.total, self._mode = 0, Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def flops_per_iteration(variant: str, model: dict, batch: int, device: torch.device) -> float:
    """FLOPs of one iteration (torch.utils.flop_counter's formulas; regularisers amortised as ``weighted``)."""
    step, data = build_step(variant, model, batch, device)

    def count(i: int) -> tuple[float]:
        real = next(data)
        with _FlopCount() as fc:
            step(i, real)
        return (float(fc.total),)

    return _amortised(count, 0, TrainConfig())[0][0]


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, reps: int = 5) -> float:
    """FLOP/s of ``torch.mm`` on large square matrices (best of ``reps``): this machine's peak in practice."""
    n = 8192 if device.type == "cuda" else 4096
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


#: the profiler's names for convolution kernels (forward and backward; oneDNN, the reference kernels, cuDNN)
CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                   "aten::_slow_conv2d_backward", "aten::cudnn_convolution", "aten::cudnn_convolution_transpose",
                   "aten::convolution_overrideable")


def convolution_share(variant: str, model: dict, batch: int, device: torch.device, warmup: int, rosinality=None,
                      reps: int = 2) -> tuple[float, float]:
    """(wall-clock s, s inside convolution kernels) of one plain iteration (no regulariser), under
    torch.profiler, the faster of ``reps``: how much of the step a faster implementation of everything
    else could still save."""
    from torch.profiler import profile

    step, data = build_step(variant, model, batch, device, rosinality)
    for i in range(warmup):
        step(1 + i, next(data))
    best = (float("inf"), 0.0)
    for _ in range(reps):
        real = next(data)
        with profile() as prof:
            _sync(device)
            t0 = time.perf_counter()
            step(1, real)
            _sync(device)
            wall = time.perf_counter() - t0
        conv = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in CONVOLUTION_OPS) / 1e6
        best = min(best, (wall, conv))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", choices=["demo", *PRESETS])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channel-max", type=int, default=64)
    ap.add_argument("--channel-multiplier", type=int, default=1)
    ap.add_argument("--style-dim", type=int, default=64)
    ap.add_argument("--n-mlp", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--variants", nargs="+", default=["grouped", "scaled"], choices=[*LFSGAN_VARIANTS, "rosinality"])
    ap.add_argument("--rosinality", default=None, metavar="DIR", help="folder with rosinality's model.py and op/")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of all variants, alternating")
    ap.add_argument("--steps", type=int, default=16, help=">= 16: consecutive iterations; fewer: weighted")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--flops", action="store_true", help="achieved FLOP rate of the first lfsgan variant vs torch.mm's")
    ap.add_argument("--breakdown", action="store_true",
                    help="each variant's plain iteration under torch.profiler: the share inside convolution kernels (CPU)")
    add_device_args(ap)
    args = ap.parse_args()
    device = setup_device(args)
    if args.preset == "demo":
        model = dict(size=args.size, channel_max=args.channel_max, channel_multiplier=args.channel_multiplier,
                     style_dim=args.style_dim, n_mlp=args.n_mlp)
        batch = args.batch
    else:
        model, batch = PRESETS[args.preset]
    variants = list(dict.fromkeys(args.variants + (["rosinality"] if args.rosinality else [])))
    ros = None
    if "rosinality" in variants:
        if not args.rosinality:
            ap.error("variant rosinality needs --rosinality DIR")
        if model["channel_max"] != 512:
            ap.error("rosinality's generator has 512 channels at most, fixed: use a preset (r32, r64, r256) or --channel-max 512")
        from rosinality import load_rosinality

        ros = load_rosinality(args.rosinality, cpu=device.type == "cpu")
    print(f"model {model}, batch {batch}, {args.rounds} round(s), baseline {variants[0]}", flush=True)
    print(f"{'round':>5} {'variant':<18} {'s/iter':>9} {'img/s':>9} {'cpu-s/iter':>10}  averaging", flush=True)
    walls: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            warmup = max(args.warmup, 3) if v == "compile" else args.warmup  # compilation happens in the warm-up
            sec, cpu, how = seconds_per_iteration(v, model, batch, device, args.steps, warmup, ros)
            walls[v].append(sec)
            cpus[v].append(cpu)
            print(f"{r:>5} {v:<18} {sec:>9.4f} {batch / sec:>9.3g} {cpu:>10.4f}  {how}", flush=True)
    base = variants[0]
    print(f"\nmedians over {args.rounds} round(s); ratio = {base} time / variant time, median of the rounds' ratios (> 1: faster)")
    for v in variants:
        wall_ratio = statistics.median(b / x for b, x in zip(walls[base], walls[v]))
        cpu_ratio = statistics.median(b / x for b, x in zip(cpus[base], cpus[v]))
        print(f"{v:<18} {statistics.median(walls[v]):>9.4f} s/iter  {wall_ratio:>5.2f}x wall-clock  {cpu_ratio:>5.2f}x CPU time", flush=True)
    if args.flops:
        lf = next((v for v in variants if v != "rosinality"), None)
        if lf is None:
            ap.error("--flops needs an lfsgan variant")
        flops = flops_per_iteration(lf, model, batch, device)
        peak = matmul_rate(device)
        achieved = flops / statistics.median(walls[lf])
        print(f"\n{lf}: {flops / 1e9:.3g} GFLOP/iteration, {achieved / 1e9:.3g} GFLOP/s achieved; "
              f"torch.mm float32 {peak / 1e9:.3g} GFLOP/s on this machine: fraction {achieved / peak:.3f}", flush=True)
    if args.breakdown:
        print("\none plain iteration (no regulariser) under torch.profiler, faster of 2: time inside convolution kernels")
        for v in variants:
            wall, conv = convolution_share(v, model, batch, device, args.warmup, ros)
            print(f"{v:<18} {wall:>8.3f} s/iter  convolutions {conv:>7.3f} s ({conv / wall:.0%})  everything else "
                  f"{wall - conv:>7.3f} s", flush=True)


if __name__ == "__main__":
    main()
