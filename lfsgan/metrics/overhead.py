"""Parameter overhead: how many numbers a method stores per task (the question lfsgan answers: which method "costs the fewest extra parameters"; docs/design.md)."""

from __future__ import annotations

from typing import Any

import torch


def count_tensors(state: Any, _where: str = "<root>") -> int:
    """Total number of elements in all tensors of a (nested) dict/list/tuple, e.g. a stored task artefact.

    Raises ``TypeError`` naming the key of any value that is neither a tensor nor a container.
    """
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, dict):
        return sum(count_tensors(v, f"{_where}.{k}") for k, v in state.items())
    if isinstance(state, (list, tuple)):
        return sum(count_tensors(v, f"{_where}[{i}]") for i, v in enumerate(state))
    raise TypeError(f"{_where} is {type(state).__name__}; only tensors and containers of tensors are counted")


def parameter_overhead(per_task: Any, base: Any) -> dict[str, float]:
    """Per-task stored elements relative to the base generator: ``{"n_task", "n_base", "ratio"}``."""
    n_task, n_base = count_tensors(per_task), count_tensors(base)
    if n_base == 0:
        raise ValueError("base state has no tensor elements")
    return {"n_task": n_task, "n_base": n_base, "ratio": n_task / n_base}
