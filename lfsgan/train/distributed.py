"""Data-parallel training over the processes ``torchrun`` starts (rosinality's ``distributed.py``, in this loop's terms).

``torchrun`` starts one process per device and tells each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); a :class:`Shard` is that
place. Without those variables a run is one process, and every function here is a no-op.

What is split across the ``W`` ranks and what is shared:

- **the batch.** ``train.batch`` is the total batch; rank ``r`` trains on rows ``[r b, (r + 1) b)`` of it,
  ``b = batch / W``. Every random draw made per batch — the sampler's images and flips, the latents,
  the style-mixing cut, the path-length probe ``y``, DiffAugment's transforms — is made for the whole
  batch from a stream that
  every rank holds in the same state, and each rank keeps its rows (:meth:`Shard.rows`). So a
  ``W``-process run sees the images and latents of a one-process run at the same batch, and the
  state of those streams is the same on every rank: rank 0's checkpoint restores all of them.
- **per-layer noise** (torch's global RNG, drawn inside the generator): one stream per rank, so that
  images of different ranks get different noise; the checkpoint holds every rank's state
  (:func:`gather_rng_states`).
- **gradients**: averaged over the ranks before every optimiser step (an all-reduce, the average DDP
  takes; :func:`average_gradients`). R1 and the path-length term are per-image means, so their
  averaged gradients are those of the whole batch.
- **batch statistics**: the path length's running mean is taken over the whole batch
  (:meth:`Shard.batch_mean`, differentiable), so it is the same on every rank. The minibatch-stddev
  groups of the discriminator and the halves of the mode-seeking terms stay within a rank's rows,
  as in rosinality's code (``group = min(per-rank batch, 4)``).
- **the log**: losses are averaged over the ranks at each logged step (:func:`mean_over_ranks`).
- **files**: only rank 0 writes (checkpoints, samples, ``losses.csv``, ``final.pt``).

Failure: a collective that waits longer than ``train.collective_timeout`` seconds for another rank
raises; torchrun ends the other processes when one exits with an error and names the failed rank in
its report, where :func:`process_group` also records the exception.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """This process's place among ``size`` data-parallel processes (``rank`` 0 is the one that writes)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the device index on this node

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.size or self.local_rank < 0:
            raise ValueError(f"rank {self.rank} of {self.size} processes (local rank {self.local_rank}) is not a place")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def per_rank(self, batch: int) -> int:
        """The rows of a ``batch``-image batch that each rank trains on; an error unless ``size`` divides it."""
        if batch % self.size:
            raise ValueError(f"train.batch = {batch} is the total batch over {self.size} processes and must be a "
                             f"multiple of {self.size}; choose a batch of {self.size * max(1, batch // self.size)} or another device count")
        return batch // self.size

    def whole(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the whole batch whose rows ``[r b, (r + 1) b)`` have ``shape``."""
        return (shape[0] * self.size, *shape[1:])

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a whole-batch tensor ``x [B, ...]`` -> ``[B / size, ...]``."""
        if self.size == 1:
            return x
        b = self.per_rank(x.shape[0])
        return x[self.rank * b : (self.rank + 1) * b]

    def batch_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the whole batch of per-image values ``x [b]`` (this rank's rows); gradients flow back
        to the rows of every rank (a differentiable all-reduce)."""
        if self.size == 1:
            return x.mean()
        return _SumOverRanks.apply(x.sum()) / (x.shape[0] * self.size)

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:<local rank>`` for CUDA, else ``device``."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.distributed else device

    def rng_key(self, key: str) -> str:
        """The checkpoint key of this rank's state of the per-rank stream ``key`` (rank 0: ``key`` itself)."""
        return key if self.rank == 0 else f"{key}:rank{self.rank}"


class _SumOverRanks(torch.autograd.Function):
    """``sum_r x_r`` on every rank; backward: the gradient of the summed losses of every rank."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


#: one process: the default of every function that takes a shard
SINGLE = Shard()


def shard_from_env(environ: Mapping[str, str] = os.environ) -> Shard:
    """The :class:`Shard` torchrun describes in ``environ``; :data:`SINGLE` when it did not start this process."""
    if "WORLD_SIZE" not in environ or "RANK" not in environ:
        return SINGLE
    return Shard(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", 0)))


def check_world(devices: int, nodes: int, shard: Shard) -> None:
    """Raise unless this run has the ``devices * nodes`` processes its config asks for."""
    if devices * nodes != shard.size:
        raise ValueError(
            f"train.devices x train.nodes = {devices} x {nodes} processes, but this run has {shard.size}: start it with "
            f"`python -m torch.distributed.run --nproc-per-node {devices} --nnodes {nodes} ...` (the workflow's rule "
            "does), or set devices and nodes to the processes it runs on")


@contextlib.contextmanager
def process_group(shard: Shard, device: torch.device, timeout_s: float) -> Iterator[torch.device]:
    """Join the process group of ``shard`` (NCCL on CUDA, gloo on the CPU) for the block; yields this
    rank's device. A collective that waits more than ``timeout_s`` seconds raises. An exception is
    written to torchrun's error file, so that its failure report shows it under this rank; ranks
    other than 0 log warnings and errors only."""
    if not shard.distributed:
        yield device
        return
    device = shard.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=shard.rank, world_size=shard.size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    if not shard.is_main:
        logging.getLogger("lfsgan").setLevel(logging.WARNING)
    try:
        yield device
    except Exception as e:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        if "timed out" in str(e).lower():
            e = TimeoutError(f"rank {shard.rank} of {shard.size} waited more than train.collective_timeout = {timeout_s:g} s "
                             f"for the other ranks in a collective: one of them hangs or was lost ({e})")
        ErrorHandler().record_exception(e)  # for torchrun's failure report; no-op outside torchrun
        raise e
    finally:
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def average_gradients(params: Iterable[nn.Parameter], shard: Shard) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of all of them); parameters
    without a gradient are skipped (they are the same on every rank)."""
    if not shard.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= shard.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_gradients_before_step(optimizer: torch.optim.Optimizer, shard: Shard) -> None:
    """Make every ``optimizer.step()`` first average its parameters' gradients over the ranks."""
    if not shard.distributed:
        return

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        average_gradients((p for group in opt.param_groups for p in group["params"]), shard)

    optimizer.register_step_pre_hook(hook)


def broadcast_modules(modules: Mapping[str, nn.Module], shard: Shard) -> None:
    """Give every rank rank 0's parameters and buffers (as DDP does when it wraps a module)."""
    if not shard.distributed:
        return
    with torch.no_grad():
        for module in modules.values():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)


def mean_over_ranks(record: dict[str, Any], shard: Shard) -> dict[str, Any]:
    """``record`` with its float values averaged over the ranks (the logged losses); ints (step) stay."""
    if not shard.distributed:
        return record
    keys = sorted(k for k, v in record.items() if isinstance(v, float))
    values = torch.tensor([record[k] for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(values)
    return {**record, **dict(zip(keys, (values / shard.size).tolist()))}


def check_same_on_every_rank(value: int, what: str, shard: Shard) -> None:
    """Raise unless every rank holds the same ``value`` (e.g. the step it resumes at)."""
    if not shard.distributed:
        return
    mine = torch.tensor([value, -value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(mine, op=dist.ReduceOp.MAX)
    if int(mine[0]) != -int(mine[1]):
        raise RuntimeError(f"the ranks disagree on {what} (from {-int(mine[1])} to {int(mine[0])}): do all "
                           "nodes see the same run folder? (a shared file system is needed)")


def gather_rng_states(states: Mapping[str, torch.Tensor], shard: Shard) -> dict[str, torch.Tensor]:
    """Every rank's ``states`` (per-rank random streams, uint8 tensors), keyed by :meth:`Shard.rng_key`
    of each rank; a collective. One process: ``states`` as they are."""
    if not shard.distributed:
        return dict(states)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(states):
        mine = states[key].to(_comm_device())
        parts = [torch.empty_like(mine) for _ in range(shard.size)]
        dist.all_gather(parts, mine)
        out.update({Shard(r, shard.size).rng_key(key): t.cpu() for r, t in enumerate(parts)})
    return out


def own_rng_states(states: Mapping[str, torch.Tensor], keys: Iterable[str], shard: Shard) -> dict[str, torch.Tensor]:
    """This rank's part of :func:`gather_rng_states`' result, under the plain ``keys``."""
    missing = [shard.rng_key(k) for k in keys if shard.rng_key(k) not in states]
    if missing:
        raise KeyError(f"the checkpoint holds no state of {', '.join(missing)}: it was written by a run of another world size")
    return {k: states[shard.rng_key(k)] for k in keys}


def barrier(shard: Shard) -> None:
    if shard.distributed:
        dist.barrier()
