"""Piggyback GAN (Zhai et al., ECCV 2020) ported to unconditional StyleGAN2 (``docs/methods.md`` §3).

For every modulated conv (and, with ``fc: true``, every ``EqualLinear`` of G, whose rows are 1×1
"filters"), a layer with ``n`` output filters of shape ``f`` (``C_in×k×k`` or ``d_in``) gets, for the
piggyback task t (0-based within this method):

* a **filter bank**: the source filters (the layer's frozen stored weight, n of them) followed by the
  free filters of tasks ``0..t−1`` — ``N_bank = n + t·n_u`` filters, never changed again;
* ``n_u = ⌈λ_u n⌉`` **free filters** ``F_u`` (output channels ``0..n_u−1``), trained directly;
* ``n_p = n − n_u`` **piggyback filters** (output channels ``n_u..n−1``), linear combinations of
  the bank: ``F_p = (Φ W)ᵀ`` reshaped to ``[n_p, *f]``, with ``Φ = bank.flatten(1)ᵀ`` and
  ``W ∈ R^{N_bank × n_p}``, written as the mode-0 product ``bank ×₀ Wᵀ`` with TensorLy.

Init (``init: source``, default): ``F_u`` = the source filters at those channels and ``W`` = one-hot
selection of the source filters ``n_u..n−1``, so each task starts at the source generator;
``init: previous`` starts task t at task t−1's generator instead (its free filters, its ``W``
zero-padded for the newly banked filters, its biases).

Also trained and stored per task: **every bias vector of G** (mapping and style-affine biases,
StyledConv activation biases, ToRGB biases; fresh per task as in the unofficial code). Everything
else (the constant input, noise strengths, non-adapted weights) stays at the source.

Stored per task: ``{"filters": {layer: {"free": F_u, "W": W}}, "bias": {param name: tensor}}``.
Per-task parameter count (:func:`piggyback_param_count`) =
``Σ_layers [n_u·|f| + (n + t·n_u)·n_p] + Σ biases`` — it grows with t as the bank grows. For FC
layers with ``d_in ≤ N_bank`` (e.g. the 512→512 mapping) a task costs as much as the full layer or
more, which is why ``fc`` is off by default (the paper factorises conv / deconv filters only).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from lfsgan.models import EqualLinear

from .adapters import (adaptable_layers, adapter_parameters, adapter_state, attach_adapters,
                       detach_adapters, load_adapter_state, pytorch_backend, tl)
from .base import Method, TaskContext


class PiggybackFilters(nn.Module):
    """Adapter: ``Ŵ = [F_u ; bank ×₀ Wᵀ]`` with ``bank = [source filters ; earlier free filters]``.

    ``banked [t·n_u, *f]`` is a buffer (frozen); ``free [n_u, *f]`` and ``W [N_bank, n_p]`` train.
    The incoming stored weight (``[n, *f]``, or ``[1, n, *f]`` for a modulated conv) supplies the
    source part of the bank, so it is not duplicated.
    """

    def __init__(self, free: torch.Tensor, W: torch.Tensor, banked: torch.Tensor):
        super().__init__()
        if W.shape[0] != free.shape[0] + W.shape[1] + banked.shape[0]:
            raise ValueError(f"Piggyback: W has {W.shape[0]} rows, expected n + banked = "
                             f"{free.shape[0] + W.shape[1]} + {banked.shape[0]}")
        self.free = nn.Parameter(free.clone())  # [n_u, *f]
        self.W = nn.Parameter(W.clone())  # [N_bank, n_p]
        self.register_buffer("banked", banked.clone())  # [t·n_u, *f]

    def forward(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        source = weight.reshape(-1, *self.free.shape[1:])  # [n, *f]
        bank = torch.cat([source, self.banked], 0)  # [N_bank, *f]
        with pytorch_backend():
            piggy = tl.tenalg.mode_dot(bank, tl.transpose(self.W), 0)  # [n_p, *f] = (Φ W)ᵀ reshaped
        return torch.cat([self.free, piggy], 0).reshape(weight.shape), bias


def _filters(layer: nn.Module) -> torch.Tensor:
    """The layer's stored filters ``[n, *f]`` (a modulated conv's leading 1 dropped)."""
    w = layer.weight
    return w.squeeze(0) if w.ndim == 5 else w


def _is_piggybacked(layer: nn.Module, fc: bool) -> bool:
    """Conv layers always; ``EqualLinear`` only with ``fc``."""
    return fc or not isinstance(layer, EqualLinear)


def n_free(n: int, lambda_u: float) -> int:
    """``n_u = ⌈λ_u n⌉``, at least 1 and at most ``n − 1`` when ``n ≥ 2`` (so both parts exist)."""
    n_u = max(1, math.ceil(lambda_u * n - 1e-9))
    return min(n_u, n - 1) if n >= 2 else n


def _bias_names(G: nn.Module) -> list[str]:
    return [k for k, _ in G.named_parameters() if k.rsplit(".", 1)[-1] == "bias" and ".adapter." not in k]


def piggyback_param_count(G: nn.Module, task_index: int, lambda_u: float = 0.25, fc: bool = False) -> int:
    """Scalars stored for piggyback task ``task_index`` (0-based): ``Σ_layers [n_u·|f| + (n + t·n_u)·n_p] + Σ biases``."""
    total = 0
    for _, layer in adaptable_layers(G):
        if not _is_piggybacked(layer, fc):
            continue
        filters = _filters(layer)
        n, f = filters.shape[0], filters[0].numel()
        n_u = n_free(n, lambda_u)
        total += n_u * f + (n + task_index * n_u) * (n - n_u)
    return total + sum(dict(G.named_parameters())[k].numel() for k in _bias_names(G))


class Piggyback(Method):
    name = "piggyback"
    #: task s = source + states of tasks 0..s
    isolates_tasks = True
    uses_ema = False

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)  # lambda_u, fc, init: $defs/options_piggyback
        self.adapters: dict[str, nn.Module] = {}
        self.bias_names: list[str] = []

    # --- building a task's generator -------------------------------------------------------------
    def _attach(self, G: nn.Module, previous: list[dict[str, Any]], where: str) -> None:
        """Frozen source G + one adapter per piggybacked layer, banking the free filters of ``previous``.

        New tensors start at the source (one-hot ``W``); ``init: previous`` (or a rebuild) then loads
        stored values on top.
        """
        for i, state in enumerate(previous):
            if "filters" not in state or "bias" not in state:
                raise KeyError(f"{where}: stored state of piggyback task {i} has keys {sorted(state)}, "
                               "expected 'filters' and 'bias' (was it written by another method?)")
        G.requires_grad_(False)
        lambda_u, t = self.options["lambda_u"], len(previous)

        def make(name: str, layer: nn.Module) -> nn.Module | None:
            if not _is_piggybacked(layer, self.options["fc"]):
                return None
            source = _filters(layer).detach()  # [n, *f]
            n = source.shape[0]
            n_u = n_free(n, lambda_u)
            try:
                banked = [s["filters"][name]["free"].to(source) for s in previous]
            except KeyError as e:
                raise KeyError(f"{where}: an earlier task stores no free filters for layer '{name}' "
                               "(trained with another model size or 'fc' option?)") from e
            banked = torch.cat(banked, 0) if banked else source.new_zeros(0, *source.shape[1:])  # [t·n_u, *f]
            W = torch.zeros(n + t * n_u, n - n_u, device=source.device)  # [N_bank, n_p]
            W[torch.arange(n_u, n), torch.arange(n - n_u)] = 1.0  # select source filters n_u..n-1
            return PiggybackFilters(source[:n_u], W, banked)

        self.adapters = attach_adapters(G, make)
        self.bias_names = _bias_names(G)
        params = dict(G.named_parameters())
        for k in self.bias_names:
            params[k].requires_grad_(True)

    def _load(self, G: nn.Module, state: dict[str, Any], where: str, pad: bool = False) -> None:
        """Load a stored task's free filters, W (zero-padded to the current bank with ``pad``) and biases."""
        filters = state["filters"]
        if pad:  # previous task's W has n_u fewer bank rows per layer
            filters = {name: {"free": s["free"],
                              "W": torch.cat([s["W"], s["W"].new_zeros(s["free"].shape[0], s["W"].shape[1])], 0)}
                       for name, s in filters.items()}
        load_adapter_state(self.adapters, filters, where)
        params = dict(G.named_parameters())
        missing = sorted(set(self.bias_names) - set(state["bias"]))
        if missing:
            raise KeyError(f"{where}: no stored bias for {missing[:3]}")
        with torch.no_grad():
            for k in self.bias_names:
                params[k].copy_(state["bias"][k].to(params[k]))

    def setup(self, G: nn.Module, D: nn.Module, ctx: TaskContext) -> None:
        detach_adapters(G)
        G.load_state_dict(ctx.source_g)
        D.load_state_dict(ctx.source_d)
        self._attach(G, ctx.previous, where=f"piggyback task {ctx.task_index} set-up")
        if self.options["init"] == "previous" and ctx.previous:
            self._load(G, ctx.previous[-1], where=f"piggyback task {ctx.task_index - 1} state", pad=True)

    def generator_parameters(self, G: nn.Module) -> Iterable[nn.Parameter]:
        if not self.adapters:
            raise RuntimeError("piggyback: setup() must run before generator_parameters()")
        params = dict(G.named_parameters())
        return adapter_parameters(self.adapters) + [params[k] for k in self.bias_names]

    # --- storage ---------------------------------------------------------------------------------
    def task_state(self, G: nn.Module, D: nn.Module) -> dict[str, Any]:
        params = dict(G.named_parameters())
        return {"filters": adapter_state(self.adapters),
                "bias": {k: params[k].detach().cpu().clone() for k in self.bias_names}}

    def rebuild(self, G: nn.Module, source_g: dict[str, torch.Tensor], states: list[dict[str, Any]]) -> nn.Module:
        """Task ``t = len(states)-1``: bank = source + free filters of tasks ``0..t−1``; task t's own tensors."""
        detach_adapters(G)
        G.load_state_dict(source_g)
        if not states:
            return G
        self._attach(G, states[:-1], where=f"piggyback rebuild of task {len(states) - 1}")
        self._load(G, states[-1], where=f"piggyback task {len(states) - 1} state")
        G.requires_grad_(False)
        return G

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "free_channels": "first ceil(lambda_u * n) output channels of each layer"}
