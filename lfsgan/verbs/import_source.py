"""`lfsgan import-source`: a rosinality-format StyleGAN2 checkpoint becomes the source (rule `import_source`).

The field's shared FFHQ-256 file holds ``{"g", "d", "g_ema", "g_optim", "d_optim", "args"}``; ``args``
is a pickled ``argparse.Namespace``, which ``weights_only`` loading refuses. It is skipped (and said
so in the log); the three state dicts must match the config's model exactly (``strict=True``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lfsgan.io import load_foreign_checkpoint, state_mismatch
from lfsgan.train import build_models
from lfsgan.train.checkpoint import save_final
from lfsgan.train.logs import save_grid
from lfsgan.verbs._common import versions
from lfsgan.verbs._models import model_config

log = logging.getLogger("lfsgan")


def run(cfg: dict, checkpoint: str, out: str) -> None:
    payload, skipped = load_foreign_checkpoint(checkpoint)
    for s in skipped:
        log.warning("%s: skipped %s", checkpoint, s)
    missing = [k for k in ("g_ema", "d") if k not in payload]
    if missing:
        raise ValueError(f"{checkpoint}: no {' or '.join(missing)} state dict (keys: {', '.join(sorted(payload))}); not a rosinality StyleGAN2 checkpoint")
    mcfg = model_config(cfg)
    G, D = build_models(mcfg)
    G_ema, _ = build_models(mcfg)
    for name, module in (("g_ema", G_ema), ("g", G), ("d", D)):
        if name not in payload:
            continue
        mismatch = state_mismatch(module.state_dict(), payload[name]) if isinstance(payload[name], dict) else "not a state dict"
        if mismatch:
            raise ValueError(
                f"{checkpoint}: '{name}' does not fit the config's model {mcfg} ({mismatch}); "
                "set data.resolution and the model keys to the checkpoint's architecture"
            )
        module.load_state_dict(payload[name], strict=True)
    if "g" not in payload:
        G.load_state_dict(G_ema.state_dict())
    ignored = sorted(set(payload) - {"g", "d", "g_ema"})
    if ignored:
        log.info("not imported (training state of the other codebase): %s", ", ".join(ignored))
    out = Path(out)
    save_final(
        out / "final.pt",
        G,
        D,
        G_ema,
        {"model": mcfg, "workflow": {"stage": "source", "imported_from": str(checkpoint), "skipped": skipped}, "versions": versions()},
    )
    with torch.no_grad():
        z = torch.randn(16, G_ema.style_dim, generator=torch.Generator().manual_seed(0))
        save_grid(G_ema.eval()(z, noise_mode="const"), out / "samples.png")
    log.info("imported %s -> %s", checkpoint, out / "final.pt")
