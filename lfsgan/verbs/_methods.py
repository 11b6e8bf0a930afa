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


def load_task_states(paths: list[str], kind: str) -> list[dict[str, Any]]:
    """The stored states of a method's tasks 0..t-1, in order; each file must be a ``task.pt`` of a method of
    ``kind`` at its position (else ValueError naming the file): another method's state would be misread."""
    states = []
    for position, path in enumerate(paths):
        tensors, meta = load_checkpoint(path)
        _check_task_file(path, meta, kind, position)
        states.append(tensors)
    return states


def _check_task_file(path: str, meta: dict[str, Any], kind: str, position: int) -> None:
    workflow = meta.get("workflow") or {}
    found_kind, found_index = workflow.get("kind"), workflow.get("task_index")
    if found_kind == kind and found_index == position:
        return
    if found_kind is None or not isinstance(found_index, int):
        found = "not a task.pt written by `lfsgan train-task`"
    else:
        found = f"the task.pt of task {found_index + 1} ({workflow.get('task')!r}) of method {workflow.get('method')!r}, kind '{found_kind}'"
    raise ValueError(
        f"{path}: {found}, but task {position + 1} of a '{kind}' method is needed here; give this method's own "
        "task.pt files of its earlier tasks, in task order"
    )


def rebuild_task_generator(cfg: dict, method_name: str, source: str, states: list[str], task_position: int) -> nn.Module:
    """The generator of task ``task_position`` (0-based) after the method learnt ``len(states)`` tasks.

    Adapter methods (LeFT, Piggyback) rebuild task s from the source and the states of tasks 0..s;
    sequential methods (fine-tuning, EWC) use the last stored generator: "after task t" means the
    weights after t, whatever task they are asked to generate.
    """
    g, _d, _ = load_source(source, model_config(cfg))
    G, _D = build_models(model_config(cfg))
    method = method_for(cfg, method_name)
    chain = load_task_states(states, method.name)
    upto = chain[: task_position + 1] if method.isolates_tasks else chain
    method.rebuild(G, g, upto)
    return G.eval().requires_grad_(False)
