"""StyleGAN2 generator (Karras et al. 2020, config F), state_dict-compatible with rosinality's
``stylegan2-pytorch`` ``model.Generator``: the shared FFHQ-256 ``g_ema`` loads with ``strict=True``.

Mapping ``z → w`` (PixelNorm + ``n_mlp`` EqualLinear/lrelu, lr multiplier ``lr_mlp``), then the
synthesis network: a learned 4×4 constant, one StyledConv at 4×4, and per resolution 8…size an
upsampling StyledConv, a StyledConv and a ToRGB whose outputs are summed over resolutions
(skip architecture). ``ws [B, n_latent, style_dim]`` feeds layer ``i`` with ``ws[:, i]``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .layers import ConstantInput, EqualLinear, ModulatedConv2d, PixelNorm, StyledConv, ToRGB, resolve_modconv

NOISE_MODES = ("random", "const", "none")


def channel_table(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature maps per resolution (rosinality's table), each capped at ``channel_max``."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: min(c, channel_max) for res, c in base.items()}


def check_size(size: int) -> int:
    """``log2(size)``; raises unless ``size`` is a power of two in 8…1024."""
    log_size = int(math.log2(size)) if size > 0 else 0
    if size not in (8, 16, 32, 64, 128, 256, 512, 1024):
        raise ValueError(f"size must be a power of two between 8 and 1024, got {size}")
    return log_size


class Generator(nn.Module):
    """StyleGAN2 generator; see the module docstring.

    ``modconv``: ``"auto"`` | ``"grouped"`` | ``"scaled"`` — how modulated convs compute (same
    images); change later with :meth:`set_modconv`.
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channel_max: int = 512,
        lr_mlp: float = 0.01,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        modconv: str = "auto",
    ):
        super().__init__()
        self.log_size = check_size(size)
        self.size, self.style_dim = size, style_dim
        self.channels = channel_table(channel_multiplier, channel_max)
        self.num_layers = (self.log_size - 2) * 2 + 1  # StyledConvs = noise inputs
        self.n_latent = self.log_size * 2 - 2  # StyledConvs + the final ToRGB

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)]
        )
        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_kernel=blur_kernel, modconv=modconv)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False, modconv=modconv)

        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept for rosinality's module tree
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = c4
        for log_res in range(3, self.log_size + 1):
            out_ch = self.channels[2**log_res]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel, modconv=modconv))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel, modconv=modconv))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel, modconv=modconv))
            in_ch = out_ch

    # --- configuration ------------------------------------------------------------------------
    def set_modconv(self, mode: str) -> None:
        """Set ``"auto"`` | ``"grouped"`` | ``"scaled"`` on every modulated conv."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.set_modconv(mode)

    def modconv_in_use(self) -> str:
        """The concrete computation modulated convs use on this generator's device."""
        return resolve_modconv(self.conv1.conv.modconv, self.input.input.device)

    # --- mapping ------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, style_dim]`` → ``w [B, style_dim]``."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"mapping expects z of shape [B, {self.style_dim}], got {tuple(z.shape)}")
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int, seed: int = 0) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` latents drawn with ``seed`` → ``[1, style_dim]``."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=gen).to(self.input.input.device)
        return self.mapping(z).mean(0, keepdim=True)

    def make_ws(self, styles: list[torch.Tensor], inject_index: int | None = None) -> torch.Tensor:
        """Broadcast ``w``s to per-layer latents ``[B, n_latent, style_dim]``.

        One style: ``[B, D]`` repeated (or ``[B, n_latent, D]`` as is). Two styles: style mixing,
        layers ``< inject_index`` take the first, the rest the second; ``inject_index`` is drawn
        uniformly from ``1…n_latent−1`` with torch's global RNG when None (as rosinality does with
        ``random``).
        """
        if not 1 <= len(styles) <= 2:
            raise ValueError(f"make_ws takes 1 or 2 style tensors, got {len(styles)}")
        if len(styles) == 1:
            w = styles[0]
            return w if w.ndim == 3 else w.unsqueeze(1).repeat(1, self.n_latent, 1)
        if inject_index is None:
            inject_index = int(torch.randint(1, self.n_latent, ()).item())
        if not 0 <= inject_index <= self.n_latent:
            raise ValueError(f"inject_index must be in 0…{self.n_latent}, got {inject_index}")
        w1 = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        w2 = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
        return torch.cat([w1, w2], 1)

    # --- synthesis ----------------------------------------------------------------------------
    def _noise_list(self, noise_mode: str) -> list[torch.Tensor | None]:
        if noise_mode == "random":
            return [None] * self.num_layers  # NoiseInjection draws fresh N(0, 1)
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if noise_mode == "none":
            return [torch.zeros_like(getattr(self.noises, f"noise_{i}")) for i in range(self.num_layers)]
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        return_features: bool = False,
        noise: list[torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``ws [B, n_latent, style_dim]`` → image ``[B, 3, size, size]``.

        ``noise``: explicit per-layer noise maps (``num_layers`` of them, ``[B or 1, 1, r, r]``),
        overriding ``noise_mode``. ``return_features``: also return every StyledConv output
        (post-activation; ``conv1`` then ``convs`` in order).
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"synthesis expects ws of shape [B, {self.n_latent}, {self.style_dim}], got {tuple(ws.shape)}")
        if noise is None:
            noise = self._noise_list(noise_mode)
        elif len(noise) != self.num_layers:
            raise ValueError(f"noise must list {self.num_layers} maps, got {len(noise)}")
        feats = []
        x = self.conv1(self.input(ws.shape[0]), ws[:, 0], noise[0])  # [B, C4, 4, 4]
        feats.append(x)
        skip = self.to_rgb1(x, ws[:, 1])  # [B, 3, 4, 4]
        for k, to_rgb in enumerate(self.to_rgbs):
            i = 2 * k + 1  # latent / noise index of the upsampling conv at this resolution
            x = self.convs[2 * k](x, ws[:, i], noise[i])  # [B, C, 2r, 2r]
            feats.append(x)
            x = self.convs[2 * k + 1](x, ws[:, i + 1], noise[i + 1])
            feats.append(x)
            skip = to_rgb(x, ws[:, i + 2], skip)
        return (skip, feats) if return_features else skip

    def forward(
        self,
        z: torch.Tensor | list[torch.Tensor],
        noise_mode: str = "random",
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        inject_index: int | None = None,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``z`` ``[B, style_dim]`` or a list of 1–2 such tensors (style mixing) → image
        ``[B, 3, size, size]`` (with ``input_is_latent``: ``w``s, or per-layer ``ws [B, n_latent, style_dim]``).
        Truncation (StyleGAN eq. in §B): ``w' = w̄ + ψ (w − w̄)``. ``return_features``: as :meth:`synthesis`."""
        styles = [z] if isinstance(z, torch.Tensor) else list(z)
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent, e.g. G.mean_latent(4096)")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        return self.synthesis(self.make_ws(styles, inject_index), noise_mode=noise_mode, return_features=return_features)
