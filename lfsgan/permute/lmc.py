"""Linear mode connectivity: interpolation paths, the mixture baseline, barriers.

Path (Frankle et al. 2020; Git Re-Basin §2): ``θ(λ) = (1 - λ) θ_A + λ π(θ_B)``, λ ∈ [0, 1], on
*stored* weights (equalised-lr gains are per-layer constants, so this equals lerping effective
weights). Naive interpolation is the same with π = identity.

Statistics are recomputed, not interpolated. Our generator has no ``w_avg`` buffer: truncation
uses ``G.mean_latent(n, seed)``, which evaluates the (interpolated) mapping network, so the mean
latent of θ(λ) is always that of its own mapping — :func:`recompute_mean_latent` is the one call
a metric needs. Tensors whose spec says ``interpolate=False`` (fixed noise maps, FIR kernels) are
copied from model A so that every λ sees the same noise; the λ = 1 end is therefore π(θ_B)'s
weights with A's constant noise maps.

This module is metric-agnostic: ``metric_fn(G) -> float`` comes from the evaluation code
(FID/KID at fixed latents, sample count and reference statistics).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lfsgan.permute.spec import PermutationSpec

#: default grid: 11 points, enough to locate a midpoint-peaked barrier (25 for plots)
DEFAULT_LAMBDAS = tuple(float(x) for x in np.linspace(0.0, 1.0, 11))


# --- state arithmetic -------------------------------------------------------------------------
def _same_keys(states: Sequence[Mapping[str, torch.Tensor]]) -> None:
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != set(keys):
            diff = sorted(set(s) ^ set(keys))
            raise KeyError(f"state {i} and state 0 have different keys, e.g. {diff[:5]}")
        for k in keys:
            if s[k].shape != states[0][k].shape:
                raise ValueError(f"{k!r}: shape {tuple(s[k].shape)} in state {i} vs {tuple(states[0][k].shape)} in state 0")


def average_states(
    states: Sequence[Mapping[str, torch.Tensor]],
    weights: Sequence[float] | None = None,
    *,
    spec: PermutationSpec | None = None,
) -> dict[str, torch.Tensor]:
    """``Σ_i w_i θ_i`` key by key (accumulated in float64), weights uniform by default.

    Keys whose spec entry has ``interpolate=False`` are copied from ``states[0]``; non-float
    tensors must be equal across states and are copied.
    """
    if not states:
        raise ValueError("average_states needs at least one state")
    _same_keys(states)
    w = np.full(len(states), 1.0 / len(states)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(states),):
        raise ValueError(f"{len(states)} states but {w.size} weights")
    out = {}
    for k, t0 in states[0].items():
        if (spec is not None and not spec[k].interpolate) or not t0.is_floating_point():
            if not t0.is_floating_point() and any(not torch.equal(s[k], t0) for s in states[1:]):
                raise ValueError(f"{k!r} is a non-float tensor that differs between states; cannot average it")
            out[k] = t0.clone()
            continue
        acc = sum(float(wi) * s[k].double() for wi, s in zip(w, states))
        out[k] = acc.to(t0.dtype)
    return out


def interpolate(
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    lam: float,
    *,
    spec: PermutationSpec | None = None,
) -> dict[str, torch.Tensor]:
    """``θ(λ) = (1 - λ) θ_A + λ θ_B`` on stored weights (``torch.lerp``: exact at λ = 0 and 1).

    Pass ``sd_b`` already permuted (``apply_permutation``) for the matched path. With ``spec``,
    keys marked ``interpolate=False`` are taken from A.
    """
    _same_keys([sd_a, sd_b])
    out = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        if (spec is not None and not spec[k].interpolate) or not a.is_floating_point():
            if not a.is_floating_point() and not torch.equal(a, b):
                raise ValueError(f"{k!r} is a non-float tensor that differs between A and B; cannot interpolate it")
            out[k] = a.clone()
        else:
            out[k] = torch.lerp(a, b.to(a.dtype), float(lam))
    return out


@torch.no_grad()
def recompute_mean_latent(G: nn.Module, n: int = 4096, seed: int = 0) -> torch.Tensor:
    """The truncation centre ``w̄ = mean_z mapping(z)`` of ``G``'s *current* mapping, ``[1, style_dim]``.

    Call it after loading interpolated weights; never lerp mean latents of the endpoints.
    """
    return G.mean_latent(n, seed)


# --- curves -----------------------------------------------------------------------------------
def _check_lambdas(lambdas: Sequence[float] | None) -> list[float]:
    lam = list(DEFAULT_LAMBDAS if lambdas is None else (float(x) for x in lambdas))
    if len(lam) < 2 or any(not 0.0 <= x <= 1.0 for x in lam) or any(b <= a for a, b in zip(lam, lam[1:])):
        raise ValueError(f"lambdas must be strictly increasing values in [0, 1], got {lam}")
    return lam


def lmc_curve(
    G_factory: Callable[[], nn.Module],
    sd_a: Mapping[str, torch.Tensor],
    sd_b_perm: Mapping[str, torch.Tensor],
    lambdas: Sequence[float] | None,
    metric_fn: Callable[[nn.Module], float],
    *,
    spec: PermutationSpec | None = None,
    path: str = "matched",
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``metric_fn`` on ``G_factory()`` loaded with ``θ(λ)`` for every λ.

    Returns records ``{"path", "lambda", "value"}``. ``G_factory`` builds an architecture-correct
    generator on the wanted device; weights load with ``strict=True`` and G is put in eval mode.
    ``metric_fn`` receives that G and must use fixed latents/noise; if it truncates, it gets the
    centre from :func:`recompute_mean_latent`.
    """
    records = []
    for lam in tqdm(_check_lambdas(lambdas), desc=f"LMC {path}", disable=None if progress is None else not progress):
        G = G_factory()
        G.load_state_dict(interpolate(sd_a, sd_b_perm, lam, spec=spec), strict=True)
        G.eval()
        records.append({"path": path, "lambda": lam, "value": float(metric_fn(G))})
    return records


class MixtureGenerator(nn.Module):
    """The mixture-of-generators baseline ``(1 - λ) p_A + λ p_B``: in every batch, the first
    ``round((1 - λ) B)`` latents go through ``G_a`` and the rest through ``G_b``.

    It takes ``G``'s call signature, so the same ``metric_fn`` scores it. With ``truncation < 1``
    each component truncates towards its own mean latent (computed once with ``mean_latent_n`` and
    ``mean_latent_seed``); a ``truncation_latent`` argument is ignored. ``noise_mode="const"`` uses
    each component's own noise buffers.
    """

    def __init__(self, G_a: nn.Module, G_b: nn.Module, lam: float = 0.5, *, mean_latent_n: int = 4096, mean_latent_seed: int = 0):
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"mixture weight lam must be in [0, 1], got {lam}")
        self.G_a, self.G_b, self.lam = G_a, G_b, float(lam)
        self.style_dim, self.size = G_a.style_dim, G_a.size
        self._mean_args = (mean_latent_n, mean_latent_seed)
        self._means: tuple[torch.Tensor, torch.Tensor] | None = None

    def split(self, batch: int) -> int:
        """Number of samples of a batch of ``batch`` that go through ``G_a``."""
        return int(round((1.0 - self.lam) * batch))

    def mean_latent(self, n: int, seed: int = 0) -> torch.Tensor:
        raise TypeError("a mixture has no single mean latent; it truncates each component towards its own")

    def generate(self, which: int, z: torch.Tensor, noise_mode: str = "const", truncation: float = 1.0, **kwargs) -> torch.Tensor:
        """Images of component ``which`` (0 = A, 1 = B) for latents ``z [n, style_dim]``."""
        G = (self.G_a, self.G_b)[which]
        if truncation < 1:
            if self._means is None:
                self._means = (recompute_mean_latent(self.G_a, *self._mean_args), recompute_mean_latent(self.G_b, *self._mean_args))
            kwargs.update(truncation=truncation, truncation_latent=self._means[which])
        return G(z, noise_mode=noise_mode, **kwargs)  # [n, 3, H, W]

    def forward(self, z: torch.Tensor, noise_mode: str = "const", truncation: float = 1.0, truncation_latent=None, **kwargs) -> torch.Tensor:
        n_a = self.split(z.shape[0])
        parts = [self.generate(which, zs, noise_mode, truncation, **kwargs) for which, zs in ((0, z[:n_a]), (1, z[n_a:])) if zs.shape[0]]
        return torch.cat(parts, 0)  # [B, 3, H, W]


@torch.no_grad()
def mixture_images(
    G_a: nn.Module,
    G_b: nn.Module,
    z: torch.Tensor,
    lam: float = 0.5,
    *,
    batch_size: int = 32,
    noise_mode: str = "const",
    truncation: float = 1.0,
    mean_latent_n: int = 4096,
    mean_latent_seed: int = 0,
) -> torch.Tensor:
    """Images ``[N, 3, H, W]`` of the mixture for fixed latents ``z [N, style_dim]``: the first
    ``round((1 - λ) N)`` latents go through ``G_a``, the rest through ``G_b``; with
    ``truncation < 1`` each generator truncates towards its own recomputed mean latent."""
    mix = MixtureGenerator(G_a, G_b, lam, mean_latent_n=mean_latent_n, mean_latent_seed=mean_latent_seed)
    n_a = mix.split(z.shape[0])
    parts = []
    for which, zs in ((0, z[:n_a]), (1, z[n_a:])):
        for start in range(0, zs.shape[0], batch_size):
            parts.append(mix.generate(which, zs[start : start + batch_size], noise_mode, truncation))
    return torch.cat(parts, 0)


def mixture_curve(
    G_factory: Callable[[], nn.Module],
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    lambdas: Sequence[float] | None,
    metric_fn: Callable[[nn.Module], float],
    *,
    mean_latent_n: int = 4096,
    mean_latent_seed: int = 0,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """The mixture baseline along λ: records ``{"path": "mixture", "lambda", "value"}`` (the
    mixture needs no permutation: pass either B or π(B)). ``metric_fn`` receives a
    :class:`MixtureGenerator`; the mean-latent arguments set its per-component truncation centres
    (use the same ``n``/``seed`` as ``metric_fn`` uses for single generators)."""
    G_a, G_b = G_factory(), G_factory()
    G_a.load_state_dict(dict(sd_a), strict=True)
    G_b.load_state_dict(dict(sd_b), strict=True)
    G_a.eval(), G_b.eval()
    records = []
    for lam in tqdm(_check_lambdas(lambdas), desc="LMC mixture", disable=None if progress is None else not progress):
        mix = MixtureGenerator(G_a, G_b, lam, mean_latent_n=mean_latent_n, mean_latent_seed=mean_latent_seed)
        records.append({"path": "mixture", "lambda": lam, "value": float(metric_fn(mix))})
    return records


# --- barriers ---------------------------------------------------------------------------------
def barrier(values: Sequence[float], lambdas: Sequence[float] | None = None, *, lower_is_better: bool = True) -> dict[str, float]:
    """Loss barrier of a curve ``values[i] = M(θ(λ_i))`` (``lambdas`` must start at 0, end at 1).

    * ``barrier_max`` (Git Re-Basin Def. 2.2, after Frankle et al. 2020):
      ``max_λ M(λ) - (M(0) + M(1)) / 2``.
    * ``barrier_linear`` (Entezari et al. 2021): ``max_λ [M(λ) - ((1 - λ) M(0) + λ M(1))]``.
    * ``relative_max``, ``relative_linear``: the same divided by ``|M(0) + M(1)| / 2``.
    * ``lambda_max``, ``lambda_linear``: where the maxima are attained.

    For metrics where higher is better (accuracy, precision) pass ``lower_is_better=False``: the
    formulas are applied to ``-M`` (the barrier is then a drop below the endpoints).
    """
    v = np.asarray(values, dtype=float)
    lam = np.asarray(_check_lambdas(lambdas if lambdas is not None else np.linspace(0.0, 1.0, len(v))))
    if v.shape != lam.shape:
        raise ValueError(f"{v.size} values but {lam.size} lambdas")
    if lam[0] != 0.0 or lam[-1] != 1.0:
        raise ValueError(f"lambdas must include both endpoints 0 and 1, got {lam[0]} … {lam[-1]}")
    s = v if lower_is_better else -v
    mean_end = 0.5 * (s[0] + s[-1])
    excess = s - ((1.0 - lam) * s[0] + lam * s[-1])
    i_max, i_lin = int(np.argmax(s)), int(np.argmax(excess))
    denom = abs(0.5 * (v[0] + v[-1]))
    b_max, b_lin = float(s[i_max] - mean_end), float(excess[i_lin])
    return {
        "barrier_max": b_max,
        "barrier_linear": b_lin,
        "relative_max": b_max / denom if denom > 0 else float("nan"),
        "relative_linear": b_lin / denom if denom > 0 else float("nan"),
        "lambda_max": float(lam[i_max]),
        "lambda_linear": float(lam[i_lin]),
        "value_a": float(v[0]),
        "value_b": float(v[-1]),
    }
