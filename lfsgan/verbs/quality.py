"""`lfsgan quality`: the quality read-out of a source generator (rule `quality_source`).

Task generators get theirs inside `lfsgan evaluate` (the ``quality`` block of each metrics JSON);
this verb reads the source's samples (`lfsgan sample` without a method: the evaluation's latents)
as the source domain with the demo CNN's domain and digit heads (:mod:`lfsgan.metrics.quality`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.data import load_prepared
from lfsgan.io import load_checkpoint, write_json
from lfsgan.verbs._common import setup_torch
from lfsgan.verbs.evaluate import quality_block

log = logging.getLogger("lfsgan")


def run(cfg: dict, samples: str, data: str, extractor: str | None, out: str) -> None:
    setup_torch(cfg)
    tensors, protocol = load_checkpoint(Path(samples) / "samples.pt")
    if protocol.get("method") is not None:
        raise ValueError(f"{samples}: samples of method '{protocol['method']}', not of the source; "
                         "give the folder written by `lfsgan sample` without --method")
    domain = Path(data).name
    block = quality_block(cfg, extractor, tensors["images"], load_prepared(data), domain)
    block.setdefault("protocol", {})["samples"] = {
        k: protocol.get(k) for k in ("n_samples", "seed", "truncation", "latents", "z_sha256", "generator")
    }
    record = {"source": Path(samples).name, "domain": domain, "quality": block}
    write_json(out, record)
    if block.get("collapsed"):
        log.warning("source %s: COLLAPSED — %s", record["source"], "; ".join(block["collapse_reasons"]))
    log.info("source %s quality: %s", record["source"], {k: v for k, v in block.items() if k != "protocol"})
