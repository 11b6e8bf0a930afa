"""Last-layers fine-tuning: each task trains only the generator's last synthesis block (its two
styled convolutions and its toRGB layer) from the source; every other weight stays the source's.
Each task stores just those tensors, so a task's generator never changes when later tasks are
learnt (no forgetting by construction), at the cost of adapting only the finest scale."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from .base import Method, TaskContext


def last_block(G: nn.Module) -> tuple[str, ...]:
    """Name prefixes of the parameters this method trains: the last two convs and the last toRGB."""
    n_convs, n_rgbs = len(G.convs), len(G.to_rgbs)
    return (f"convs.{n_convs - 2}.", f"convs.{n_convs - 1}.", f"to_rgbs.{n_rgbs - 1}.")


class LastLayers(Method):
    name = "lastlayers"
    isolates_tasks = True  # task s is rebuilt from the source and task s's own state

    def setup(self, G: nn.Module, D: nn.Module, ctx: TaskContext) -> None:
        """Every task starts from the source G and D; only the last block will train."""
        G.load_state_dict(ctx.source_g)
        D.load_state_dict(ctx.source_d)
        G.requires_grad_(False)
        for p in self.generator_parameters(G):
            p.requires_grad_(True)

    def generator_parameters(self, G: nn.Module) -> Iterable[nn.Parameter]:
        prefixes = last_block(G)
        return [p for name, p in G.named_parameters() if name.startswith(prefixes)]

    def task_state(self, G: nn.Module, D: nn.Module) -> dict[str, Any]:
        prefixes = last_block(G)
        return {"g": {k: v.detach().cpu().clone() for k, v in G.state_dict().items() if k.startswith(prefixes)}}

    def rebuild(self, G: nn.Module, source_g: dict[str, torch.Tensor], states: list[dict[str, Any]]) -> nn.Module:
        G.load_state_dict(source_g)
        if states:  # the task's own last block over the source
            unexpected = G.load_state_dict(states[-1]["g"], strict=False).unexpected_keys
            if unexpected:
                raise ValueError(f"lastlayers: stored state has keys this generator lacks: {unexpected[:3]}")
        return G
