"""DiffAugment (Zhao et al., NeurIPS 2020): the same differentiable augmentation on every image the
discriminator reads — reals, fakes of the D step, fakes of the G step and the reals of R1 — so that
with few real images D cannot memorise them and G still gets gradients through the transform.

Policies (images in ``[-1, 1]``, ``[B, C, H, W]``; one draw per image; the released code's formulas):

- ``color``: brightness ``x + (u - 0.5)``, saturation ``(x - mean_c x) * 2u + mean_c x``, contrast
  ``(x - mean_chw x) * (u + 0.5) + mean_chw x``, with ``u ~ U[0, 1)`` drawn anew for each of the three;
- ``translation``: shift by whole pixels in ``[-H/8, H/8]`` (each axis), the vacated border zero;
- ``cutout``: a zero square of half the image side at a random place (clipped at the borders).

Every draw comes from the ``torch.Generator`` the caller passes (checkpointed with the run), so a
resumed run augments exactly as an uninterrupted one. Data-parallel (``shard``): ``x`` holds this
rank's rows, and the draws are this rank's rows of the whole batch's draws (see
:mod:`lfsgan.train.distributed`), as a one-process run draws them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lfsgan.train.distributed import SINGLE, Shard

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``""`` -> ``()``. Unknown names raise."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"augment policy {policy!r}: unknown {', '.join(map(repr, unknown))}; "
                         f"use a comma-separated subset of {', '.join(POLICIES)} (or '' for none)")
    return names


def _uniform(x: torch.Tensor, gen: torch.Generator, shard: Shard) -> torch.Tensor:
    """``u ~ U[0, 1)`` of shape ``[B, 1, 1, 1]``, drawn on the CPU (one stream on every device)."""
    return shard.rows(torch.rand(shard.whole((x.shape[0], 1, 1, 1)), generator=gen)).to(device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, batch: int, gen: torch.Generator, shard: Shard) -> torch.Tensor:
    """``batch`` integers in ``[low, high)``: this rank's rows of the whole batch's draw."""
    return shard.rows(torch.randint(low, high, shard.whole((batch,)), generator=gen))


def color(x: torch.Tensor, gen: torch.Generator, shard: Shard = SINGLE) -> torch.Tensor:
    x = x + (_uniform(x, gen, shard) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x, gen, shard) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, gen, shard) + 0.5) + mean


def _shift_index(size: int, shift: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Indices into a tensor zero-padded by 1 on that axis: ``[B, size]``, 0 (or size+1) = the pad."""
    grid = torch.arange(size, device=device)[None] + shift[:, None].to(device) + 1
    return grid.clamp(0, size + 1)


def translation(x: torch.Tensor, gen: torch.Generator, shard: Shard = SINGLE, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    B, _, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    ty = _randint(-sh, sh + 1, B, gen, shard)
    tx = _randint(-sw, sw + 1, B, gen, shard)
    rows = _shift_index(H, ty, x.device)  # [B, H]
    cols = _shift_index(W, tx, x.device)  # [B, W]
    padded = F.pad(x, [1, 1, 1, 1])  # [B, C, H+2, W+2]
    b = torch.arange(B, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, gen: torch.Generator, shard: Shard = SINGLE, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    B, _, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = _randint(0, H + (1 - ch % 2), B, gen, shard).to(x.device)
    cx = _randint(0, W + (1 - cw % 2), B, gen, shard).to(x.device)
    ys = torch.arange(H, device=x.device)[None]  # [1, H]
    xs = torch.arange(W, device=x.device)[None]
    inside_y = (ys >= (cy - ch // 2)[:, None]) & (ys < (cy - ch // 2 + ch)[:, None])  # [B, H]
    inside_x = (xs >= (cx - cw // 2)[:, None]) & (xs < (cx - cw // 2 + cw)[:, None])  # [B, W]
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])  # [B, H, W]
    return x * keep[:, None].to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator, shard: Shard = SINGLE) -> torch.Tensor:
    """Apply the ``policy``'s transforms in order (``color``, ``translation``, ``cutout`` as listed)."""
    for name in policy:
        x = _OPS[name](x, gen, shard)
    return x
