"""LeFT — Learnable Factorized Tensor modulators (Seo et al., ICCV 2023; ``docs/methods.md`` §1.3).

A LeFT module is a weight *adapter*: it never changes the frozen source weight ``W``; every forward
rebuilds a task weight ``Ŵ = f(W; θ_task)`` from a few small factors, and the layer then runs as
usual with ``Ŵ`` (equalised-lr scale, modulation, demodulation). The multilinear reconstructions
are written with TensorLy's ``einsum`` (PyTorch backend, set locally by
:func:`.adapters.pytorch_backend`): measured (``benchmarks/methods_step.py``), ``tl.tenalg.mode_dot``
and ``tl.cp_to_tensor`` cost ~15 % more than the hand-written contraction at 256 px on the CPU
(Python-side unfold/fold, argument checks, non-contiguous intermediates), while ``tl.einsum``
dispatches to the same kernels (equal cost within noise).

FC layers (mapping network and style affines), §1.3a::

    Ŵ = W ⊙ (U_m V_mᵀ) + U_a V_aᵀ          U_m, U_a ∈ R^{d_out×r},  V_m, V_a ∈ R^{d_in×r}
    b̂ = b ⊙ β_m + β_a                       β_m, β_a ∈ R^{d_out}

Modulated convs, §1.3b (K = k², σ = ReLU when ``use_act``)::

    M1[s,o,κ] = σ( Σ_q A[o,q] T[s,q,κ] + Σ_q P[o,q] Q[κ,q] )       = σ(T ×₁ A + [[P, Q]])
    M2[o,i,κ] = Σ_s B[i,s] M1[s,o,κ]                                 = (M1 ×₀ B) with axes (o, i, κ)
    Ŵ[o,i,κ]  = W[o,i,κ] M2[o,i,κ] + Σ_q R[i,q] S[κ,q]              = W ⊙ M2 + [[R, S]]

Names map to the released code: A ``w_mul1_out_channel_wise``, T ``w_mul1_instance_wise``, B
``w_mul2_in_channel_wise``, P/Q ``w_add1_*``, R/S ``w_add2_*``; the additive tensors (U_a, V_a,
β_a, P, Q, R, S) exist only with ``use_add``.

Two initialisations:

* ``faithful`` — the released code: multiplicative factors constant (``1/√r`` FC, ``r^{-2/3}``
  conv), additive factors all zero. Then the additive low-rank factors get exactly zero gradient
  forever and rank r > 1 trains like rank 1 (§1.3d). The identity at init is exact for r = 1 and
  holds to float rounding otherwise (``r^{-2/3}`` is not representable; ~4e-6 on images at r = 2).
* ``trainable`` (default) — the same function at init, made trainable: in each additive pair one
  factor is random (std ``1/√r``) and its partner zero (LoRA-style: ``V_a``, ``Q``, ``S`` random;
  ``U_a``, ``P``, ``R`` zero), and the multiplicative factors carry symmetry-breaking noise of
  relative size ``noise`` arranged so that the products are *exactly* the identity: each row that
  is summed over the rank axis is a partition of a power of two into dyadic rationals (multiples of
  2⁻²⁰ of the total), its partner factor is a power-of-two constant, so every product and partial
  sum is exact in float32 and ``Ŵ == W`` bit for bit. (The constant factor's r components get equal
  gradients on the first step only; its noisy partner's do not, so the components part after it.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lfsgan.models import EqualLinear, ModulatedConv2d

from .adapters import pytorch_backend, tl

INITS = ("trainable", "faithful")


def dyadic_partition(rows: int, parts: int, total: float, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``[rows, parts]`` with every row summing to ``total`` *exactly* in float32 (``total`` a power of 2).

    Entries are ``total/parts · (1 + noise·ε)`` (ε ~ N(0,1) clipped to ±3) rounded to multiples of
    ``total·2⁻²⁰``; the last entry of each row takes the remainder. Every entry and partial sum is then
    a small multiple of one power of two, so any summation order gives ``total`` with no rounding.
    """
    if parts == 1:
        return torch.full((rows, 1), float(total))
    quantum = total * 2.0**-20
    eps = torch.randn(rows, parts - 1, generator=generator, dtype=torch.float64).clamp(-3, 3)
    head = total / parts * (1 + noise * eps)
    head = torch.round(head / quantum) * quantum  # [rows, parts-1]
    last = total - head.sum(1, keepdim=True)  # [rows, 1], exact in float64 and float32
    return torch.cat([head, last], 1).float()


def _pow2_near(x: float) -> float:
    """The power of two nearest to ``x`` in log scale (multiplying by it is exact)."""
    return 2.0 ** round(math.log2(x))


class LeFTFC(nn.Module):
    """LeFT modulator of an FC layer ``W [d_out, d_in]``, ``b [d_out]`` (docs/methods.md §1.3a)."""

    def __init__(self, d_out: int, d_in: int, rank: int = 1, use_add: bool = True, init: str = "trainable",
                 noise: float = 0.05, generator: torch.Generator | None = None):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"LeFT init must be one of {INITS}, got {init!r}")
        r, g = rank, generator
        self.rank, self.use_add = rank, use_add
        if init == "faithful":
            u_m = torch.full((d_out, r), r**-0.5)
            v_m = torch.full((d_in, r), r**-0.5)
        else:
            c = _pow2_near(r**-0.5)  # V_m constant; rows of U_m sum to 1/c so U_m V_mᵀ = 1 exactly
            v_m = torch.full((d_in, r), c)
            u_m = dyadic_partition(d_out, r, 1.0 / c, noise, g)
        self.U_m = nn.Parameter(u_m)  # [d_out, r]
        self.V_m = nn.Parameter(v_m)  # [d_in, r]
        self.beta_m = nn.Parameter(torch.ones(d_out))  # [d_out]
        if use_add:
            self.U_a = nn.Parameter(torch.zeros(d_out, r))  # [d_out, r]
            v_a = torch.zeros(d_in, r) if init == "faithful" else torch.randn(d_in, r, generator=g) * r**-0.5
            self.V_a = nn.Parameter(v_a)  # [d_in, r]
            self.beta_a = nn.Parameter(torch.zeros(d_out))  # [d_out]

    def forward(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        with pytorch_backend():
            w = weight * tl.einsum("or,ir->oi", self.U_m, self.V_m)  # [d_out, d_in]
            if self.use_add:
                w = w + tl.einsum("or,ir->oi", self.U_a, self.V_a)
        if bias is not None:
            bias = bias * self.beta_m
            if self.use_add:
                bias = bias + self.beta_a
        return w, bias


class LeFTConv(nn.Module):
    """LeFT modulator of a conv weight ``W [1, C_out, C_in, k, k]`` (docs/methods.md §1.3b)."""

    def __init__(self, c_out: int, c_in: int, kernel_size: int, rank: int = 1, use_add: bool = True,
                 use_act: bool = True, init: str = "trainable", noise: float = 0.05,
                 generator: torch.Generator | None = None):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"LeFT init must be one of {INITS}, got {init!r}")
        r, g, K = rank, generator, kernel_size**2
        self.rank, self.use_add, self.use_act, self.kernel_size = rank, use_add, use_act, kernel_size
        if init == "faithful":
            c = r ** (-2 / 3)  # M1 = r·c² = r^{-1/3}, M2 = r·c·M1 = 1
            a, t, b = torch.full((c_out, r), c), torch.full((r, r, K), c), torch.full((c_in, r), c)
        else:
            # M1 = Σ_q A T = 1 exactly (A constant 2^k, rows of T sum to 2^-k); M2 = Σ_s B M1 = 1.
            a_c = _pow2_near(r**-0.5)
            a = torch.full((c_out, r), a_c)
            t = dyadic_partition(r * K, r, 1.0 / a_c, noise, g).reshape(r, K, r).transpose(1, 2).contiguous()
            b = dyadic_partition(c_in, r, 1.0, noise, g)
        self.A = nn.Parameter(a)  # [C_out, r]
        self.T = nn.Parameter(t)  # [r, r, K]   (s, q, κ)
        self.B = nn.Parameter(b)  # [C_in, r]
        if use_add:
            random = init == "trainable"
            self.P = nn.Parameter(torch.zeros(c_out, r))  # [C_out, r]
            self.Q = nn.Parameter(torch.randn(K, r, generator=g) * r**-0.5 if random else torch.zeros(K, r))  # [K, r]
            self.R = nn.Parameter(torch.zeros(c_in, r))  # [C_in, r]
            self.S = nn.Parameter(torch.randn(K, r, generator=g) * r**-0.5 if random else torch.zeros(K, r))  # [K, r]

    def mask(self) -> torch.Tensor:
        """The multiplicative mask ``M2`` as ``[C_out, C_in, K]``."""
        with pytorch_backend():
            m1 = tl.einsum("oq,sqk->sok", self.A, self.T)  # T ×₁ A: [r, C_out, K]
            if self.use_add:
                m1 = m1 + tl.einsum("oq,kq->ok", self.P, self.Q)  # + [[P, Q]]: [C_out, K]
            if self.use_act:
                m1 = torch.relu(m1)
            return tl.einsum("is,sok->oik", self.B, m1)  # [C_out, C_in, K]

    def forward(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        k = self.kernel_size
        with pytorch_backend():
            m2 = self.mask()
            c_out, c_in, _ = m2.shape
            w = weight * m2.reshape(c_out, c_in, k, k)  # [1, C_out, C_in, k, k]
            if self.use_add:
                w = w + tl.einsum("iq,kq->ik", self.R, self.S).reshape(c_in, k, k)  # + [[R, S]] over o
        return w, bias


def left_for_layer(layer: nn.Module, rank: int, use_add: bool, use_act: bool, init: str, noise: float,
                   generator: torch.Generator) -> nn.Module:
    """The LeFT modulator that fits ``layer`` (an ``EqualLinear`` or a ``ModulatedConv2d``)."""
    if isinstance(layer, EqualLinear):
        return LeFTFC(layer.out_dim, layer.in_dim, rank, use_add, init, noise, generator)
    if isinstance(layer, ModulatedConv2d):
        return LeFTConv(layer.out_channel, layer.in_channel, layer.kernel_size, rank, use_add, use_act, init, noise,
                        generator)
    raise TypeError(f"LeFT has no modulator for a {type(layer).__name__}")
