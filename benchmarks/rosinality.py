"""rosinality/stylegan2-pytorch's training iteration, for timing against lfsgan's (benchmarks/train_step.py).

Nothing of rosinality's code is in this repository: :func:`load_rosinality` reads ``model.py`` and
``op/`` from a folder the user gives (e.g. ``git show`` of the public repository at bef283a into a
temporary folder), copies them into a temporary folder and, for the CPU, replaces ``op/``'s two
``torch.utils.cpp_extension.load(...)`` calls (CUDA kernels) by ``None`` so that the pure-PyTorch
fallbacks run (``upfirdn2d_native``, ``fused_leaky_relu``'s CPU branch) — the same edit
tests/test_models.py's golden file was made with. :class:`RosinalityStep` is ``train.py``'s loop
body (augmentation off): D step, lazy R1 every ``d_reg_every``, G step, lazy path length every
``g_reg_every``, EMA ``accumulate``, with train.py's default arguments.
"""

from __future__ import annotations

import importlib
import math
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import torch
from torch import autograd
from torch.nn import functional as F

_LOAD_CALL = re.compile(r"^(\w+) = load\((?:.|\n)*?^\)$", re.M)


def load_rosinality(folder: str | Path, cpu: bool = True) -> ModuleType:
    """rosinality's ``model`` module from ``folder`` (holding ``model.py`` and ``op/``), imported from a
    temporary copy; with ``cpu`` the CUDA extension loads are replaced by ``None``."""
    folder = Path(folder)
    if not (folder / "model.py").is_file() or not (folder / "op").is_dir():
        raise SystemExit(f"{folder} must hold rosinality's model.py and op/ (github.com/rosinality/stylegan2-pytorch)")
    tmp = Path(tempfile.mkdtemp(prefix="rosinality-"))
    shutil.copy(folder / "model.py", tmp / "model.py")
    shutil.copytree(folder / "op", tmp / "op")
    if cpu:
        for name in ("fused_act.py", "upfirdn2d.py"):
            path = tmp / "op" / name
            text, n = _LOAD_CALL.subn(r"\1 = None", path.read_text())
            if n != 1:
                raise SystemExit(f"{path}: expected one cpp_extension load(...) call, found {n}")
            path.write_text(text)
    for mod in [m for m in sys.modules if m == "model" or m == "op" or m.startswith("op.")]:
        del sys.modules[mod]
    sys.path.insert(0, str(tmp))
    try:
        return importlib.import_module("model")
    finally:
        sys.path.remove(str(tmp))


def _mixing_noise(batch: int, latent: int, prob: float, device: torch.device) -> list[torch.Tensor]:
    if prob > 0 and random.random() < prob:
        return list(torch.randn(2, batch, latent, device=device).unbind(0))
    return [torch.randn(batch, latent, device=device)]


def _requires_grad(model: torch.nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad = flag


class RosinalityStep:
    """One ``train.py`` iteration per :meth:`step` (r1 10, path_regularize 2, path_batch_shrink 2,
    d_reg_every 16, g_reg_every 4, mixing 0.9, lr 0.002, EMA decay 0.5 ** (32 / 10000))."""

    r1, path_regularize, path_batch_shrink, d_reg_every, g_reg_every, mixing, lr = 10.0, 2.0, 2, 16, 4, 0.9, 0.002

    def __init__(self, model: ModuleType, size: int, style_dim: int, n_mlp: int, channel_multiplier: int,
                 batch: int, device: torch.device):
        self.G = model.Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier).to(device)
        self.D = model.Discriminator(size, channel_multiplier=channel_multiplier).to(device)
        self.g_ema = model.Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier).to(device).eval()
        self.g_ema.load_state_dict(self.G.state_dict())
        g_ratio, d_ratio = self.g_reg_every / (self.g_reg_every + 1), self.d_reg_every / (self.d_reg_every + 1)
        self.g_optim = torch.optim.Adam(self.G.parameters(), lr=self.lr * g_ratio, betas=(0**g_ratio, 0.99**g_ratio))
        self.d_optim = torch.optim.Adam(self.D.parameters(), lr=self.lr * d_ratio, betas=(0**d_ratio, 0.99**d_ratio))
        self.style_dim, self.batch, self.device = style_dim, batch, device
        self.mean_path_length = 0.0
        random.seed(0)

    def step(self, i: int, real_img: torch.Tensor) -> None:
        G, D, dev = self.G, self.D, self.device
        _requires_grad(G, False)
        _requires_grad(D, True)
        fake_img, _ = G(_mixing_noise(self.batch, self.style_dim, self.mixing, dev))
        fake_pred, real_pred = D(fake_img), D(real_img)
        d_loss = F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()
        D.zero_grad()
        d_loss.backward()
        self.d_optim.step()
        if i % self.d_reg_every == 0:
            real_img = real_img.detach().requires_grad_(True)
            real_pred = D(real_img)
            (grad_real,) = autograd.grad(outputs=real_pred.sum(), inputs=real_img, create_graph=True)
            r1_loss = grad_real.pow(2).reshape(grad_real.shape[0], -1).sum(1).mean()
            D.zero_grad()
            (self.r1 / 2 * r1_loss * self.d_reg_every + 0 * real_pred[0]).backward()
            self.d_optim.step()
        _requires_grad(G, True)
        _requires_grad(D, False)
        fake_img, _ = G(_mixing_noise(self.batch, self.style_dim, self.mixing, dev))
        g_loss = F.softplus(-D(fake_img)).mean()
        G.zero_grad()
        g_loss.backward()
        self.g_optim.step()
        if i % self.g_reg_every == 0:
            path_batch = max(1, self.batch // self.path_batch_shrink)
            fake_img, latents = G(_mixing_noise(path_batch, self.style_dim, self.mixing, dev), return_latents=True)
            noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
            (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
            path_lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
            path_mean = self.mean_path_length + 0.01 * (path_lengths.mean() - self.mean_path_length)
            path_loss = (path_lengths - path_mean).pow(2).mean()
            self.mean_path_length = path_mean.detach()
            G.zero_grad()
            (self.path_regularize * self.g_reg_every * path_loss + 0 * fake_img[0, 0, 0, 0]).backward()
            self.g_optim.step()
        with torch.no_grad():  # accumulate(g_ema, g_module, accum)
            ema, decay = dict(self.g_ema.named_parameters()), 0.5 ** (32 / (10 * 1000))
            for k, p in G.named_parameters():
                ema[k].data.mul_(decay).add_(p.data, alpha=1 - decay)
