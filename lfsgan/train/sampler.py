"""What the training loop needs from a data source: deterministic, resumable batches of real images.

Any object with ``next()`` (or ``__next__``) returning a float batch ``[B, 3, H, W]`` in [-1, 1] and
``state_dict()`` / ``load_state_dict()`` works; its state goes into the training checkpoint (tensors,
ints, floats, strings, lists and dicts are all fine). :class:`TensorSampler` is the minimal one.
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


class TensorSampler:
    """Random batches (with replacement) from an in-memory image tensor, optionally h-flipped.

    ``images``: float ``[N, 3, H, W]`` in [-1, 1] or uint8 ``[N, 3, H, W]`` (converted). Every draw
    comes from one seeded ``torch.Generator`` whose state is the sampler's whole state.
    """

    def __init__(self, images: torch.Tensor, batch: int, seed: int = 0, hflip: bool = False):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"TensorSampler expects images [N, 3, H, W], got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 127.5 - 1.0
        self.images = images  # [N, 3, H, W] float
        self.batch = int(batch)
        self.hflip = bool(hflip)
        self.generator = torch.Generator().manual_seed(int(seed))

    def next(self) -> torch.Tensor:
        idx = torch.randint(len(self.images), (self.batch,), generator=self.generator)  # [B]
        x = self.images[idx]  # [B, 3, H, W]
        if self.hflip:
            flip = torch.rand(self.batch, generator=self.generator) < 0.5  # [B]
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    __next__ = next

    def __iter__(self) -> "TensorSampler":
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].to(torch.uint8).cpu())
