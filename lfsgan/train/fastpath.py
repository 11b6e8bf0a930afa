"""Optional fast paths of a training step, each a ``train`` key and each off by default.

- ``precision: bfloat16``: the D and G steps' forward passes under ``torch.autocast(dtype=bfloat16)``,
  a method's own generator terms included (LFS-GAN's extra G pass and LPIPS cluster assignment;
  its mode-seeking distances are taken in float32) — matmuls and convolutions in bfloat16, losses and
  reductions in float32; weights, gradients and Adam stay float32. The lazy regularisers (R1, path
  length) stay float32: they differentiate twice.
  Needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX; oneDNN alone would emulate them on other
  AVX-512 CPUs, slower than float32) or a CUDA GPU that supports it.
- ``channels_last: true``: G's and D's 4-D weights and the image batches in NHWC memory order
  (oneDNN and cuDNN convolutions prefer it). Same numbers up to the convolution algorithm's rounding.
- ``compile: true``: ``torch.compile`` of G's and D's forward in the D and G steps (the regularisers
  run the same modules eagerly: compiled graphs do not support double backward). Needs a C++
  compiler on the CPU, Triton on CUDA; the first steps pay the compilation (tens of seconds).
  Random draws inside the compiled graphs use eager's generator (``fallback_random``), so the
  per-layer noise is the draw an eager run makes.
- ``adam_impl: foreach | fused``: Adam's multi-tensor or fused kernel instead of torch's default
  (the per-parameter loop on the CPU, ``foreach`` on CUDA).
- ``cudnn_benchmark: true``: cuDNN autotuning (CUDA only; not bit-reproducible between runs).

A fast path the platform lacks is switched off with one WARNING log line naming why; the run goes on
in float32 eager. All are unmeasured on a GPU; CPU measurements are in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import platform
import shutil
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """(whether bfloat16 autocast runs natively on ``device``, why not).

    On the CPU, oneDNN's own check (``_is_mkldnn_bf16_supported``) also says yes on AVX-512 CPUs
    without bfloat16 instructions (e.g. Ice Lake), where it emulates them: measured there, a 512-channel
    training step ran 2.3x *slower* than float32. Native means AVX512-BF16 or AMX; without either the
    fast path is switched off like on any CPU that lacks it."""
    if device.type == "cuda":
        return (True, "") if torch.cuda.is_bf16_supported() else (False, "this GPU has no bfloat16 support")
    if device.type == "cpu":
        if not bf16_runs_on_cpu():
            return False, "this CPU has no bfloat16 support in oneDNN"
        if not cpu_has_bf16_instructions():
            return False, ("this CPU has no bfloat16 instructions (AVX512-BF16 or AMX); oneDNN would emulate "
                           "them, slower than float32")
        return True, ""
    return False, f"bfloat16 autocast is not set up for device type {device.type!r}"


def bf16_runs_on_cpu() -> bool:
    """Whether oneDNN runs bfloat16 convolutions and matrix products on this CPU at all (natively or emulated)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def on_x86() -> bool:
    """Whether this machine's CPU is x86 (where AVX512-BF16 and AMX are the bfloat16 instructions)."""
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def cpu_has_bf16_instructions() -> bool:
    """On x86, AVX512-BF16 or AMX tiles, as torch's CPU feature detection reports them (torch >= 2.3 has
    both checks). Elsewhere (e.g. ARM) and without those checks, oneDNN's answer stands."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not on_x86() or all(check is None for check in checks):
        return bf16_runs_on_cpu()
    return any(bool(check()) for check in checks if check is not None)


def compile_supported(device: torch.device) -> tuple[bool, str]:
    """(whether ``torch.compile``'s inductor backend can build kernels for ``device``, why not)."""
    if device.type == "cuda":
        return (True, "") if importlib.util.find_spec("triton") else (False, "Triton is not installed")
    compiler = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    return (True, "") if compiler and shutil.which(compiler) else (False, "no C++ compiler (g++, c++, clang++ or $CXX) on PATH")


@dataclass
class FastPath:
    """The fast paths in effect for one :class:`lfsgan.train.step.Trainer` (after availability checks)."""

    device_type: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    compiled: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """The D/G steps' forward context: bfloat16 autocast when on, else nothing."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch ``[B, 3, H, W]`` in the memory order the modules use."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def effective(self) -> dict[str, bool]:
        return {"bf16": self.bf16, "channels_last": self.channels_last, "compile": self.compiled}


def resolve(cfg, device: torch.device) -> FastPath:
    """The fast paths ``cfg`` (a :class:`~lfsgan.train.config.TrainConfig`) asks for that ``device`` has;
    one WARNING per requested path that is switched off, one INFO line naming those in effect."""
    fp = FastPath(device_type=device.type)
    if cfg.precision == "bfloat16":
        fp.bf16, why = bf16_supported(device)
        if not fp.bf16:
            log.warning("train.precision bfloat16 is off: %s; training in float32", why)
    fp.channels_last = bool(cfg.channels_last)
    if cfg.compile:
        fp.compiled, why = compile_supported(device)
        if not fp.compiled:
            log.warning("train.compile is off: %s; training eagerly", why)
    if cfg.cudnn_benchmark:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        else:
            log.warning("train.cudnn_benchmark is off: the device is %s, not CUDA", device.type)
    on = [k for k, v in fp.effective().items() if v] + ([f"adam {cfg.adam_impl}"] if cfg.adam_impl != "default" else [])
    if on:
        log.info("training fast paths: %s (unmeasured on GPU unless docs/benchmarks.md says otherwise)", ", ".join(on))
    return fp


def prepare_modules(fp: FastPath, *modules: nn.Module | None) -> None:
    """Convert ``modules`` in place to the fast path's memory order (parameters keep their identity)."""
    if not fp.channels_last:
        return
    for m in modules:
        if m is None:
            continue
        for t in [*m.parameters(), *m.buffers()]:
            if t.dim() == 4:  # conv weights [out, in, k, k]; the modulated convs' [1, out, in, k, k] stay
                t.data = t.data.contiguous(memory_format=torch.channels_last)


def compiled(fp: FastPath, module: nn.Module) -> nn.Module:
    """``torch.compile(module)`` (sharing its parameters) when compilation is on, else ``module``."""
    if not fp.compiled:
        return module
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True  # the per-layer noise: eager's generator, eager's draws
    return torch.compile(module)

