"""StyleGAN2 layers with rosinality's parameter names, plus an adapter slot on every weight layer.

Equalised learning rate (Karras et al. 2018, ProGAN §4.1): weights are stored as ``N(0, 1)``
(divided by ``lr_mul`` for the mapping network) and multiplied at run time by
``scale = lr_mul / sqrt(fan_in)``.

Adapter hook: ``EqualLinear``, ``EqualConv2d`` and ``ModulatedConv2d`` accept
``layer.set_adapter(module)``. The adapter is called as ``weight, bias = adapter(weight, bias)``
on the *stored* tensors (``bias`` may be None) and the layer then runs exactly as usual with what it
returns. Without an adapter the layer has no extra state_dict keys. Methods such as LeFT
(Seo et al. 2023, eq. 3–6) or Piggyback filter banks plug in here without touching the models.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import Blur, FusedLeakyReLU, Upsample, fused_leaky_relu

MODCONV_MODES = ("auto", "grouped", "scaled")
DEMOD_EPS = 1e-8


class Adaptable(nn.Module):
    """Mixin: an optional child ``adapter`` that rewrites ``(weight, bias)`` before use."""

    @property
    def adapter(self) -> nn.Module | None:
        """The attached adapter, or None (then the layer has no ``adapter.*`` state_dict keys)."""
        return self._modules.get("adapter")

    @adapter.setter
    def adapter(self, adapter: nn.Module | None) -> None:
        self.set_adapter(adapter)

    def set_adapter(self, adapter: nn.Module | None) -> None:
        """Attach ``adapter`` (called as ``adapter(weight, bias) -> (weight, bias)``), or remove it."""
        if adapter is None:
            self._modules.pop("adapter", None)
            return
        if not isinstance(adapter, nn.Module):
            raise TypeError(f"adapter must be an nn.Module or None, got {type(adapter).__name__}")
        self._modules["adapter"] = adapter

    def adapted(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` after the adapter, or unchanged without one."""
        if self.adapter is None:
            return weight, bias
        new_weight, new_bias = self.adapter(weight, bias)
        if new_weight.shape != weight.shape:
            raise ValueError(
                f"{type(self).__name__}: adapter returned a weight of shape {tuple(new_weight.shape)}, "
                f"expected {tuple(weight.shape)}"
            )
        return new_weight, new_bias


class PixelNorm(nn.Module):
    """``x / sqrt(mean_c x^2 + 1e-8)`` over dim 1 (ProGAN eq. 5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(Adaptable):
    """Linear layer with equalised learning rate: ``y = x (W·scale)ᵀ + b·lr_mul``,
    ``scale = lr_mul / sqrt(in_dim)``; with ``activation="fused_lrelu"`` followed by the fused
    leaky ReLU (bias added inside). Keys: ``weight [out, in]``, ``bias [out]``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ):
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear activation must be None or 'fused_lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.in_dim, self.out_dim = in_dim, out_dim
        self.lr_mul = lr_mul
        self.scale = lr_mul / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        weight, bias = self.adapted(self.weight, self.bias)
        bias = None if bias is None else bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight * self.scale), bias)
        return F.linear(x, weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.in_dim}, {self.out_dim}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(Adaptable):
    """Conv2d with equalised learning rate, ``scale = 1/sqrt(in·k²)``.
    Keys: ``weight [out, in, k, k]``, ``bias [out]`` (optional)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.stride, self.padding = stride, padding
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in, H, W] -> [B, out, H', W']
        weight, bias = self.adapted(self.weight, self.bias)
        return F.conv2d(x, weight * self.scale, bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, stride={self.stride}, padding={self.padding}"


def resolve_modconv(mode: str, device: torch.device) -> str:
    """The concrete modulated-conv computation for ``mode`` on ``device``.

    ``auto`` picks:
      * CPU: ``scaled``. Measured (``benchmarks/modconv.py``, torch 2.15, 2 threads): forward+backward
        of a 512-ch conv at 32 px, batch 4, grouped/scaled = 1.8 (3.6 upsampling); a full G+D step at
        32 px, 1.5. Forward-only, batch 1–16: 1.2–2.0 (one exception, upsampling at batch 1: 0.8).
      * CUDA: ``scaled`` while autograd records (training), ``grouped`` under ``torch.no_grad``
        (sampling). Not measured here (no GPU in the session that wrote this); it follows NVlabs'
        stylegan2-ada-pytorch, ``fused_modconv = not self.training``. Run the benchmark with
        ``--device cuda`` and change this rule if the numbers disagree.
    """
    if mode not in MODCONV_MODES:
        raise ValueError(f"modconv must be one of {MODCONV_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if device.type == "cuda" and not torch.is_grad_enabled():
        return "grouped"
    return "scaled"


class ModulatedConv2d(Adaptable):
    """Modulated convolution (StyleGAN2 eq. 1–3).

    ``s = modulation(w)`` (an EqualLinear, bias init 1); ``w'_{oikk} = scale · s_i · W_{oikk}``;
    with ``demodulate``: ``w''_{oikk} = w'_{oikk} / sqrt(Σ_{ikk} w'^2 + 1e-8)``.
    Upsampling: stride-2 transposed conv then a 4×4 blur; downsampling: blur then stride-2 conv.

    Two equal computations (``modconv``):
      * ``grouped`` — per-sample weights ``[B·out, in, k, k]``, one grouped conv (rosinality);
      * ``scaled`` — ``x·s``, one conv with the shared weight, outputs times the demodulation
        coefficients ``d_o = (Σ_{ikk} (scale·s_i·W_{oikk})^2 + 1e-8)^{-1/2}`` (StyleGAN2 App. B,
        "non-fused" form).
    Keys: ``weight [1, out, in, k, k]``, ``modulation.{weight,bias}``, ``blur.kernel`` if resampling.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        modconv: str = "auto",
    ):
        super().__init__()
        if upsample and downsample:
            raise ValueError("ModulatedConv2d: upsample and downsample are exclusive")
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        factor = 2
        if upsample:
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)
        self.set_modconv(modconv)

    def set_modconv(self, mode: str) -> None:
        """``"auto"``, ``"grouped"`` or ``"scaled"`` (see the class docstring)."""
        if mode not in MODCONV_MODES:
            raise ValueError(f"modconv must be one of {MODCONV_MODES}, got {mode!r}")
        self.modconv = mode

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``x [B, in, H, W]``, ``style [B, style_dim]`` → ``[B, out, H', W']``."""
        weight, bias = self.adapted(self.weight, None)  # [1, out, in, k, k]
        if bias is not None:
            raise ValueError("ModulatedConv2d has no bias; its adapter must return (weight, None)")
        s = self.modulation(style)  # [B, in]
        if resolve_modconv(self.modconv, x.device) == "grouped":
            return self._grouped(x, weight, s)
        return self._scaled(x, weight, s)

    def _grouped(self, x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        batch, in_ch = x.shape[:2]
        out_ch, k = self.out_channel, self.kernel_size
        w = self.scale * weight * s.view(batch, 1, in_ch, 1, 1)  # [B, out, in, k, k]
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum([2, 3, 4]) + DEMOD_EPS).view(batch, out_ch, 1, 1, 1)
        if self.downsample:
            x = self.blur(x)
        x = x.reshape(1, batch * in_ch, *x.shape[2:])  # [1, B·in, H, W]
        if self.upsample:
            w = w.transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)  # [B·in, out, k, k]
            out = F.conv_transpose2d(x, w, stride=2, groups=batch)
            return self.blur(out.view(batch, out_ch, *out.shape[2:]))
        w = w.reshape(batch * out_ch, in_ch, k, k)  # [B·out, in, k, k]
        stride, padding = (2, 0) if self.downsample else (1, self.padding)
        out = F.conv2d(x, w, stride=stride, padding=padding, groups=batch)
        return out.view(batch, out_ch, *out.shape[2:])

    def _scaled(self, x: torch.Tensor, weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        batch, in_ch = x.shape[:2]
        w = self.scale * weight.squeeze(0)  # [out, in, k, k]
        x = x * s.view(batch, in_ch, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2))
        elif self.downsample:
            out = F.conv2d(self.blur(x), w, stride=2)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if self.demodulate:
            # Σ_{ikk} (w_oikk s_bi)^2 = Σ_i s_bi^2 · Σ_kk w_oikk^2   → [B, out]
            d = torch.rsqrt(s.pow(2) @ w.pow(2).sum([2, 3]).t() + DEMOD_EPS)
            out = out * d.view(batch, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
            f"downsample={self.downsample}, demodulate={self.demodulate}, modconv={self.modconv}"
        )


class NoiseInjection(nn.Module):
    """``x + strength · noise``, noise ``[B, 1, H, W]`` (key ``weight [1]``, init 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """Learned constant ``input [1, C, 4, 4]``, repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:  # -> [B, C, 4, 4]
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """ModulatedConv2d → noise → bias + lrelu (keys ``conv.*``, ``noise.weight``, ``activate.bias``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        demodulate: bool = True,
        modconv: str = "auto",
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim,
            demodulate=demodulate, upsample=upsample, blur_kernel=blur_kernel, modconv=modconv,
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB (no demodulation) + bias, plus the upsampled skip image.
    Keys: ``conv.*``, ``bias [1, 3, 1, 1]``, ``upsample.kernel`` if ``upsample``."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1), modconv: str = "auto"):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False, modconv=modconv)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias  # [B, 3, H, W]
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def iter_adaptable(module: nn.Module):
    """Yield ``(qualified_name, layer)`` for every EqualLinear, EqualConv2d and ModulatedConv2d in
    ``module`` in registration order (a ModulatedConv2d comes before its ``modulation``). Layers
    inside an adapter are skipped."""
    for name, layer in module.named_modules():
        if ".adapter." in f".{name}.":
            continue
        if isinstance(layer, (EqualLinear, EqualConv2d, ModulatedConv2d)):
            yield name, layer
