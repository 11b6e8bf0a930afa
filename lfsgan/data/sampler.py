"""Endless training batches from a uint8 image set, deterministic given a seed.

One sampler serves source pretraining (thousands of images) and few-shot task training (10 images).
Two ways to draw indices, both from one ``torch.Generator`` on the CPU (the same sequence on every
device):

- ``"epochs"`` (default, as the official LFS-GAN/CDC loaders: a shuffling sampler, no replacement):
  the images are shuffled into epochs and batches are cut from the stream of epochs, so **every image
  appears exactly once per epoch**. Where a batch straddles two epochs, the images it already holds
  are moved to the end of the new epoch's order (a stable reorder), so that no batch holds the same
  image twice while ``batch <= N`` — as with the official ``drop_last`` loader, where a batch never
  repeats an image (which matters for the mode-seeking loss: a duplicate real image cannot be a
  cluster centre of its own). Unlike ``drop_last``, no image is skipped in an epoch.
- ``"replacement"``: ``batch`` indices uniformly with replacement per step (about half of all
  4-image batches from 10 shots then hold a duplicate).

Like the LFS-GAN code (torchvision ``RandomHorizontalFlip`` on real images), each image is mirrored
left-right with probability 1/2 when ``hflip`` is on. No other augmentation.

Data-parallel training (``rank`` of ``world_size`` processes): ``batch`` stays the total batch; every
process draws the indices and flips of the whole batch from the same seeded stream and returns its
rows ``[rank b, (rank + 1) b)``, ``b = batch / world_size`` (the ranks share each epoch without
overlap, as a distributed sampler does). The state is the same in every process, so one copy of it
resumes them all, and the ranks together see exactly the batches of a one-process run.
"""

from __future__ import annotations

from typing import Iterator

import torch

SAMPLING = ("epochs", "replacement")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] → float32 in [-1, 1]: ``x / 127.5 − 1`` (0 → −1, 255 → 1)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


class InfiniteSampler:
    """Iterator of float batches ``[batch / world_size, 3, R, R]`` in [-1, 1], forever.

    ``state_dict()``/``load_state_dict()`` hold the generator state and, for ``"epochs"``, the current
    epoch's order and position (tensors, so they fit a tensors-only checkpoint): a resumed run
    continues with exactly the batches it would have drawn, also in the middle of an epoch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch: int,
        seed: int,
        hflip: bool = True,
        device: str | torch.device = "cpu",
        sampling: str = "epochs",
        rank: int = 0,
        world_size: int = 1,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
            raise ValueError(f"expected a non-empty uint8 tensor [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
        if not 0 <= rank < world_size or batch % world_size:
            raise ValueError(f"rank {rank} of {world_size} processes cannot take an equal share of a batch of {batch}")
        self.images = images.to(device)  # [N, 3, H, W] uint8, moved once
        self.batch = int(batch)
        self.hflip = bool(hflip)
        self.sampling = sampling
        share = self.batch // world_size
        self.rows = slice(rank * share, (rank + 1) * share)  # this process's rows of each batch
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.order = torch.empty(0, dtype=torch.long)  # current epoch's permutation of 0..N-1
        self.position = 0  # next unused entry of `order`

    def __iter__(self) -> InfiniteSampler:
        return self

    def _epoch_indices(self) -> torch.Tensor:
        """The next ``batch`` indices from the stream of shuffled epochs."""
        taken: list[int] = []
        while len(taken) < self.batch:
            if self.position >= len(self.order):
                order = torch.randperm(len(self.images), generator=self.generator)
                held = set(taken)  # images of this batch from the previous epoch go last
                self.order = torch.tensor(
                    [i for i in order.tolist() if i not in held] + [i for i in order.tolist() if i in held], dtype=torch.long
                )
                self.position = 0
            n = min(self.batch - len(taken), len(self.order) - self.position)
            taken += self.order[self.position : self.position + n].tolist()
            self.position += n
        return torch.tensor(taken, dtype=torch.long)

    def __next__(self) -> torch.Tensor:
        if self.sampling == "epochs":
            idx = self._epoch_indices()  # [B]
        else:
            idx = torch.randint(len(self.images), (self.batch,), generator=self.generator)  # [B]
        x = self.images[idx[self.rows].to(self.images.device)]  # [b, 3, H, W] uint8, this process's rows
        if self.hflip:
            flip = (torch.rand(self.batch, generator=self.generator) < 0.5)[self.rows].to(x.device)  # [b]
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return to_float(x)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": torch.tensor(self.position)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state.get("order", torch.empty(0, dtype=torch.long)).clone().long()
        self.position = int(state.get("position", 0))


def batches(
    images: torch.Tensor,
    batch: int,
    seed: int,
    hflip: bool = True,
    device: str | torch.device = "cpu",
    sampling: str = "epochs",
) -> Iterator[torch.Tensor]:
    """Shorthand for :class:`InfiniteSampler` (``for x in batches(shots, 4, seed=0): ...``)."""
    return InfiniteSampler(images, batch, seed, hflip=hflip, device=device, sampling=sampling)
