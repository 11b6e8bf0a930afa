"""The training loop: source pretraining (``method=None``) and per-task training (a :class:`Method`).

:func:`train` runs :class:`lfsgan.train.step.Trainer` for ``cfg.iterations`` steps and owns the run
folder ``out_dir``:

- ``checkpoint.pt`` every ``checkpoint_every`` steps (resumable state, with the loss log so far); it
  exists only while the run is unfinished: the completed run deletes it;
- ``losses.csv`` / ``metrics.jsonl`` every ``log_every`` steps;
- ``samples/step_<NNNNNN>.png`` (six-digit step) every ``sample_every`` steps and ``samples.png`` at the end: fixed latents,
  ``noise_mode="const"``, from the EMA generator when kept;
- ``final.pt`` (``g``, ``d``, ``g_ema``; meta ``{"model", "train", "step", ...}``) and, for a method,
  ``task.pt`` (``method.task_state``) when the run completes.

What resumes: only an interrupted run of the same job with the same code. A run always starts from
step 0 unless ``out_dir/checkpoint.pt`` exists *and* its fingerprint (:func:`fingerprint`: model
config, training settings except :data:`RESUMABLE_CHANGES`, method kind and options, task, the
``inputs`` the caller names — data identity, the states it starts from — and the ``code``: the sha256
of every source file the verb runs, :func:`lfsgan.codedeps.code_fingerprint`) equals this run's; then
it continues from there and, on the CPU, ends bit-identical to an uninterrupted run. After an edit
of any of those files the run starts afresh and its log names the files that changed, so the result
is that of the new code alone. ``final.pt`` and ``task.pt`` record the code (``meta["code"]``: digest
and per-file sha256) and the steps at which the run was continued from a checkpoint
(``meta["resumed_at_steps"]``, empty for an uninterrupted run). Because a completed run deletes
its checkpoint, any later run of the same job — a rerun Snakemake or DVC decides on after a change,
``snakemake --forcerun`` — trains from scratch; a checkpoint of other settings (e.g. before a lower
learning rate after a :class:`NonFiniteError`) is ignored with one log line saying what changed.

A non-finite loss or parameter, or a diverged adversarial loss (:data:`DIVERGED_LOSS`), stops the run
with :class:`NonFiniteError`; the last checkpoint on disk is the last good state (checkpoints are
written only after the step's losses and all parameters were checked).

Data-parallel (``shard`` of ``cfg.devices * cfg.nodes`` processes, started by torchrun; see
:mod:`lfsgan.train.distributed`): every rank runs this loop on its rows of each batch; only rank 0
writes the files above, with the losses averaged over the ranks and a checkpoint that holds every
rank's random streams. Every rank loads the checkpoint to resume, and the run continues
bit-identically to an uninterrupted run of the same world size (part of the fingerprint, through
``train.devices`` and ``train.nodes``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from lfsgan.codedeps import changed_files, code_fingerprint
from lfsgan.io import remove_stale_temps, save_checkpoint
from lfsgan.methods.base import Method, TaskContext
from lfsgan.train.checkpoint import StaleCheckpoint, load_training_checkpoint, save_final, save_training_checkpoint
from lfsgan.train.config import TrainConfig
from lfsgan.train.distributed import (
    SINGLE,
    Shard,
    average_gradients_before_step,
    broadcast_modules,
    check_same_on_every_rank,
    check_world,
    gather_rng_states,
    mean_over_ranks,
    own_rng_states,
)
from lfsgan.train.logs import LossLog, save_grid
from lfsgan.train.sampler import check_sampler, next_batch
from lfsgan.train.state import global_rng_state, set_global_rng_state
from lfsgan.train.step import NonFiniteError, Trainer, derived_seed

log = logging.getLogger(__name__)

#: config keys that may change between an interrupted run and its resumption (they do not alter
#: the sequence of updates); any other difference makes the run start afresh.
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "sample_every", "n_sample_grid", "log_every", "device",
                     "collective_timeout")

#: a mean adversarial loss (``d_loss`` or ``g_loss``, Eqs. of :mod:`lfsgan.train.step`) above this
#: stops the run as diverged. The logistic losses are means of ``softplus(±logit)``, so a mean above
#: 1e3 needs logits beyond 1e3, where ``sigmoid`` (their gradient) is exactly 0 or 1 even in float64
#: (``exp(-1000)`` underflows): D and G get no usable signal and the run cannot recover, yet the
#: numbers stay finite (lr 5 reaches ~1e18 with exit 0). Healthy StyleGAN2 runs stay below ~10.
DIVERGED_LOSS = 1e3


#: what identifies a run besides its ``train`` settings (see :func:`fingerprint`)
IDENTITY_KEYS = ("model", "method", "task", "inputs", "code")


def fingerprint(run_meta: dict[str, Any]) -> str:
    """sha256 of what a run's update sequence depends on: ``run_meta``'s ``model``, ``train`` (less
    :data:`RESUMABLE_CHANGES`), ``method``, ``task``, ``inputs`` and ``code``. Equal fingerprints: a
    checkpoint of one run may be continued by the other."""
    train = {k: v for k, v in (run_meta.get("train") or {}).items() if k not in RESUMABLE_CHANGES}
    key = {k: run_meta.get(k) for k in IDENTITY_KEYS}
    return hashlib.sha256(json.dumps({**key, "train": train}, sort_keys=True).encode()).hexdigest()


def _api_code() -> dict[str, Any]:
    """The code fingerprint of a run started through :func:`train` directly: this module, every method
    (their registry) and what they import."""
    here = Path(__file__).resolve()
    return code_fingerprint(starts=[here, here.parents[1] / "methods" / "__init__.py"])


def _check_real(real: torch.Tensor, cfg: TrainConfig, size: int, shard: Shard) -> None:
    if not torch.is_floating_point(real) or real.ndim != 4 or tuple(real.shape[1:]) != (3, size, size):
        raise ValueError(f"the data sampler returned {real.dtype} {tuple(real.shape)}; expected float [B, 3, {size}, {size}] in [-1, 1]")
    if real.shape[0] != shard.per_rank(cfg.batch):
        per_rank = f" ({shard.per_rank(cfg.batch)} per process)" if shard.distributed else ""
        raise ValueError(f"the data sampler returned batches of {real.shape[0]} images but cfg.batch is {cfg.batch}{per_rank}; "
                         "build it with the same batch (and this process's rank and world size)")


def _check_finite_params(trainer: Trainer, step: int) -> None:
    for name, module in trainer.modules().items():
        for pname, p in module.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteError(f"parameter {name}.{pname} became non-finite at step {step}")


def _check_diverged(record: dict[str, Any], step: int) -> None:
    for name in ("d_loss", "g_loss"):
        if name in record and abs(record[name]) > DIVERGED_LOSS:
            raise NonFiniteError(f"loss '{name}' is {record[name]:.3g} at step {step}, beyond {DIVERGED_LOSS:g}: the run diverged")


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
    inputs: dict[str, Any] | None = None,
    code: dict[str, Any] | None = None,
    shard: Shard = SINGLE,
) -> dict[str, Any]:
    """Train ``G`` and ``D`` in place; returns ``{"step", "completed", "out_dir", "last_record"}``.

    - ``sampler``: ``next()`` -> float ``[cfg.batch, 3, H, W]``, ``state_dict()``/``load_state_dict()``.
    - ``method`` + ``ctx``: a task; ``method.setup(G, D, ctx)`` runs first (it loads the source or
      previous weights). ``method=None``: source pretraining from G's and D's current weights.
    - ``model_cfg``: the Generator kwargs (incl. ``size``), stored in ``final.pt`` so
      :func:`lfsgan.train.checkpoint.load_generator` can rebuild it.
    - ``resume``: continue from ``out_dir/checkpoint.pt`` when it exists and has this run's
      fingerprint (else start afresh; see the module docstring).
    - ``stop_after``: write a checkpoint and return after global step ``stop_after`` (a pause).
    - ``callback(step, record)``: called after every step (with this rank's own losses when
      data-parallel); raising from it interrupts the run.
    - ``progress``: tqdm bar (None = only on a terminal), refreshed at most once a second.
    - ``meta``: extra JSON entries for ``final.pt`` (e.g. versions).
    - ``inputs``: JSON identity of everything else the updates depend on (prepared data's
      ``images_sha256`` and shots, hflip, digests of the source / earlier task states / Fisher it
      starts from); stored in ``final.pt`` and part of the :func:`fingerprint`.
    - ``code``: :func:`lfsgan.codedeps.code_fingerprint` of the code that computes the run (the verb's
      files); by default that of this module, the methods and what they import.
    - ``shard``: this process's place in a data-parallel run (its process group joined, see
      :func:`lfsgan.train.distributed.process_group`); ``sampler`` then returns this rank's rows.
      Only rank 0 writes; every rank returns the same result.
    """
    out_dir = Path(out_dir)
    check_world(cfg.devices, cfg.nodes, shard)
    if shard.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    check_sampler(sampler)
    device = shard.device(cfg.resolved_device())
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
    torch.manual_seed(derived_seed(cfg.seed, shard.rng_key("torch_global")))  # per-layer noise draws, per rank
    trainer = Trainer(G, D, cfg, method, shard)
    for optimizer in trainer.optimizers().values():
        average_gradients_before_step(optimizer, shard)

    for folder in (out_dir, out_dir / "samples") if shard.is_main else ():
        for tmp in remove_stale_temps(folder):
            log.info("removed %s, left by an interrupted write", tmp)
    run_meta = {
        "model": model_cfg,
        "train": cfg.to_dict(),
        "method": method.meta() if method is not None else None,
        "task": {"index": ctx.task_index, "name": ctx.task_name} if ctx is not None else None,
        "inputs": inputs,
        "code": code or _api_code(),
        **(meta or {}),
    }
    run_meta["fingerprint"] = fingerprint(run_meta)
    ckpt_path = out_dir / "checkpoint.pt"
    start, restored_log, run_meta["resumed_at_steps"] = 0, None, []
    if resume and ckpt_path.is_file():
        try:
            start, restored_log, earlier = _restore(trainer, sampler, cfg, ckpt_path, device, run_meta, shard)
            run_meta["resumed_at_steps"] = [*earlier, start]
            log.info("resumed from %s at step %d", ckpt_path, start)
        except StaleCheckpoint as e:
            log.info("starting afresh, not resuming: %s", e)
    check_same_on_every_rank(start, "the step to start from", shard)
    broadcast_modules(trainer.modules(), shard)
    losses = LossLog(out_dir, restored=restored_log) if shard.is_main else None
    z_grid = torch.randn(cfg.n_sample_grid, G.style_dim, generator=torch.Generator().manual_seed(derived_seed(cfg.seed, "grid")))

    def checkpoint(done: int) -> None:
        _check_finite_params(trainer, done - 1)
        per_rank_rng = gather_rng_states(global_rng_state(device), shard)  # a collective: every rank takes part
        if not shard.is_main:
            return
        save_training_checkpoint(
            ckpt_path,
            modules=trainer.modules(),
            optimizers=trainer.optimizers(),
            sampler=sampler,
            rng={**{k: g.get_state() for k, g in trainer.generators().items()}, **per_rank_rng},
            loop={"step": torch.tensor(done), "mean_path_length": trainer.mean_path_length.detach()},
            meta={**run_meta, "step": done, "log": losses.state()},
        )

    record: dict[str, Any] = {}
    bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {out_dir.name}", mininterval=1.0,
               disable=True if not shard.is_main else None if progress is None else not progress, dynamic_ncols=True)
    try:
        for step in range(start, cfg.iterations):
            real = next_batch(sampler).to(device)
            _check_real(real, cfg, G.size, shard)
            with _stop_on_non_finite(ckpt_path):
                record = trainer.step(step, real)
                _check_diverged(record, step)
            done = step + 1
            if step % cfg.log_every == 0 or done == cfg.iterations:
                logged = mean_over_ranks(record, shard)  # a collective: every rank takes part
                if losses is not None:
                    losses.write(logged)
                bar.set_postfix({k: f"{logged[k]:.3g}" for k in ("d_loss", "g_loss") if k in logged}, refresh=False)
            bar.update(1)
            if callback is not None:
                callback(step, record)
            if done % cfg.sample_every == 0 and shard.is_main:
                _sample_grid(trainer.sample_generator(), z_grid, out_dir / "samples" / f"step_{done:06d}.png")
            paused = stop_after is not None and done == stop_after and done < cfg.iterations
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations or paused:
                with _stop_on_non_finite(ckpt_path):
                    checkpoint(done)
            if paused:
                return {"step": done, "completed": False, "out_dir": str(out_dir), "last_record": record}
    finally:
        bar.close()

    if shard.is_main:
        _sample_grid(trainer.sample_generator(), z_grid, out_dir / "samples.png")
        save_final(out_dir / "final.pt", G, D, trainer.g_ema, {**run_meta, "step": cfg.iterations})
        if method is not None:
            state = method.task_state(trainer.sample_generator(), D)
            save_checkpoint(out_dir / "task.pt", state, {**run_meta, "step": cfg.iterations})
        ckpt_path.unlink(missing_ok=True)  # completed: a later run of this job starts from scratch
    return {"step": cfg.iterations, "completed": True, "out_dir": str(out_dir), "last_record": record}


def _changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's run meta and this run's: identity keys, ``train.<key>`` and,
    for the code, ``code: <file>`` for each source file that changed."""
    changed = [k for k in IDENTITY_KEYS if k != "code" and saved.get(k) != now.get(k)]
    old_train, new_train = saved.get("train") or {}, now["train"]
    changed += [f"train.{k}" for k in new_train if k not in RESUMABLE_CHANGES and old_train.get(k) != new_train[k]]
    old_code, new_code = saved.get("code") or {}, now["code"]
    if old_code.get("sha256") != new_code["sha256"]:
        if not old_code.get("files"):
            return [*changed, "code (the checkpoint records none)"]
        files = changed_files(old_code["files"], new_code["files"])
        more = [f"and {len(files) - 10} more file(s)"] if len(files) > 10 else []
        changed += [f"code: {f}" for f in files[:10]] + more
    return changed


def _restore(
    trainer: Trainer, sampler: Any, cfg: TrainConfig, path: Path, device: torch.device, run_meta: dict[str, Any],
    shard: Shard = SINGLE,
) -> tuple[int, dict[str, list] | None, list[int]]:
    """Load ``path`` into the trainer and sampler, restore every random stream; return the next step,
    the loss log so far and the steps the run was resumed at before. Raises :class:`StaleCheckpoint`
    when ``path`` belongs to another run (settings, inputs or code)."""

    def same_run(meta: dict[str, Any]) -> None:
        if meta.get("fingerprint") != run_meta["fingerprint"]:
            changed = _changes(meta, run_meta)
            raise StaleCheckpoint(f"{path} belongs to a run with other settings, inputs or code (changed: {', '.join(changed) or 'fingerprint'})")
        if int(meta["step"]) > cfg.iterations:
            raise StaleCheckpoint(f"{path} is at step {meta['step']}, beyond this run's {cfg.iterations} iterations")

    rng, loop, meta = load_training_checkpoint(
        path, modules=trainer.modules(), optimizers=trainer.optimizers(), sampler=sampler, validate=same_run
    )
    for name, gen in trainer.generators().items():
        if name not in rng:
            raise KeyError(f"{path}: no state for the random stream '{name}'; the checkpoint was written by another set-up")
        gen.set_state(rng[name])
    set_global_rng_state(own_rng_states(rng, global_rng_state(device), shard), device)
    trainer.mean_path_length = loop["mean_path_length"].to(device)
    return int(loop["step"]), meta.get("log"), list(meta.get("resumed_at_steps") or [])
