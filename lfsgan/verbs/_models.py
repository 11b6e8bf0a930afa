"""Shared by the verbs that build or rebuild generators: model config, source weights, task chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lfsgan.io import load_checkpoint
from lfsgan.methods import make_method
from lfsgan.methods.base import Method
from lfsgan.train import build_models
from lfsgan.train.checkpoint import save_final
from lfsgan.train.logs import save_grid


def model_config(cfg: dict) -> dict[str, Any]:
    """Generator kwargs: the config's ``model`` section plus ``size = data.resolution``."""
    return {"size": cfg["data"]["resolution"], **cfg["model"]}


def load_source(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """``(g, d, meta)`` of a source ``final.pt``; ``g`` is the EMA generator when the run kept one
    (the base every method adapts, at training and at sampling time alike)."""
    tensors, meta = load_checkpoint(path)
    g = tensors.get("g_ema", tensors.get("g"))
    if g is None or "d" not in tensors:
        raise ValueError(f"{path}: not a source checkpoint (needs 'g' or 'g_ema', and 'd'); run `lfsgan pretrain` or `lfsgan import-source`")
    return g, tensors["d"], meta


def write_source(cfg: dict, states: dict[str, dict[str, torch.Tensor]], out: str | Path, meta: dict, origin: str) -> None:
    """Load ``states`` (``g_ema`` and ``d``, optionally ``g``; ``g`` defaults to ``g_ema``) into the config's
    model with ``strict=True`` and write the source run folder ``out``: ``final.pt`` and ``samples.png``
    (16 fixed latents, constant noise). ``origin`` names the file the states came from in errors."""
    mcfg = model_config(cfg)
    G, D = build_models(mcfg)
    G_ema, _ = build_models(mcfg)
    for name, module in (("g_ema", G_ema), ("g", G), ("d", D)):
        if name not in states:
            continue
        try:
            module.load_state_dict(states[name], strict=True)
        except RuntimeError as e:
            raise ValueError(
                f"{origin}: '{name}' does not fit the config's model {mcfg} ({str(e).splitlines()[0]}); "
                "set data.resolution and the model keys to the checkpoint's architecture"
            ) from e
    if "g" not in states:
        G.load_state_dict(G_ema.state_dict())
    out = Path(out)
    save_final(out / "final.pt", G, D, G_ema, {**meta, "model": mcfg})
    with torch.no_grad():
        z = torch.randn(16, G_ema.style_dim, generator=torch.Generator().manual_seed(0))
        save_grid(G_ema.eval()(z, noise_mode="const"), out / "samples.png")


def method_for(cfg: dict, name: str) -> Method:
    entry = cfg["methods"][name]
    return make_method(entry["kind"], entry.get("options", {}))


def load_task_states(paths: list[str]) -> list[dict[str, Any]]:
    return [load_checkpoint(p)[0] for p in paths]


def rebuild_task_generator(cfg: dict, method_name: str, source: str, states: list[str], task_position: int) -> nn.Module:
    """The generator of task ``task_position`` (0-based) after the method learnt ``len(states)`` tasks.

    Adapter methods (LeFT, Piggyback) rebuild task s from the source and the states of tasks 0..s;
    sequential methods (fine-tuning, EWC) use the last stored generator: "after task t" means the
    weights after t, whatever task they are asked to generate.
    """
    g, _d, _ = load_source(source)
    G, _D = build_models(model_config(cfg))
    method = method_for(cfg, method_name)
    chain = load_task_states(states)
    upto = chain[: task_position + 1] if method.isolates_tasks else chain
    method.rebuild(G, g, upto)
    return G.eval().requires_grad_(False)
