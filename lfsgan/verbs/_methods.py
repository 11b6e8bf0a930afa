"""Shared by the verbs that rebuild a method's generators: the method of a config entry, task chains."""

from __future__ import annotations

from typing import Any

from torch import nn

from lfsgan.config import method_entry
from lfsgan.io import load_checkpoint
from lfsgan.methods import make_method
from lfsgan.methods.base import Method
from lfsgan.train import build_models
from lfsgan.verbs._models import load_source, model_config


def method_for(cfg: dict, name: str) -> Method:
    """The method configured under ``methods.<name>``, or of one of its replicate runs (``name@r<k>``)."""
    entry = method_entry(cfg, name)
    return make_method(entry["kind"], entry.get("options", {}))


def task_source(cfg: dict, method_name: str, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(g, d)``: the source generator the method's tasks start from (its :attr:`Method.base`,
    checked to fit the config's model) and the source discriminator."""
    g, d, _ = load_source(source, model_config(cfg), generator=method_for(cfg, method_name).base)
    return g, d


def load_task_states(paths: list[str]) -> list[dict[str, Any]]:
    return [load_checkpoint(p)[0] for p in paths]


def rebuild_task_generator(cfg: dict, method_name: str, source: str, states: list[str], task_position: int) -> nn.Module:
    """The generator of task ``task_position`` (0-based) after the method learnt ``len(states)`` tasks.

    Adapter methods (LeFT, Piggyback) rebuild task s from the source and the states of tasks 0..s;
    sequential methods (fine-tuning, EWC) use the last stored generator: "after task t" means the
    weights after t, whatever task they are asked to generate.
    """
    g, _d, _ = load_source(source, model_config(cfg))
    G, _D = build_models(model_config(cfg))
    method = method_for(cfg, method_name)
    chain = load_task_states(states)
    upto = chain[: task_position + 1] if method.isolates_tasks else chain
    method.rebuild(G, g, upto)
    return G.eval().requires_grad_(False)
