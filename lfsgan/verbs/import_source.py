"""`lfsgan import-source`: a rosinality-format StyleGAN2 checkpoint becomes the source (rule `import_source`).

The field's shared FFHQ-256 file holds ``{"g", "d", "g_ema", "g_optim", "d_optim", "args"}``; ``args``
is a pickled ``argparse.Namespace``, which ``weights_only`` loading refuses. It is skipped (and said
so in the log); the three state dicts must match the config's model exactly (``strict=True``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.io import load_foreign_checkpoint
from lfsgan.verbs._common import versions
from lfsgan.verbs._models import write_source

log = logging.getLogger("lfsgan")


def run(cfg: dict, checkpoint: str, out: str) -> None:
    payload, skipped = load_foreign_checkpoint(checkpoint)
    for s in skipped:
        log.warning("%s: skipped %s", checkpoint, s)
    missing = [k for k in ("g_ema", "d") if k not in payload]
    if missing:
        raise ValueError(f"{checkpoint}: no {' or '.join(missing)} state dict (keys: {', '.join(sorted(payload))}); not a rosinality StyleGAN2 checkpoint")
    ignored = sorted(set(payload) - {"g", "d", "g_ema"})
    if ignored:
        log.info("not imported (training state of the other codebase): %s", ", ".join(ignored))
    states = {k: payload[k] for k in ("g", "d", "g_ema") if k in payload}
    meta = {"workflow": {"stage": "source", "imported_from": str(checkpoint), "skipped": skipped}, "versions": versions()}
    write_source(cfg, states, out, meta, origin=str(checkpoint))
    log.info("imported %s -> %s", checkpoint, Path(out) / "final.pt")
