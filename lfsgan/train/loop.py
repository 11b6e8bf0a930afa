"""The training loop: source pretraining (``method=None``) and per-task training (a :class:`Method`).

:func:`train` runs :class:`lfsgan.train.step.Trainer` for ``cfg.iterations`` steps and owns the run
folder ``out_dir``:

- ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end (resumable state; a run restarted
  with ``resume=True`` continues from it and, on the CPU, ends bit-identical to an uninterrupted run);
- ``losses.csv`` / ``metrics.jsonl`` every ``log_every`` steps;
- ``samples/step_<NNNNNN>.png`` (six-digit step) every ``sample_every`` steps and ``samples.png`` at the end: fixed latents,
  ``noise_mode="const"``, from the EMA generator when kept;
- ``final.pt`` (``g``, ``d``, ``g_ema``; meta ``{"model", "train", "step", ...}``) and, for a method,
  ``task.pt`` (``method.task_state``) when the run completes.

A non-finite loss or parameter stops the run with :class:`NonFiniteError`; the last checkpoint on
disk is the last good state (checkpoints are written only after the step's losses and all
parameters were checked).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from lfsgan.io import save_checkpoint
from lfsgan.methods.base import Method, TaskContext
from lfsgan.train.checkpoint import load_training_checkpoint, save_final, save_training_checkpoint
from lfsgan.train.config import TrainConfig
from lfsgan.train.logs import LossLog, save_grid
from lfsgan.train.sampler import check_sampler, next_batch
from lfsgan.train.state import global_rng_state, set_global_rng_state
from lfsgan.train.step import NonFiniteError, Trainer, derived_seed

log = logging.getLogger(__name__)

#: config keys that may change between an interrupted run and its resumption (they do not alter
#: the sequence of updates); any other difference is refused.
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "sample_every", "n_sample_grid", "log_every", "device")


def _check_real(real: torch.Tensor, cfg: TrainConfig, size: int) -> None:
    if not torch.is_floating_point(real) or real.ndim != 4 or tuple(real.shape[1:]) != (3, size, size):
        raise ValueError(f"the data sampler returned {real.dtype} {tuple(real.shape)}; expected float [B, 3, {size}, {size}] in [-1, 1]")
    if real.shape[0] != cfg.batch:
        raise ValueError(f"the data sampler returned batches of {real.shape[0]} images but cfg.batch is {cfg.batch}; build it with the same batch")


def _check_finite_params(trainer: Trainer, step: int) -> None:
    for name, module in trainer.modules().items():
        for pname, p in module.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteError(f"parameter {name}.{pname} became non-finite at step {step}")


@contextlib.contextmanager
def _stop_on_non_finite(ckpt_path: Path) -> Iterator[None]:
    """Re-raise a :class:`NonFiniteError` saying which checkpoint survives."""
    try:
        yield
    except NonFiniteError as e:
        kept = f"the last good checkpoint {ckpt_path} was kept" if ckpt_path.is_file() else "no checkpoint was written yet"
        raise NonFiniteError(f"{e}; training stopped ({kept}). Lower the learning rates or check the method's loss terms.") from e


@torch.no_grad()
def _sample_grid(G: nn.Module, z: torch.Tensor, path: Path) -> None:
    save_grid(G(z.to(next(G.parameters()).device), noise_mode="const"), path)


def train(
    G: nn.Module,
    D: nn.Module,
    sampler: Any,
    cfg: TrainConfig,
    *,
    out_dir: str | Path,
    method: Method | None = None,
    ctx: TaskContext | None = None,
    model_cfg: dict[str, Any] | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``G`` and ``D`` in place; returns ``{"step", "completed", "out_dir", "last_record"}``.

    - ``sampler``: ``next()`` -> float ``[cfg.batch, 3, H, W]``, ``state_dict()``/``load_state_dict()``.
    - ``method`` + ``ctx``: a task; ``method.setup(G, D, ctx)`` runs first (it loads the source or
      previous weights). ``method=None``: source pretraining from G's and D's current weights.
    - ``model_cfg``: the Generator kwargs (incl. ``size``), stored in ``final.pt`` so
      :func:`lfsgan.train.checkpoint.load_generator` can rebuild it.
    - ``resume``: continue from ``out_dir/checkpoint.pt`` when it exists (else start afresh).
    - ``stop_after``: write a checkpoint and return after global step ``stop_after`` (a pause).
    - ``callback(step, record)``: called after every step; raising from it interrupts the run.
    - ``progress``: tqdm bar (None = only on a terminal), refreshed at most once a second.
    - ``meta``: extra JSON entries for ``final.pt`` (e.g. data identity).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_sampler(sampler)
    device = cfg.resolved_device()
    G.to(device).train()
    D.to(device).train()
    if method is not None:
        if ctx is None:
            raise ValueError(f"method '{method.name}' needs a TaskContext (source weights, previous task states)")
        method.setup(G, D, dataclasses.replace(ctx, device=device))
        G.to(device)
        D.to(device)
        extra = method.extra_discriminator_modules()
        if extra is not None:
            extra.to(device)
    torch.manual_seed(derived_seed(cfg.seed, "torch_global"))  # per-layer noise draws
    trainer = Trainer(G, D, cfg, method)

    ckpt_path = out_dir / "checkpoint.pt"
    start = 0
    if resume and ckpt_path.is_file():
        start = _restore(trainer, sampler, cfg, ckpt_path, device)
        log.info("resumed from %s at step %d", ckpt_path, start)
    losses = LossLog(out_dir, resume_step=start if start > 0 else None)
    run_meta = {
        "model": model_cfg,
        "train": cfg.to_dict(),
        "method": method.meta() if method is not None else None,
        "task": {"index": ctx.task_index, "name": ctx.task_name} if ctx is not None else None,
        **(meta or {}),
    }
    z_grid = torch.randn(cfg.n_sample_grid, G.style_dim, generator=torch.Generator().manual_seed(derived_seed(cfg.seed, "grid")))

    def checkpoint(done: int) -> None:
        _check_finite_params(trainer, done - 1)
        save_training_checkpoint(
            ckpt_path,
            modules=trainer.modules(),
            optimizers=trainer.optimizers(),
            sampler=sampler,
            rng={**{k: g.get_state() for k, g in trainer.generators().items()}, **global_rng_state(device)},
            loop={"step": torch.tensor(done), "mean_path_length": trainer.mean_path_length.detach()},
            meta={**run_meta, "step": done},
        )

    record: dict[str, Any] = {}
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {out_dir.name}", mininterval=1.0,
               disable=None if progress is None else not progress, dynamic_ncols=True)
    try:
        for step in range(start, cfg.iterations):
            real = next_batch(sampler).to(device)
            _check_real(real, cfg, G.size)
            with _stop_on_non_finite(ckpt_path):
                record = trainer.step(step, real)
            done = step + 1
            if step % cfg.log_every == 0 or done == cfg.iterations:
                losses.write(record)
                bar.set_postfix({k: f"{record[k]:.3g}" for k in ("d_loss", "g_loss") if k in record}, refresh=False)
            bar.update(1)
            if callback is not None:
                callback(step, record)
            if done % cfg.sample_every == 0:
                _sample_grid(trainer.sample_generator(), z_grid, out_dir / "samples" / f"step_{done:06d}.png")
            paused = stop_after is not None and done == stop_after and done < cfg.iterations
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations or paused:
                with _stop_on_non_finite(ckpt_path):
                    checkpoint(done)
            if paused:
                return {"step": done, "completed": False, "out_dir": str(out_dir), "last_record": record}
    finally:
        bar.close()

    _sample_grid(trainer.sample_generator(), z_grid, out_dir / "samples.png")
    save_final(out_dir / "final.pt", G, D, trainer.g_ema, {**run_meta, "step": cfg.iterations})
    if method is not None:
        state = method.task_state(trainer.sample_generator(), D)
        save_checkpoint(out_dir / "task.pt", state, {**run_meta, "step": cfg.iterations})
    return {"step": cfg.iterations, "completed": True, "out_dir": str(out_dir), "last_record": record}


def _restore(trainer: Trainer, sampler: Any, cfg: TrainConfig, path: Path, device: torch.device) -> int:
    """Load ``path`` into the trainer and sampler, restore every random stream; return the next step."""

    def same_settings(meta: dict[str, Any]) -> None:
        saved, now = dict(meta.get("train") or {}), cfg.to_dict()
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
            raise ValueError(f"{path}: cannot resume with changed training settings ({diffs}); restore them or pass resume=False")
        if int(meta["step"]) > cfg.iterations:
            raise ValueError(f"{path}: checkpoint is at step {meta['step']}, beyond cfg.iterations={cfg.iterations}")

    rng, loop, _ = load_training_checkpoint(
        path, modules=trainer.modules(), optimizers=trainer.optimizers(), sampler=sampler, validate=same_settings
    )
    for name, gen in trainer.generators().items():
        if name not in rng:
            raise KeyError(f"{path}: no state for the random stream '{name}'; the checkpoint was written by another set-up")
        gen.set_state(rng[name])
    set_global_rng_state(rng, device)
    trainer.mean_path_length = loop["mean_path_length"].to(device)
    return int(loop["step"])
