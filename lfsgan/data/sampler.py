"""Endless training batches from a uint8 image set, deterministic given a seed.

One sampler serves source pretraining (thousands of images) and few-shot task training (10 images):
every batch draws ``batch`` indices uniformly **with replacement** from a ``torch.Generator`` on the
CPU, so the sequence is the same on every device, and with 10 shots a batch larger than the set is
fine. Like the LFS-GAN code (torchvision ``RandomHorizontalFlip`` on real images), each image is
mirrored left-right with probability 1/2 when ``hflip`` is on. No other augmentation.
"""

from __future__ import annotations

from typing import Iterator

import torch


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] → float32 in [-1, 1]: ``x / 127.5 − 1`` (0 → −1, 255 → 1)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


class InfiniteSampler:
    """Iterator of float batches ``[batch, 3, R, R]`` in [-1, 1], forever.

    ``state_dict()``/``load_state_dict()`` hold the generator state (a uint8 tensor, so it fits a
    tensors-only checkpoint): a resumed run continues with exactly the batches it would have drawn.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch: int,
        seed: int,
        hflip: bool = True,
        device: str | torch.device = "cpu",
    ):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
            raise ValueError(f"expected a non-empty uint8 tensor [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.images = images.to(device)  # [N, 3, H, W] uint8, moved once
        self.batch = int(batch)
        self.hflip = bool(hflip)
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))

    def __iter__(self) -> InfiniteSampler:
        return self

    def __next__(self) -> torch.Tensor:
        idx = torch.randint(len(self.images), (self.batch,), generator=self.generator)  # [B]
        x = self.images[idx.to(self.images.device)]  # [B, 3, H, W] uint8
        if self.hflip:
            flip = (torch.rand(self.batch, generator=self.generator) < 0.5).to(x.device)  # [B]
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return to_float(x)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])


def batches(
    images: torch.Tensor, batch: int, seed: int, hflip: bool = True, device: str | torch.device = "cpu"
) -> Iterator[torch.Tensor]:
    """Shorthand for :class:`InfiniteSampler` (``for x in batches(shots, 4, seed=0): ...``)."""
    return InfiniteSampler(images, batch, seed, hflip=hflip, device=device)
