"""Shared by the verbs that build generators: the model config and the source weights.

Task chains (which need the method registry) are in :mod:`lfsgan.verbs._methods`, so that verbs that
only build or load a source do not import every method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lfsgan.io import load_checkpoint, state_mismatch


def model_config(cfg: dict) -> dict[str, Any]:
    """Generator kwargs: the config's ``model`` section plus ``size = data.resolution``."""
    return {"size": cfg["data"]["resolution"], **cfg["model"]}


def load_source(
    path: str | Path, model_cfg: dict[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """``(g, d, meta)`` of a source ``final.pt``; ``g`` is the EMA generator when the run kept one
    (the base every method adapts, at training and at sampling time alike).

    With ``model_cfg`` (:func:`model_config`), ``g`` and ``d`` must have exactly the keys and shapes of
    that model, else a ``ValueError`` names the file and what differs. Non-finite weights are refused
    by :func:`lfsgan.io.load_checkpoint`.
    """
    tensors, meta = load_checkpoint(path)
    g = tensors.get("g_ema", tensors.get("g"))
    if g is None or "d" not in tensors:
        raise ValueError(f"{path}: not a source checkpoint (needs 'g' or 'g_ema', and 'd'); run `lfsgan pretrain` or `lfsgan import-source`")
    if model_cfg is not None:
        from lfsgan.train import build_models

        G, D = build_models(model_cfg)
        for name, module, state in (("g", G, g), ("d", D, tensors["d"])):
            mismatch = state_mismatch(module.state_dict(), state)
            if mismatch:
                raise ValueError(
                    f"{path}: '{name}' does not fit the config's model {model_cfg} ({mismatch}); set data.resolution "
                    "and the model keys to the source's architecture, or rerun the source stage"
                )
    return g, tensors["d"], meta
