"""GAN losses and regularisers of StyleGAN2 (Karras et al. 2020), in rosinality's forms.

Discriminator outputs may be image logits ``[B, 1]`` or a patch map ``[B, 1, h, w]`` (CDC /
LFS-GAN patch heads): adversarial losses average over every logit, i.e. over batch and patches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import autograd

from lfsgan.train.distributed import SINGLE, Shard


def per_image_logits(pred: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` or ``[B, 1, h, w]`` -> ``[B]``: the per-image mean of the (patch) logits."""
    return pred.reshape(pred.shape[0], -1).mean(1)


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """Discriminator logistic loss  E[softplus(-D(x))] + E[softplus(D(G(z)))]."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss  E[softplus(-D(G(z)))] = -E[log sigmoid(D(G(z)))]."""
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018):  E_x ||grad_x D(x)||^2  on real images only.

    ``real_img`` must require grad; ``real_pred`` is ``[B, 1]`` or a patch map, reduced to the
    per-image mean first. The caller weights it by ``gamma / 2 * r1_every`` (lazy regularisation).
    """
    (grad,) = autograd.grad(per_image_logits(real_pred).sum(), real_img, create_graph=True)  # [B, 3, H, W]
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def path_length_penalty(
    fake_img: torch.Tensor,  # [B, 3, H, W], a function of ws
    ws: torch.Tensor,  # [B, n_latent, D]
    mean_path_length: torch.Tensor,  # [] running mean a
    decay: float,
    generator: torch.Generator,
    shard: Shard = SINGLE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path-length regularisation, StyleGAN2 Eq. 4:  E_{w,y} ( ||J_w^T y||_2 - a )^2.

    ``y ~ N(0, I) / sqrt(H W)`` is drawn from ``generator`` (on the CPU, then moved, so draws do not
    depend on the device); ``||J_w^T y||`` is taken per latent row and averaged over rows as in
    rosinality (``sqrt(sum_D g^2 .mean(n_latent))``); ``a`` is the running mean with ``decay``.
    Data-parallel (``shard``): ``fake_img`` holds this rank's rows, ``y`` is this rank's rows of the
    whole batch's draw, and the batch mean in ``a`` is over every rank's rows.
    Returns ``(penalty, new_mean_path_length (detached), path_lengths [B])``.
    """
    _, _, h, w = fake_img.shape
    y = shard.rows(torch.randn(shard.whole(fake_img.shape), generator=generator))
    y = y.to(fake_img.device, fake_img.dtype) / math.sqrt(h * w)
    (grad,) = autograd.grad((fake_img * y).sum(), ws, create_graph=True)  # [B, n_latent, D]
    path_lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))  # [B]
    path_mean = mean_path_length + decay * (shard.batch_mean(path_lengths) - mean_path_length)
    penalty = (path_lengths - path_mean).pow(2).mean()
    return penalty, path_mean.detach(), path_lengths


MS_EPS = 1e-5  # MSGAN's official epsilon


def mode_seeking_penalty(fake_img: torch.Tensor, latents: torch.Tensor, pool: int = 1) -> torch.Tensor:
    """Mode-seeking regulariser of MSGAN (Mao et al. 2019, Eq. 3), as its official code computes it:

    ``L_ms = 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps)``,

    with the batch split into halves ``(z1, z2)`` (no extra samples). Minimising it keeps the images
    apart in proportion to their latents, which counters the collapse of every ``z`` onto one image.
    ``pool > 1`` averages the images over ``pool x pool`` blocks first, so that distance is measured
    on shapes rather than on per-pixel noise (which the noise inputs would otherwise supply for free).
    ``fake_img [B, 3, H, W]``, ``latents [B, L]`` (the z's that made the images; style-mixed pairs
    concatenated), ``B >= 2``.
    """
    half = fake_img.shape[0] // 2
    if half < 1:
        raise ValueError("the mode-seeking term needs a batch of at least 2 images")
    x = F.avg_pool2d(fake_img, pool) if pool > 1 else fake_img  # [B, 3, H/pool, W/pool]
    d_img = (x[:half] - x[half : 2 * half]).abs().mean()
    d_z = (latents[:half] - latents[half : 2 * half]).abs().mean()
    return 1.0 / (d_img / d_z + MS_EPS)
