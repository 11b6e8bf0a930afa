"""Weight adapters on the generator's adaptable layers, and the TensorLy backend they are written in.

The models expose an adapter hook: every ``EqualLinear`` / ``EqualConv2d`` / ``ModulatedConv2d``
has ``set_adapter(module_or_None)``; when set, its forward uses ``weight, bias = adapter(weight,
bias)`` on the *stored* (frozen) weight and then runs as usual. LeFT (:mod:`.left`) and Piggyback
(:mod:`.piggyback`) are such adapters. This module attaches and detaches them, and moves their
tensors in and out of the nested ``{layer name: {tensor name: tensor}}`` dicts that are stored
per task.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any, Callable, Iterator

import torch
from torch import nn

from lfsgan.io import key_mismatch


class _LazyModule:
    """A module imported on first attribute access; every access reads the module's attribute anew
    (tensorly's dispatch stays exactly what ``import tensorly as tl`` gives).

    ``tensorly`` takes ~1 s to import (it imports scipy); verbs that build no adapter (the source's
    and fine-tuning's or EWC's samples) import this package for the method registry and should not pay it.
    """

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = sys.modules.get(self._name) or importlib.import_module(self._name)
        return getattr(module, attr)


#: ``tensorly``, imported when first used (see :class:`_LazyModule`)
tl = _LazyModule("tensorly")


@contextlib.contextmanager
def pytorch_backend() -> Iterator[None]:
    """Run TensorLy on its PyTorch backend inside the block, in this thread only.

    TensorLy's backend is global state; setting it thread-locally and restoring it afterwards keeps
    the rest of the program (and other threads) on whatever backend they chose. The cost is a few
    attribute look-ups per call.
    """
    previous = tl.get_backend()
    if previous == "pytorch":
        yield
        return
    tl.set_backend("pytorch", local_threadsafe=True)
    try:
        yield
    finally:
        tl.set_backend(previous, local_threadsafe=True)


def adaptable_layers(G: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every layer with an adapter hook, in the models' deterministic order."""
    from lfsgan.models import iter_adaptable

    return list(iter_adaptable(G))


def detach_adapters(G: nn.Module) -> None:
    """Remove every adapter from ``G`` (its state_dict is then the plain rosinality one again)."""
    for _, layer in adaptable_layers(G):
        layer.set_adapter(None)


def attach_adapters(G: nn.Module, make: Callable[[str, nn.Module], nn.Module | None]) -> dict[str, nn.Module]:
    """Attach ``make(name, layer)`` to every adaptable layer (``None`` leaves a layer plain).

    Adapters are created on the layer's device. Returns ``{layer name: adapter}`` in layer order.
    """
    adapters: dict[str, nn.Module] = {}
    for name, layer in adaptable_layers(G):
        adapter = make(name, layer)
        if adapter is None:
            continue
        adapter = adapter.to(layer.weight.device)
        layer.set_adapter(adapter)
        adapters[name] = adapter
    return adapters


def adapter_parameters(adapters: dict[str, nn.Module]) -> list[nn.Parameter]:
    return [p for a in adapters.values() for p in a.parameters()]


def adapter_state(adapters: dict[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """``{layer name: {parameter name: tensor}}``, detached CPU copies (parameters only, no buffers)."""
    return {
        name: {k: p.detach().cpu().clone() for k, p in a.named_parameters()}
        for name, a in adapters.items()
    }


def load_adapter_state(adapters: dict[str, nn.Module], state: dict[str, dict[str, torch.Tensor]], where: str) -> None:
    """Copy stored tensors into the adapters' parameters; any missing/extra/mis-shaped key is an error."""
    if mismatch := key_mismatch(adapters, state):
        raise KeyError(
            f"{where}: stored layers do not match the generator's adaptable layers ({mismatch}); "
            "was it trained with another model size or method option?"
        )
    with torch.no_grad():
        for name, adapter in adapters.items():
            params = dict(adapter.named_parameters())
            stored = state[name]
            if set(params) != set(stored):
                raise KeyError(f"{where}: layer '{name}' stores {sorted(stored)}, expected {sorted(params)}")
            for k, p in params.items():
                if tuple(stored[k].shape) != tuple(p.shape):
                    raise ValueError(
                        f"{where}: '{name}.{k}' has shape {tuple(stored[k].shape)}, expected {tuple(p.shape)}"
                    )
                p.copy_(stored[k].to(device=p.device, dtype=p.dtype))


def count_tensors(state: Any) -> int:
    """Number of scalars in a nested dict of tensors (what a task stores)."""
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, dict):
        return sum(count_tensors(v) for v in state.values())
    raise TypeError(f"expected tensors or dicts of tensors, got {type(state).__name__}")
