"""`lfsgan quality`: the quality read-out of a source generator (rule `quality_source`).

Task generators get theirs inside `lfsgan evaluate` (the ``quality`` block of each metrics JSON);
this verb reads the source's samples (`lfsgan sample` without a method: the evaluation's latents)
as the source domain with the demo CNN's domain and digit heads (:mod:`lfsgan.metrics.quality`),
and, for every built-in task, the same samples redrawn by that task's own style recipe
(:func:`lfsgan.data.demo.restyle`) read as the task's domain: what a task generator that kept every
latent's digit and took the style perfectly would read — the ceiling of its coverage and top share.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.data import load_prepared
from lfsgan.io import load_checkpoint, write_json
from lfsgan.verbs._common import setup_torch
from lfsgan.verbs.evaluate import quality_block

log = logging.getLogger("lfsgan")


def run(cfg: dict, samples: str, data: str, extractor: str | None, out: str, task_data: list[str] = ()) -> None:
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
    record = {"source": Path(samples).name, "domain": domain, "quality": block,
              "restyled": restyled_blocks(cfg, tensors["images"], domain, task_data, extractor)}
    write_json(out, record)
    if block.get("collapsed"):
        log.warning("source %s: COLLAPSED — %s", record["source"], "; ".join(block["collapse_reasons"]))
    log.info("source %s quality: %s", record["source"], {k: v for k, v in block.items() if k != "protocol"})


def restyled_blocks(cfg: dict, images, source_domain: str, task_data: list[str], extractor: str | None) -> dict:
    """``{task: quality block}`` of the source's samples redrawn in each built-in task's style; tasks
    that are not built-in demo domains (or a source that is not the plain demo style) are left out."""
    from lfsgan.data.demo import restyle, task_styles

    folders = {Path(data).name: data for data in task_data}
    out = {}
    for task, style in task_styles(cfg["data"]["domains"], source_domain, folders).items():
        block = quality_block(cfg, extractor, restyle(images, style.style, seed=style.seed), load_prepared(folders[task]), task)
        block.setdefault("protocol", {})["restyled"] = (
            f"the source's samples redrawn by the '{style.name}' recipe (style '{style.style}', seed {style.seed}; ink mask = "
            "channel mean): a perfect restyling, the ceiling of a task generator's read-out from this source")
        out[task] = block
    return out
