"""Lifelong few-shot adaptation methods, one module each, behind the :class:`~.base.Method` hooks.

``METHODS`` maps a config's method ``kind`` to its class; :func:`make_method` builds one from the
config's method options (a plain dict; unknown keys are rejected by each method).
"""

from __future__ import annotations

from typing import Any

from .base import Method, TaskContext
from .ewc import EWC
from .finetune import FineTune
from .lfsgan import LFSGAN
from .piggyback import Piggyback

METHODS: dict[str, type[Method]] = {
    "finetune": FineTune,
    "ewc": EWC,
    "piggyback": Piggyback,
    "lfsgan": LFSGAN,
}


def make_method(kind: str, options: dict[str, Any] | None = None) -> Method:
    """The method ``kind`` with ``options`` (the config's method entry, without its ``kind``)."""
    if kind not in METHODS:
        raise ValueError(f"unknown method kind {kind!r}; choose one of {sorted(METHODS)}")
    return METHODS[kind](options)


__all__ = ["METHODS", "make_method", "Method", "TaskContext", "FineTune", "EWC", "Piggyback", "LFSGAN"]
