"""Training hyperparameters: one dataclass for source pretraining and for every task.

Defaults are rosinality's ``stylegan2-pytorch`` / LFS-GAN ``train.py`` values (see
``docs/methods.md`` §1.7); the workflow config (``source.train``, ``task_train``, a method's
``train``) overrides them key by key through :meth:`TrainConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import torch

from lfsgan.train.augment import parse_policy

DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("float32", "bfloat16")
ADAM_IMPLS = ("default", "foreach", "fused")


@dataclass
class TrainConfig:
    iterations: int = 1000
    batch: int = 4
    lr_g: float = 0.002  # before the lazy-regularisation correction (see optimizers.lazy_adam)
    lr_d: float = 0.002
    r1_gamma: float = 10.0  # 0 disables R1
    r1_every: int = 16
    path_reg_weight: float = 2.0  # 0 disables path-length regularisation
    path_reg_every: int = 4
    path_batch_shrink: int = 2
    path_decay: float = 0.01  # running-mean decay of the path length (StyleGAN2 a)
    style_mixing: float = 0.9  # probability of two latents per fake batch (source pretraining, path reg)
    freeze_d: int = 0  # FreezeD (Mo et al. 2020): D's first N blocks (from RGB on) do not train
    augment: str = ""  # DiffAugment policy on all D inputs, e.g. "color,translation,cutout" ("" = off)
    ema_decay: float | None = None  # per-step EMA decay; None -> from ema_half_life_kimg
    ema_half_life_kimg: float = 10.0  # rosinality: 0.5 ** (32 / (10 * 1000)) at batch 32
    mode_seeking_weight: float = 0.0  # MSGAN term on G's fakes (losses.mode_seeking_penalty); 0 = StyleGAN2 as published
    mode_seeking_pool: int = 1  # block size of the average pooling before the term's image distance
    #: [[iteration, weight], ...]: from each listed iteration on, the term's weight is that weight
    #: (ascending iterations; before the first, ``mode_seeking_weight``)
    mode_seeking_schedule: list = dataclasses.field(default_factory=list)
    checkpoint_every: int = 500
    sample_every: int = 500
    n_sample_grid: int = 16
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    # fast paths (lfsgan.train.fastpath); the defaults are float32 eager, the reference numerics
    precision: str = "float32"  # float32 | bfloat16 (autocast of the D and G steps' forward passes)
    channels_last: bool = False
    compile: bool = False  # torch.compile of G's and D's forward (needs a C++ compiler on the CPU)
    adam_impl: str = "default"  # default | foreach | fused
    cudnn_benchmark: bool = False  # CUDA only
    #: data-parallel processes per node (one per GPU on CUDA) and nodes; ``batch`` is the total over
    #: all ``devices * nodes`` of them (see :mod:`lfsgan.train.distributed`). 1 x 1: one process.
    devices: int = 1
    nodes: int = 1
    collective_timeout: float = 600.0  # seconds a rank waits for the others before the job fails

    def __post_init__(self) -> None:
        positive_ints = ("iterations", "batch", "r1_every", "path_reg_every", "path_batch_shrink",
                         "checkpoint_every", "sample_every", "n_sample_grid", "log_every", "mode_seeking_pool",
                         "devices", "nodes")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.freeze_d, int) or isinstance(self.freeze_d, bool) or self.freeze_d < 0:
            raise ValueError(f"TrainConfig.freeze_d must be an integer >= 0, got {self.freeze_d!r}")
        if not isinstance(self.augment, str):
            raise ValueError(f"TrainConfig.augment must be a string such as 'color,translation,cutout', got {self.augment!r}")
        parse_policy(self.augment)
        for name in ("lr_g", "lr_d", "collective_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("r1_gamma", "path_reg_weight", "ema_half_life_kimg", "mode_seeking_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("style_mixing", "path_decay"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        self.mode_seeking_schedule = _check_schedule(self.mode_seeking_schedule)
        if self.ema_decay is not None and not 0 <= self.ema_decay <= 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1] or null, got {self.ema_decay!r}")
        for name, allowed in (("precision", PRECISIONS), ("adam_impl", ADAM_IMPLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("channels_last", "compile", "cudnn_benchmark"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.batch % self.world_size:
            raise ValueError(f"TrainConfig.batch = {self.batch} is the total batch over devices x nodes = {self.world_size} "
                             f"processes and must be a multiple of {self.world_size}")
        if self.device not in DEVICES:
            raise ValueError(f"TrainConfig.device must be one of {DEVICES}, got {self.device!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "train config") -> "TrainConfig":
        """Build from a mapping; unknown keys are an error that lists the allowed ones."""
        d = dict(d or {})
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(sorted(allowed))}"
            )
        return cls(**d)

    @property
    def world_size(self) -> int:
        """Data-parallel processes in all: ``devices * nodes``."""
        return self.devices * self.nodes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def mode_seeking_weight_at(self, step: int) -> float:
        """The MSGAN term's weight at iteration ``step``: the last ``mode_seeking_schedule`` entry whose
        iteration is ≤ ``step``, else ``mode_seeking_weight``."""
        weight = self.mode_seeking_weight
        for start, value in self.mode_seeking_schedule:
            if step >= start:
                weight = value
        return weight

    def resolved_ema_decay(self) -> float:
        """Per-step EMA decay ``beta``: ``ema_decay`` if set, else ``0.5 ** (batch / (half_life_kimg * 1000))``
        (the generator average halves its memory every ``ema_half_life_kimg`` thousand images)."""
        if self.ema_decay is not None:
            return float(self.ema_decay)
        if self.ema_half_life_kimg == 0:
            return 0.0
        return 0.5 ** (self.batch / (self.ema_half_life_kimg * 1000.0))

    def resolved_device(self) -> torch.device:
        """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("TrainConfig.device is 'cuda' but torch sees no GPU; use device: cpu or auto")
        return torch.device(self.device)


def _check_schedule(schedule: Any) -> list[list]:
    """``[[iteration, weight], ...]`` with integer iterations ≥ 0 in ascending order and weights ≥ 0."""
    if not isinstance(schedule, (list, tuple)):
        raise ValueError(f"TrainConfig.mode_seeking_schedule must be a list of [iteration, weight] pairs, got {schedule!r}")
    out, last = [], -1
    for entry in schedule:
        it, weight = entry if isinstance(entry, (list, tuple)) and len(entry) == 2 else (None, None)
        if type(it) is not int or it <= last or type(weight) not in (int, float) or weight < 0:
            raise ValueError(f"TrainConfig.mode_seeking_schedule: entry {entry!r} must be [iteration, weight] with an integer "
                             f"iteration above the previous one ({last}) and a weight >= 0")
        out.append([it, float(weight)])
        last = it
    return out
