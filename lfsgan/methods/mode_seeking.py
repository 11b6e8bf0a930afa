"""Cluster-wise mode-seeking loss of LFS-GAN (``docs/methods.md`` §1.6).

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
def assign_clusters(images: torch.Tensor, real: torch.Tensor, lpips_model: nn.Module,
                    real_features: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``c(n) = argmin_b LPIPS(x_n, y_b)``: ``images [N, 3, H, W]``, ``real [B, 3, H, W]`` (both in
    [-1, 1]) → ``[N]`` long.

    Each image goes through the LPIPS backbone once (N + B passes, not 2·N·B; N when the reals'
    features are given, e.g. from :class:`RealFeatureCache`). With lpips v0.1's distance expanded as
    in :func:`lfsgan.metrics.diversity.lpips_matrix`, ``LPIPS(x_n, y_b) = s(x_n) + Σ_l [‖y_b‖²_{w_l}
    − 2⟨x_n, w_l·y_b⟩] / (H_l W_l)``; the first term does not depend on b, so the argmin needs only
    the second: one float64 matrix product per layer against the weighted reals, no elementwise pass
    over the N fakes' features.
    """
    from lfsgan.metrics.diversity import _lin_weights, lpips_features

    if images.shape[1:] != real.shape[1:]:
        raise ValueError(f"assign_clusters: fake images {tuple(images.shape)} and real {tuple(real.shape)} differ in shape")
    fb = real_features if real_features is not None else lpips_features(lpips_model, real)
    fa = lpips_features(lpips_model, images)
    score = 0.0
    for w, a, b in zip(_lin_weights(lpips_model), fa, fb):
        hw = a.shape[2] * a.shape[3]
        wb = w.double().view(1, -1, 1, 1) * b.double()  # [B, C, H, W]
        sb = (wb * b.double()).flatten(1).sum(1)  # [B]
        cross = a.double().flatten(1) @ wb.flatten(1).T  # [N, B]
        score = score + (sb[None, :] - 2 * cross) / hw  # doubling after the product: the same bits, N·B not N·CHW work
    return score.argmin(1)


class RealFeatureCache:
    """LPIPS backbone features of real images, kept per image (keyed by its bytes) across steps.

    A few-shot task draws every batch from the same handful of training images (and their mirror
    images), so each one needs the LPIPS backbone once per run instead of once per step. Features
    depend only on the image and the frozen LPIPS network; the cache empties itself when it would
    exceed ``max_bytes`` (e.g. a data set far larger than a few shots) or the network changes.
    """

    def __init__(self, max_bytes: int = 2**29):
        self.max_bytes = max_bytes
        self._model_id: int | None = None
        self._store: dict[bytes, list[torch.Tensor]] = {}
        self._bytes = 0

    @staticmethod
    def _key(image: torch.Tensor) -> bytes:
        import hashlib

        return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).digest()

    @torch.no_grad()
    def features(self, lpips_model: nn.Module, real: torch.Tensor) -> list[torch.Tensor]:
        """Per LPIPS layer ``[B, C_l, H_l, W_l]`` features of ``real [B, 3, H, W]``, as
        :func:`lfsgan.metrics.diversity.lpips_features` returns them."""
        from lfsgan.metrics.diversity import lpips_features

        if self._model_id != id(lpips_model):
            self._model_id, self._store, self._bytes = id(lpips_model), {}, 0
        keys = [self._key(x) for x in real]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in self._store}.values())
        if missing:
            computed = lpips_features(lpips_model, real[missing])
            size = sum(f[0].numel() * f.element_size() for f in computed)
            if self._bytes + size * len(missing) > self.max_bytes:
                self._store, self._bytes = {}, 0
                keys_needed = set(keys)
                missing = sorted({k: i for i, k in enumerate(keys) if k in keys_needed}.values())
                computed = lpips_features(lpips_model, real[missing])
            for row, i in enumerate(missing):
                self._store[keys[i]] = [f[row].clone() for f in computed]
                self._bytes += size
        return [torch.stack([self._store[k][layer] for k in keys]) for layer in range(len(self._store[keys[0]]))]


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


def _triangle(x: torch.Tensor) -> torch.Tensor:
    """``M[i, j] = mean |x_i − x_j|`` for ``i < j`` of ``x [L, D]`` (zeros elsewhere), row by row."""
    n = x.shape[0]
    M = x.new_zeros(n, n)
    for i in range(n - 1):
        M[i, i + 1:] = (x[i] - x[i + 1:]).abs_().mean(1)  # [n-i-1]
    return M


def _triangle_grad(x: torch.Tensor, grad: torch.Tensor, out: torch.Tensor) -> None:
    """Add ``Σ_{i<j} grad[i, j] · ∂M_ij/∂x`` to ``out [L, D]``: ``∂M_ij/∂x_i = sign(x_i − x_j)/D = −∂M_ij/∂x_j``."""
    n, d = x.shape
    for i in range(n - 1):
        g = grad[i, i + 1:] / d  # [n-i-1]
        s = (x[i] - x[i + 1:]).sign_()  # [n-i-1, D]
        out[i] += g @ s
        out[i + 1:] -= s.mul_(g[:, None])


class _GroupPairMeanL1(torch.autograd.Function):
    """``d_p = mean |x[I_p] − x[J_p]|``, every distinct pair computed once inside its group.

    Row by row within each group (``x_i`` against the broadcast block of the later members), so no
    ``[P, D]`` gathered copies are made, and the backward recomputes the signs the same way and
    writes one gradient tensor — no per-group autograd nodes, each of which would allocate a zero
    gradient of the whole ``x``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, I: torch.Tensor, J: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
        xr, perm = _rows(x)  # [N, D]
        local = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        order = torch.cat(groups)  # [U]
        local[order] = torch.arange(len(order), device=x.device)
        M = torch.block_diag(*[_triangle(xr[g]) for g in groups])  # [U, U]
        li, lj = local[I], local[J]
        ctx.save_for_backward(x, li, lj)
        ctx.groups = groups
        return M[li, lj]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, li, lj = ctx.saved_tensors
        xr, perm = _rows(x)
        U = sum(len(g) for g in ctx.groups)
        gM = grad.new_zeros(U, U).index_put_((li, lj), grad, accumulate=True)  # [U, U], repeated pairs summed
        grad_r = torch.zeros_like(xr, memory_format=torch.contiguous_format)  # [N, D]
        start = 0
        for g in ctx.groups:
            k = len(g)
            block = xr.new_zeros(k, xr.shape[1])  # [k, D]
            _triangle_grad(xr[g], gM[start:start + k, start:start + k], block)
            grad_r.index_add_(0, g, block)
            start += k
        # back to x's shape, in x's memory order (the inverse of _rows' permutation)
        return grad_r.view([x.shape[d] for d in perm]).permute(_inverse(perm)), None, None, None


def _rows(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``x [N, ...]`` as ``[N, D]`` rows holding each sample's elements in *memory* order, and the
    dimension permutation used: a view (no copy) for contiguous and channels-last tensors alike.
    A mean absolute difference does not depend on the order of the elements."""
    perm = [0] + sorted(range(1, x.dim()), key=lambda d: -x.stride(d))
    return x.permute(perm).reshape(x.shape[0], -1), perm


def _inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def pair_groups(clusters: torch.Tensor, n_clusters: int, variant: str = "intended") -> list[torch.Tensor]:
    """Disjoint sample index sets, every pair of :func:`cluster_pairs` lying inside one of them: the
    members of each cluster with ≥ 2 members (``intended``), or the first ``max_b L_b`` samples
    (``faithful``)."""
    counts = torch.bincount(clusters, minlength=n_clusters)
    if variant == "faithful":
        top = int(counts.max()) if len(counts) else 0
        return [torch.arange(top, device=clusters.device)] if top >= 2 else []
    return [(clusters == b).nonzero().flatten() for b in range(n_clusters) if int(counts[b]) >= 2]


def pair_mean_l1(x: torch.Tensor, I: torch.Tensor, J: torch.Tensor, groups: list[torch.Tensor] | None = None) -> torch.Tensor:
    """``[P]`` mean absolute differences (``F.l1_loss`` per pair, mean reduction) between samples ``I``
    and ``J`` (``I < J``, each pair inside one of the disjoint, ascending ``groups``; default one
    group, the samples ``I ∪ J``) of ``x [N, ...]``.

    Each distinct pair is computed once and read out as often as ``(I, J)`` lists it — the faithful
    variant lists the same pairs many times.
    """
    if len(I) == 0:
        return x.new_zeros(0)
    groups = [torch.unique(torch.cat([I, J]))] if groups is None else groups
    return _GroupPairMeanL1.apply(x, I, J, groups)


def mode_seeking_loss(
    z: torch.Tensor,  # [N, z_dim]
    w: torch.Tensor,  # [N, style_dim] or the broadcast [N, n_latent, style_dim] (same mean distance)
    feats: list[torch.Tensor],  # L feature maps [N, C_l, H_l, W_l]
    images: torch.Tensor,  # [N, 3, H, W]
    clusters: torch.Tensor,  # [N] long, from assign_clusters
    n_clusters: int,
    variant: str = "intended",
) -> tuple[torch.Tensor, dict[str, float]]:
    """``L_ms = 1 / (S/C + 1e-5)`` (docs/methods.md §1.6); returns ``(loss, info)``.

    With no cluster of ≥ 2 members (C = 0) the loss is a constant 0 (no gradient); with N > number
    of real images some cluster always has ≥ 2 members.
    """
    if not feats:
        raise ValueError("mode_seeking_loss needs the generator's intermediate feature maps (return_features=True)")
    I, J, n_multi = cluster_pairs(clusters, n_clusters, variant)
    info = {"ms_clusters": float(n_multi), "ms_pairs": float(len(I))}
    if n_multi == 0:
        return images.new_zeros(()), info
    groups = pair_groups(clusters, n_clusters, variant)
    d_z = pair_mean_l1(z, I, J, groups)  # [P]
    d_w = pair_mean_l1(w, I, J, groups)
    d_f = torch.stack([pair_mean_l1(f, I, J, groups) for f in feats]).mean(0)  # (1/L) Σ_l d(f^l) ... over w below
    d_x = pair_mean_l1(images, I, J, groups)
    # (1/L) Σ_l d_f^l / d_w == mean_l(d_f^l) / d_w
    S = (d_w / d_z + d_f / d_w + d_x / d_w).sum()
    info["ms_S_over_C"] = float(S.detach() / n_multi)
    return 1.0 / (S / n_multi + EPS), info
