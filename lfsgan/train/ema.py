"""Exponential moving average of the generator's weights (Karras et al. 2018, rosinality ``accumulate``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(G: nn.Module) -> nn.Module:
    """A frozen copy of ``G`` in eval mode that :func:`accumulate` keeps up to date."""
    g_ema = copy.deepcopy(G).eval()
    g_ema.requires_grad_(False)
    return g_ema


@torch.no_grad()
def accumulate(g_ema: nn.Module, G: nn.Module, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta  for every parameter; buffers are copied.

    ``decay = 0`` makes ``g_ema`` an exact copy of ``G``. Parameter names must match (same class,
    same adapters attached).
    """
    ema_params = dict(g_ema.named_parameters())
    for name, p in G.named_parameters():
        if name not in ema_params:
            raise KeyError(f"EMA generator has no parameter {name!r}; build it with make_ema(G) after adapters are attached")
        if decay == 0:
            ema_params[name].copy_(p)
        else:
            ema_params[name].mul_(decay).add_(p, alpha=1.0 - decay)
    ema_buffers = dict(g_ema.named_buffers())
    for name, b in G.named_buffers():
        ema_buffers[name].copy_(b)
