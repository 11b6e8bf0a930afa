"""Shared by the verbs that build generators: the model config and the source weights.

Task chains (which need the method registry) are in :mod:`lfsgan.verbs._methods`, so that verbs that
only build or load a source do not import every method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lfsgan.io import load_checkpoint, state_mismatch
from lfsgan.train.checkpoint import build_models, save_final
from lfsgan.train.logs import save_grid


def model_config(cfg: dict) -> dict[str, Any]:
    """Generator kwargs: the config's ``model`` section plus ``size = data.resolution``."""
    return {"size": cfg["data"]["resolution"], **cfg["model"]}


#: which source generator a method's tasks start from: the EMA average or the raw training weights
SOURCE_GENERATORS = ("g_ema", "g")


def load_source(
    path: str | Path, model_cfg: dict[str, Any] | None = None, generator: str = "g_ema"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """``(g, d, meta)`` of a source ``final.pt``. ``g`` is the ``generator`` entry: ``"g_ema"`` (the
    EMA generator, or ``g`` when the run kept none; what every method adapts by default and what
    samples are drawn from) or ``"g"`` (the raw training weights, which the released LFS-GAN
    train.py loads: ``options.base: g``).

    With ``model_cfg`` (:func:`model_config`), ``g`` and ``d`` must have exactly the keys and shapes of
    that model, else a ``ValueError`` names the file and what differs. Non-finite weights are refused
    by :func:`lfsgan.io.load_checkpoint`.
    """
    if generator not in SOURCE_GENERATORS:
        raise ValueError(f"source generator must be one of {list(SOURCE_GENERATORS)}, got {generator!r}")
    tensors, meta = load_checkpoint(path)
    g = tensors.get("g_ema", tensors.get("g")) if generator == "g_ema" else tensors.get("g")
    if g is None and generator == "g" and "g_ema" in tensors:
        raise ValueError(f"{path}: has no raw generator 'g' (only 'g_ema'); set the method's options.base to g_ema")
    if g is None or "d" not in tensors:
        raise ValueError(f"{path}: not a source checkpoint (needs 'g' or 'g_ema', and 'd'); run `lfsgan pretrain` or `lfsgan import-source`")
    if model_cfg is not None:
        G, D = build_models(model_cfg)
        load_states({"g": G, "d": D}, {"g": g, "d": tensors["d"]}, model_cfg, str(path))
    return g, tensors["d"], meta


def load_states(modules: dict[str, torch.nn.Module], states: dict, model_cfg: dict, origin: str) -> None:
    """Load ``states[name]`` into ``modules[name]`` (``strict=True``) for every name both hold, after checking
    that it fits the config's model exactly; ``origin`` names the file the states came from in errors."""
    for name, module in modules.items():
        if name not in states:
            continue
        state = states[name]
        mismatch = state_mismatch(module.state_dict(), state) if isinstance(state, dict) else "not a state dict"
        if mismatch:
            raise ValueError(
                f"{origin}: '{name}' does not fit the config's model {model_cfg} ({mismatch}); "
                "set data.resolution and the model keys to the checkpoint's architecture, or rerun the source stage"
            )
        module.load_state_dict(state, strict=True)


def write_source(cfg: dict, states: dict[str, dict[str, torch.Tensor]], out: str | Path, meta: dict, origin: str) -> None:
    """Load ``states`` (``g_ema`` and ``d``, optionally ``g``; ``g`` defaults to ``g_ema``) into the config's
    model with ``strict=True`` and write the source run folder ``out``: ``final.pt`` and ``samples.png``
    (16 fixed latents, constant noise). ``origin`` names the file the states came from in errors."""
    mcfg = model_config(cfg)
    G, D = build_models(mcfg)
    G_ema, _ = build_models(mcfg)
    load_states({"g_ema": G_ema, "g": G, "d": D}, states, mcfg, origin)
    if "g" not in states:
        G.load_state_dict(G_ema.state_dict())
    out = Path(out)
    save_final(out / "final.pt", G, D, G_ema, {**meta, "model": mcfg})
    with torch.no_grad():
        z = torch.randn(16, G_ema.style_dim, generator=torch.Generator().manual_seed(0))
        save_grid(G_ema.eval()(z, noise_mode="const"), out / "samples.png")



def source_discriminators(cfg: dict, sources: list[str], device: torch.device) -> list[torch.nn.Module]:
    """The discriminator of each source ``final.pt``, built from the config's model and checked to fit it
    (:func:`load_source` names the file otherwise); the endpoints' critics of merging and the STE search."""
    out = []
    for path in sources:
        _, d, _ = load_source(path, model_config(cfg))
        D = build_models(model_config(cfg))[1]
        D.load_state_dict(d, strict=True)
        out.append(D.to(device))
    return out
