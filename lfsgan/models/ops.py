"""Pure-PyTorch StyleGAN2 primitives: FIR resampling (``upfirdn2d``) and the fused leaky ReLU.

Semantics follow rosinality's ``op/`` package (CUDA kernels and CPU fallbacks) so that weights
trained there give the same numbers here; the implementation is our own and runs on any device
without a compiled extension.

* ``upfirdn2d``  — upsample by zero insertion, pad, convolve with a 2-D FIR kernel (true
  convolution, i.e. the kernel is flipped as in signal processing), downsample by striding.
  Karras et al. 2020 (StyleGAN2), App. B; Zhang 2019 ("Making CNNs shift-invariant again").
* ``fused_leaky_relu`` — ``sqrt(2) * leaky_relu(x + b, 0.2)``; the gain ``sqrt(2)`` keeps the
  activations' second moment constant under He-style equalised learning rate (StyleGAN2 eq. in
  ``bias_act``: ``def_gain = sqrt(2)`` for lrelu).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A normalised 2-D FIR kernel: the outer product of a 1-D kernel with itself, summing to 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]  # [K, K]
    if k.ndim != 2:
        raise ValueError(f"FIR kernel must be 1-D or 2-D, got shape {tuple(k.shape)}")
    return k / k.sum()


def _pad4(pad: Sequence[int]) -> tuple[int, int, int, int]:
    """``(p0, p1)`` for both axes, or ``(x0, x1, y0, y1)``."""
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return tuple(pad)  # type: ignore[return-value]
    raise ValueError(f"pad must have 2 or 4 entries, got {pad!r}")


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """Upsample, FIR-filter, downsample every channel of ``x`` independently.

    ``x [B, C, H, W]``, ``kernel [kh, kw]`` → ``[B, C, H', W']`` with
    ``H' = (H*up + y0 + y1 - kh) // down + 1`` (same for W), matching rosinality's ``upfirdn2d``.

    Upsampling uses a depthwise transposed convolution with stride ``up`` (the polyphase form: no
    zeros are materialised), filtering a depthwise ``conv2d`` with the flipped kernel; negative
    pads crop. Gradients come from autograd.

    On CPU the depthwise convolutions run on channels-last input: oneDNN's depthwise kernels are
    about 2x faster in that layout (forward + backward; a demo G+D step 1.2x), and the result is the
    same tensor (values and shape; only the strides differ). Other devices keep their layout.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [B, C, H, W], got shape {tuple(x.shape)}")
    x0, x1, y0, y1 = _pad4(pad)
    kh, kw = kernel.shape
    channels = x.shape[1]
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    layout = torch.channels_last if x.device.type == "cpu" else torch.preserve_format
    if up > 1:
        # conv_transpose computes the full convolution of the zero-stuffed input with `kernel`:
        # length (H-1)*up + kh. Re-index it to "pad by (y0, y1), then valid convolution".
        w = kernel[None, None].expand(channels, 1, kh, kw).contiguous()  # [C, 1, kh, kw]
        out = F.conv_transpose2d(x.contiguous(memory_format=layout), w, stride=up, groups=channels)
        out = F.pad(out, [x0 - kw + 1, up + x1 - kw, y0 - kh + 1, up + y1 - kh])
        return out[:, :, ::down, ::down] if down > 1 else out
    w = torch.flip(kernel, [0, 1])[None, None].expand(channels, 1, kh, kw).contiguous()  # [C, 1, kh, kw]
    out = F.pad(x, [x0, x1, y0, y1]).contiguous(memory_format=layout)
    return F.conv2d(out, w, stride=down, groups=channels)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = LRELU_SLOPE,
    scale: float = LRELU_GAIN,
) -> torch.Tensor:
    """``scale * leaky_relu(x + bias, negative_slope)``, bias broadcast over channel dim 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + scaled leaky ReLU; state_dict key ``bias`` ``[C]`` as in rosinality."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = LRELU_SLOPE, scale: float = LRELU_GAIN):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class Blur(nn.Module):
    """FIR low-pass with fixed padding (buffer ``kernel``); multiplied by ``factor**2`` when it
    follows an upsampling by ``factor`` so the zero-stuffed signal keeps its DC gain."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * (upsample_factor**2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR upsampling (ToRGB skip path): ``upfirdn2d(up=factor)`` with 'same'-style padding."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Downsample(nn.Module):
    """2× FIR downsampling: ``upfirdn2d(down=factor)``."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, down=self.factor, pad=self.pad)
