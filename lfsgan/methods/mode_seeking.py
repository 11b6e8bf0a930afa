"""Cluster-wise mode-seeking loss of LFS-GAN (``reference/methods.md`` §1.6).

MSGAN's mode-seeking term (Mao et al. 2019: image distance over latent distance, inverted) taken at
three levels — mapping (w over z), every intermediate StyledConv feature and the image (over w) —
and summed over pairs *inside clusters*, a cluster being the generated samples whose LPIPS-nearest
real training image is the same::

    S    = Σ_b Σ_{(i,j) ∈ pairs(b)} [ d(w_i,w_j)/d(z_i,z_j) + (1/L) Σ_l d(f_i^l,f_j^l)/d(w_i,w_j) + d(x_i,x_j)/d(w_i,w_j) ]
    L_ms = 1 / ( S / C + 1e-5 )

``d`` = mean absolute difference, ``L`` = number of feature maps, ``C`` = number of clusters with at
least two members. Gradients flow through numerators and denominators; only the LPIPS assignment is
taken without gradient.

``pairs(b)`` has two variants:

* ``intended`` — every pair ``i < j`` of cluster b's members (what "cluster-wise" means);
* ``faithful`` — the released code: pairs ``i < j < L_b`` of the *first L_b samples of the batch*,
  whatever cluster they are in (batch indices are never mapped to cluster members).
"""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("intended", "faithful")
EPS = 1e-5


@torch.no_grad()
def assign_clusters(images: torch.Tensor, real: torch.Tensor, lpips_model: nn.Module) -> torch.Tensor:
    """``c(n) = argmin_b LPIPS(x_n, y_b)``: ``images [N, 3, H, W]``, ``real [B, 3, H, W]`` (both in
    [-1, 1]) → ``[N]`` long.

    Each image goes through the LPIPS backbone once (N + B passes, not 2·N·B) and all N×B distances
    come from :func:`lfsgan.metrics.diversity.lpips_matrix`, equal to ``lpips_model(x_n, y_b)``.
    """
    from lfsgan.metrics.diversity import lpips_features, lpips_matrix

    if images.shape[1:] != real.shape[1:]:
        raise ValueError(f"assign_clusters: fake images {tuple(images.shape)} and real {tuple(real.shape)} differ in shape")
    dist = lpips_matrix(lpips_model, lpips_features(lpips_model, images), lpips_features(lpips_model, real))  # [N, B]
    return dist.argmin(1)


def cluster_pairs(clusters: torch.Tensor, n_clusters: int, variant: str = "intended") -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pairs ``(I, J)`` (``[P]`` long each, with repetition in ``faithful``) and ``C`` (clusters with ≥ 2 members)."""
    if variant not in VARIANTS:
        raise ValueError(f"mode-seeking variant must be one of {VARIANTS}, got {variant!r}")
    pairs: list[tuple[int, int]] = []
    n_multi = 0
    for b in range(n_clusters):
        members = (clusters == b).nonzero().flatten().tolist()
        if len(members) < 2:
            continue
        n_multi += 1
        index = members if variant == "intended" else list(range(len(members)))
        pairs += [(index[i], index[j]) for i in range(len(index)) for j in range(i + 1, len(index))]
    if not pairs:
        empty = torch.zeros(0, dtype=torch.long, device=clusters.device)
        return empty, empty, 0
    ij = torch.tensor(pairs, dtype=torch.long, device=clusters.device)  # [P, 2]
    return ij[:, 0], ij[:, 1], n_multi


class _PairMeanL1(torch.autograd.Function):
    """``d_p = mean |x[I_p] − x[J_p]|`` for pairs p, memory-light: the backward recomputes the signs
    chunk by chunk instead of autograd keeping a ``[P, …]`` difference tensor per feature map."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, I: torch.Tensor, J: torch.Tensor, chunk: int) -> torch.Tensor:
        ctx.save_for_backward(x, I, J)
        ctx.chunk = chunk
        out = [(x[I[c:c + chunk]] - x[J[c:c + chunk]]).abs_().flatten(1).mean(1) for c in range(0, len(I), chunk)]
        return torch.cat(out) if out else x.new_zeros(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, I, J = ctx.saved_tensors
        chunk, per_sample = ctx.chunk, x[0].numel()
        grad_x = torch.zeros_like(x)
        for c in range(0, len(I), chunk):
            i, j = I[c:c + chunk], J[c:c + chunk]
            g = (grad[c:c + chunk] / per_sample).view(-1, *([1] * (x.ndim - 1)))
            s = (x[i] - x[j]).sign_().mul_(g)  # [p, ...]
            grad_x.index_add_(0, i, s)
            grad_x.index_add_(0, j, s, alpha=-1)
        return grad_x, None, None, None


def pair_mean_l1(x: torch.Tensor, I: torch.Tensor, J: torch.Tensor, max_elements: int = 2**25) -> torch.Tensor:
    """``[P]`` mean absolute differences between samples ``I`` and ``J`` of ``x [N, ...]`` (``F.l1_loss``
    per pair, mean reduction), with at most ``max_elements`` scalars of difference alive at once."""
    chunk = max(1, max_elements // max(1, x[0].numel()))
    return _PairMeanL1.apply(x, I, J, chunk)


def mode_seeking_loss(
    z: torch.Tensor,  # [N, z_dim]
    w: torch.Tensor,  # [N, style_dim] or the broadcast [N, n_latent, style_dim] (same mean distance)
    feats: list[torch.Tensor],  # L feature maps [N, C_l, H_l, W_l]
    images: torch.Tensor,  # [N, 3, H, W]
    clusters: torch.Tensor,  # [N] long, from assign_clusters
    n_clusters: int,
    variant: str = "intended",
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L_ms = 1 / (S/C + 1e-5)`` (methods.md §1.6); returns ``(loss, info)``.

    With no cluster of ≥ 2 members (C = 0) the loss is a constant 0 (no gradient); with N > number
    of real images some cluster always has ≥ 2 members.
    """
    if not feats:
        raise ValueError("mode_seeking_loss needs the generator's intermediate feature maps (return_features=True)")
    I, J, n_multi = cluster_pairs(clusters, n_clusters, variant)
    info = {"ms_clusters": float(n_multi), "ms_pairs": float(len(I))}
    if n_multi == 0:
        return images.new_zeros(()), info
    d_z = pair_mean_l1(z, I, J)  # [P]
    d_w = pair_mean_l1(w, I, J)
    d_f = torch.stack([pair_mean_l1(f, I, J) for f in feats]).mean(0)  # (1/L) Σ_l d(f^l) ... over w below
    d_x = pair_mean_l1(images, I, J)
    # (1/L) Σ_l d_f^l / d_w == mean_l(d_f^l) / d_w
    S = (d_w / d_z + d_f / d_w + d_x / d_w).sum()
    info["ms_S_over_C"] = float(S.detach() / n_multi)
    return 1.0 / (S / n_multi + EPS), info
