"""StyleGAN2 residual discriminator (Karras et al. 2020, Fig. 7c), state_dict-compatible with
rosinality's ``model.Discriminator``.

``convs``: a 1×1 fromRGB ConvLayer, then one ResBlock per resolution size…8, each halving the
resolution; then minibatch standard deviation (group 4, 1 feature; ProGAN §3), a 3×3 conv at 4×4
and two EqualLinear layers to one logit.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .generator import channel_table, check_size
from .layers import EqualConv2d, EqualLinear
from .ops import Blur, FusedLeakyReLU


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [FusedLeakyReLU], as an ``nn.Sequential`` so keys are ``0.*, 1.*, 2.*``.

    With ``downsample`` the blur runs first and the conv has stride 2 (StyleGAN2 App. B). With
    ``activate`` the bias lives in the activation, otherwise in the conv (if ``bias``).
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """``(conv2(conv1(x)) + skip(x)) / sqrt(2)``; both paths downsample 2×."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in, H, W] -> [B, out, H/2, W/2]
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, n_feat: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation as ``n_feat`` extra channels (ProGAN §3).

    Sample ``b`` is grouped with samples ``b mod M`` (``M = B / group``), as in rosinality's
    ``view(group, -1, ...)``. ``x [B, C, H, W]`` → ``[B, C + n_feat, H, W]``.
    """
    batch, channel, height, width = x.shape
    group = min(batch, group_size)
    if batch % group:
        raise ValueError(f"minibatch stddev: batch size {batch} must be divisible by min(batch, {group_size})")
    y = x.view(group, -1, n_feat, channel // n_feat, height, width)  # [G, M, F, C/F, H, W]
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # [M, F, C/F, H, W]
    y = y.mean([2, 3, 4], keepdim=True).squeeze(2)  # [M, F, 1, 1]
    y = y.repeat(group, 1, height, width)  # [B, F, H, W]
    return torch.cat([x, y], 1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator; see the module docstring."""

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        channel_max: int = 512,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        log_size = check_size(size)
        self.size = size
        self.channels = channels = channel_table(channel_multiplier, channel_max)
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        in_ch = channels[size]
        for log_res in range(log_size, 2, -1):
            out_ch = channels[2 ** (log_res - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(in_ch + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def first_blocks_parameters(self, n: int) -> list[nn.Parameter]:
        """Parameters of the first ``n`` blocks of ``convs`` (fromRGB, then the ResBlocks from the
        highest resolution down): what FreezeD (Mo et al. 2020) keeps fixed while adapting."""
        if not 0 <= n <= len(self.convs):
            raise ValueError(f"freeze_d = {n}: the discriminator has {len(self.convs)} blocks (fromRGB + ResBlocks); choose 0..{len(self.convs)}")
        return [p for block in self.convs[:n] for p in block.parameters()]

    def forward(
        self, img: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``img [B, 3, size, size]`` → logits ``[B, 1]``; with ``return_features`` also the
        output of every block in ``convs`` (fromRGB at ``size``, then each ResBlock: size/2 … 4)."""
        if img.ndim != 4 or img.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"Discriminator expects [B, 3, {self.size}, {self.size}], got {tuple(img.shape)}")
        feats = []
        x = img
        for block in self.convs:
            x = block(x)
            feats.append(x)
        x = minibatch_stddev(x, self.stddev_group, self.stddev_feat)  # [B, C+1, 4, 4]
        x = self.final_conv(x)  # [B, C4, 4, 4]
        logits = self.final_linear(x.flatten(1))  # [B, 1]
        return (logits, feats) if return_features else logits
