"""What the training loop needs from a data source: deterministic, resumable batches of real images.

Any object with ``next()`` (or ``__next__``) returning a float batch ``[B, 3, H, W]`` in [-1, 1] and
``state_dict()`` / ``load_state_dict()`` works; its state goes into the training checkpoint (tensors,
ints, floats, strings, lists and dicts are all fine). :class:`lfsgan.data.sampler.InfiniteSampler` is the project's.
"""

from __future__ import annotations

from typing import Any

import torch


def check_sampler(sampler: Any) -> None:
    """Raise a clear error if ``sampler`` does not follow the protocol above."""
    missing = [m for m in ("state_dict", "load_state_dict") if not callable(getattr(sampler, m, None))]
    if not (callable(getattr(sampler, "next", None)) or callable(getattr(sampler, "__next__", None))):
        missing.append("next")
    if missing:
        raise TypeError(
            f"the data sampler ({type(sampler).__name__}) lacks {', '.join(missing)}; the training loop needs "
            "next() -> float [B, 3, H, W] batches and state_dict()/load_state_dict() for resumable runs"
        )


def next_batch(sampler: Any) -> torch.Tensor:
    return sampler.next() if callable(getattr(sampler, "next", None)) else next(sampler)
