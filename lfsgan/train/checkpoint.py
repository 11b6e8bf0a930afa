"""Build models from their config, save/restore resumable training state, rebuild a trained generator.

Two files per run, both through :mod:`lfsgan.io` (tensors only, atomic, ``weights_only`` loading):

- ``checkpoint.pt`` — everything a killed run needs to continue bit-identically: ``g``, ``d``,
  ``g_ema``, ``extra`` (a method's D-side modules), ``g_optim`` / ``d_optim`` and ``sampler`` state
  (tensors; their non-tensor skeletons in ``meta``), ``rng`` (every ``torch.Generator`` of the loop
  and torch's global RNG, as uint8 tensors), ``loop`` (step, running path length); ``meta`` also
  holds the run's ``fingerprint`` and its loss ``log`` so far (see :mod:`lfsgan.train.loop`).
- ``final.pt`` — ``g``, ``d``, ``g_ema`` (rosinality's key names; ``g_ema`` only when an EMA was kept) and
  ``meta = {"model": {...}, "train": {...}, "step": n, ...}``, enough to rebuild the generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lfsgan.io import load_checkpoint, save_checkpoint
from lfsgan.train.state import pack, unpack

GENERATOR_KEYS = ("size", "style_dim", "n_mlp", "channel_multiplier", "channel_max", "lr_mlp", "modconv")
DISCRIMINATOR_KEYS = ("size", "channel_multiplier", "channel_max")
CHECKPOINT_KIND = "lfsgan.train.checkpoint"
FINAL_KIND = "lfsgan.train.final"


class StaleCheckpoint(ValueError):
    """A training checkpoint that belongs to another run (other kind, settings or inputs): not resumed."""


def build_models(model_cfg: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """``(Generator, Discriminator)`` from a model config: ``size`` plus the workflow's ``model`` keys
    (``style_dim, n_mlp, channel_multiplier, channel_max, lr_mlp, modconv``)."""
    from lfsgan.models import Discriminator, Generator

    model_cfg = dict(model_cfg)
    if "size" not in model_cfg:
        raise ValueError("model config has no 'size' (the image side in pixels; data.resolution in the workflow config)")
    unknown = sorted(set(model_cfg) - set(GENERATOR_KEYS))
    if unknown:
        raise ValueError(f"model config: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(GENERATOR_KEYS)}")
    G = Generator(**model_cfg)
    D = Discriminator(**{k: model_cfg[k] for k in DISCRIMINATOR_KEYS if k in model_cfg})
    return G, D


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.state_dict().items()}


def save_final(path: str | Path, G: nn.Module, D: nn.Module, g_ema: nn.Module | None, meta: dict[str, Any]) -> None:
    """Write ``final.pt``: ``g``, ``d`` and, when an EMA generator was kept, ``g_ema`` (``meta["ema"]`` says which)."""
    tensors = {"g": _state(G), "d": _state(D)}
    if g_ema is not None:
        tensors["g_ema"] = _state(g_ema)
    save_checkpoint(path, tensors, {**meta, "kind": FINAL_KIND, "ema": g_ema is not None})


def load_generator(
    path: str | Path, which: str | None = None, device: str | torch.device = "cpu", modconv: str | None = None
) -> nn.Module:
    """Rebuild the plain generator stored in a ``final.pt`` (or ``checkpoint.pt``) from its ``meta["model"]``.

    ``which``: ``"g_ema"`` or ``"g"``; by default ``g_ema`` when the run kept one, else ``g``. Returns the module in eval mode with grads off.
    A task generator with a method's adapters attached is rebuilt by that method's ``rebuild``.
    """
    tensors, meta = load_checkpoint(path)
    model_cfg = meta.get("model")
    if not model_cfg:
        raise ValueError(f"{path}: meta has no 'model' entry; it was not written by lfsgan.train (or lacks model kwargs)")
    which = which or ("g_ema" if "g_ema" in tensors else "g")
    if which not in tensors:
        raise KeyError(f"{path}: no '{which}' weights (has: {', '.join(sorted(tensors))})")
    if modconv is not None:
        model_cfg = {**model_cfg, "modconv": modconv}
    G, _ = build_models(model_cfg)
    try:
        G.load_state_dict(tensors[which])
    except RuntimeError as e:
        raise ValueError(
            f"{path}: '{which}' does not match a plain Generator{model_cfg} ({e}); if it carries a method's "
            "adapters, rebuild it with that method instead"
        ) from e
    G.to(device).eval().requires_grad_(False)
    return G


def save_training_checkpoint(
    path: str | Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    sampler: Any,
    rng: dict[str, torch.Tensor],
    loop: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """Atomically write the full resumable state (see the module docstring for the layout)."""
    tensors: dict[str, Any] = {name: _state(m) for name, m in modules.items()}
    skeletons: dict[str, Any] = {}
    for name, opt in optimizers.items():
        tensors[name], skeletons[name] = pack(opt.state_dict())
    tensors["sampler"], skeletons["sampler"] = pack(sampler.state_dict())
    tensors["rng"] = dict(rng)
    tensors["loop"] = dict(loop)
    save_checkpoint(path, tensors, {**meta, "kind": CHECKPOINT_KIND, "skeletons": skeletons})


def load_training_checkpoint(
    path: str | Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    sampler: Any,
    validate: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``path`` into ``modules``, ``optimizers`` and ``sampler`` in place; return ``(rng, loop, meta)``.

    ``validate(meta)`` runs before anything is modified and may raise to refuse the checkpoint; a file
    of another kind raises :class:`StaleCheckpoint`.
    """
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != CHECKPOINT_KIND:
        raise StaleCheckpoint(f"{path} is not a training checkpoint (kind={meta.get('kind')!r})")
    if validate is not None:
        validate(meta)
    for name, module in modules.items():
        if name not in tensors:
            raise KeyError(f"{path}: no '{name}' state; the run that wrote it had a different set-up (method, EMA)")
        try:
            module.load_state_dict(tensors[name])
        except RuntimeError as e:
            raise ValueError(f"{path}: '{name}' does not fit this run's model (other model config or method?): {e}") from e
    skeletons = meta["skeletons"]
    for name, opt in optimizers.items():
        opt.load_state_dict(unpack(tensors.get(name, {}), skeletons[name]))
    sampler.load_state_dict(unpack(tensors.get("sampler", {}), skeletons["sampler"]))
    return tensors["rng"], tensors["loop"], meta
