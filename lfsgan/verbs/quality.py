"""`lfsgan quality`: the quality read-out of a source generator (rule `quality_source`).

Task generators get theirs inside `lfsgan evaluate` (the ``quality`` block of each metrics JSON);
this verb samples a source checkpoint with the evaluation's latents and reads it as the source
domain with the demo CNN's domain and digit heads (:mod:`lfsgan.metrics.quality`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.data import load_prepared
from lfsgan.io import write_json
from lfsgan.train import build_models
from lfsgan.verbs._common import setup_torch
from lfsgan.verbs._models import load_source, model_config
from lfsgan.verbs.evaluate import quality_block
from lfsgan.verbs.sample import generate

log = logging.getLogger("lfsgan")


def run(cfg: dict, source: str, data: str, extractor: str | None, out: str) -> None:
    device = setup_torch(cfg)
    ev = cfg["evaluation"]
    g, _d, meta = load_source(source)
    G, _D = build_models(model_config(cfg))
    G.load_state_dict(g)
    G = G.eval().requires_grad_(False).to(device)
    fake = generate(G, ev["n_samples"], seed=ev["seed"], batch_size=ev["batch_size"], truncation=ev["truncation"], device=device)
    domain = Path(data).name
    block = quality_block(cfg, extractor, fake, load_prepared(data), domain)
    block.setdefault("protocol", {})["samples"] = {
        "n_samples": ev["n_samples"], "seed": ev["seed"], "truncation": ev["truncation"],
        "latents": "z ~ N(0, I) from torch.Generator(seed); noise: random, torch.manual_seed(seed) (as `lfsgan sample`)",
        "generator": "g_ema of the source checkpoint when kept, else g",
    }
    record = {"source": str(Path(source).parent.name), "domain": domain, "quality": block}
    write_json(out, record)
    if block.get("collapsed"):
        log.warning("source %s: COLLAPSED — %s", record["source"], "; ".join(block["collapse_reasons"]))
    log.info("source %s quality: %s", record["source"], {k: v for k, v in block.items() if k != "protocol"})
