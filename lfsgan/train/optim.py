"""Adam with StyleGAN2's lazy-regularisation correction (Karras et al. 2020, Appendix B)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def lazy_ratio(every: int, enabled: bool) -> float:
    """``c = every / (every + 1)`` when a regulariser runs every ``every`` steps, else 1.

    A lazily regularised network takes ``every + 1`` optimiser steps per ``every`` iterations; scaling
    lr by ``c`` and Adam's betas to ``beta ** c`` keeps the effective step and averaging horizon.
    """
    return every / (every + 1) if enabled else 1.0


def lazy_adam(params: Iterable[nn.Parameter], lr: float, every: int, enabled: bool, impl: str = "default") -> torch.optim.Adam:
    """Adam(lr * c, betas = (0 ** c, 0.99 ** c)) with ``c`` from :func:`lazy_ratio` (rosinality defaults).

    ``impl``: ``"default"`` (torch's choice: a loop over the parameters on the CPU), ``"foreach"``
    (multi-tensor kernels) or ``"fused"`` (one fused kernel per dtype and device)."""
    params = list(params)
    if not params:
        raise ValueError("no trainable parameters were given to the optimiser; check the method's *_parameters()")
    c = lazy_ratio(every, enabled)
    kernels = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
    return torch.optim.Adam(params, lr=lr * c, betas=(0.0**c, 0.99**c), **kernels)
