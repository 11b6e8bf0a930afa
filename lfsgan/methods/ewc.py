"""EWC for few-shot GAN adaptation (Li, Zhang, Lu, Shechtman, NeurIPS 2020; ``docs/methods.md`` §2).

Fine-tuning (all of G and D train, the whole G is stored, task t starts from task t−1's G) with a
quadratic pull of every generator parameter towards the *source*, weighted by its diagonal Fisher
information at the source (:func:`lfsgan.fisher.fisher_diagonal`, computed once, before adaptation)::

    L_G = L_adv(θ) + λ Σ_i F_i (θ_i − θ_S,i)²          (sum over every scalar of every G parameter)

``λ`` (option ``lambda``) defaults to 5·10⁸, the value recalled from the paper (docs/methods.md §2.2,
tagged [R]: verify it; with sum reduction the useful range depends on how F was estimated, sweep
1e6–1e10). The Fisher tensors come in through ``ctx.extras["fisher"]`` (``{param name: tensor}``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lfsgan.io import key_mismatch

from .base import ExtraSamples, TaskContext
from .finetune import FineTune


def ewc_penalty(G: nn.Module, fisher: dict[str, torch.Tensor], source: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """``λ Σ_i F_i (θ_i − θ_S,i)²`` over the parameters of ``G`` named in ``fisher``."""
    total = None
    for name, p in G.named_parameters():
        if name in fisher:
            term = (fisher[name] * (p - source[name]).pow(2)).sum()
            total = term if total is None else total + term
    if total is None:
        raise ValueError("ewc_penalty: no generator parameter has a Fisher entry")
    return lam * total


class EWC(FineTune):
    name = "ewc"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self.lam = float(self.options["lambda"])
        self.fisher: dict[str, torch.Tensor] = {}
        self.source: dict[str, torch.Tensor] = {}

    def setup(self, G: nn.Module, D: nn.Module, ctx: TaskContext) -> None:
        """Fine-tuning set-up, plus the source weights and the Fisher on G's device (checked against G)."""
        super().setup(G, D, ctx)
        fisher = ctx.extras.get("fisher")
        if fisher is None:
            raise KeyError("method 'ewc' needs the source Fisher in ctx.extras['fisher'] "
                           "(compute it with lfsgan.fisher.fisher_diagonal / the `fisher` rule)")
        params = dict(G.named_parameters())
        mismatch = key_mismatch(params, fisher)
        bad = [k for k in params if k in fisher and tuple(fisher[k].shape) != tuple(params[k].shape)]
        if mismatch or bad:
            raise ValueError(
                f"ewc: the Fisher does not match the generator ({mismatch or 'same keys'}, wrong shape {bad[:3]}); "
                "was it computed for another model config?"
            )
        self.fisher = {k: fisher[k].to(p.device, p.dtype) for k, p in params.items()}
        self.source = {k: ctx.source_g[k].to(p.device, p.dtype) for k, p in params.items()}

    def generator_loss_terms(self, G: nn.Module, D: nn.Module, real: torch.Tensor, step: int,
                             extra: ExtraSamples | None = None) -> dict[str, torch.Tensor]:
        if not self.fisher:
            raise RuntimeError("ewc: setup() must run before generator_loss_terms()")
        return {"ewc": ewc_penalty(G, self.fisher, self.source, self.lam)}
