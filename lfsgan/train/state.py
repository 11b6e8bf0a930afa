"""Split arbitrary training state (optimiser, sampler, RNG) into tensors + JSON, and back.

:func:`lfsgan.io.save_checkpoint` stores only (nested dicts of) tensors plus a JSON ``meta``. An
optimiser ``state_dict`` has int keys, lists and tuples; a data sampler's may hold ints. ``pack``
turns any such tree into ``(tensors, skeleton)``: the tensors in a flat dict keyed by their path,
the rest as a JSON skeleton in which each tensor is a ``{"__tensor__": path}`` placeholder.
``unpack`` restores the original tree exactly (int keys, tuples, tensor dtypes).
"""

from __future__ import annotations

from typing import Any

import torch

_TENSOR = "__tensor__"
_DICT = "__dict__"  # a dict with non-string keys: [[key, value], ...]
_TUPLE = "__tuple__"


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def pack(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """``obj`` (tensors, dicts, lists, tuples, JSON scalars) -> ``(flat tensors, JSON skeleton)``."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            if path in tensors:
                raise ValueError(f"two state entries map to the tensor path {path!r}; rename a key containing '/'")
            tensors[path] = x
            return {_TENSOR: path}
        if isinstance(x, dict):
            if all(isinstance(k, str) for k in x) and not ({_TENSOR, _DICT, _TUPLE} & set(x)):
                return {k: walk(v, _join(path, k)) for k, v in x.items()}
            for k in x:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(f"cannot store state key {k!r} at {path or '<root>'}: keys must be str or int")
            return {_DICT: [[k, walk(v, _join(path, k))] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v, _join(path, i)) for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, _join(path, i)) for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store state value of type {type(x).__name__} at {path or '<root>'}")

    skeleton = walk(obj, prefix)
    return tensors, skeleton


def unpack(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of :func:`pack`."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if _TENSOR in x:
                key = x[_TENSOR]
                if key not in tensors:
                    raise KeyError(f"checkpoint is missing tensor {key!r} named by its metadata; the file is damaged")
                return tensors[key]
            if _DICT in x:
                return {k: walk(v) for k, v in x[_DICT]}
            if _TUPLE in x:
                return tuple(walk(v) for v in x[_TUPLE])
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(skeleton)


def global_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's global CPU RNG state (and the current CUDA device's, when training on CUDA).

    Modules may draw from the global RNG (e.g. per-layer noise in ``noise_mode="random"``), so its
    state is part of what makes a resumed run identical to an uninterrupted one.
    """
    state = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8).cpu())
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"].to(torch.uint8).cpu(), device)
