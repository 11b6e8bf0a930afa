"""`lfsgan install-source`: a shipped, already pretrained source becomes one seed's source (rule `install_source`).

The offline demo's sources are pretrained once with ``config/source-demo.yaml`` and shipped in git
(``data/sources/``); ``source.checkpoints`` pins each file's sha256. The file is trusted only after its
sha256 matches the config, it loads with ``weights_only=True`` (tensors and JSON metadata only), it
is an lfsgan ``final.pt`` of the same seed, and its ``g``, ``d`` and ``g_ema`` fit the config's model
exactly; then it is written to the run folder as if pretrained there.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.io import load_checkpoint, sha256_file
from lfsgan.train.checkpoint import FINAL_KIND
from lfsgan.verbs._common import versions
from lfsgan.verbs._models import write_source

log = logging.getLogger("lfsgan")


def shipped_entry(cfg: dict, seed: int) -> dict:
    """The ``source.checkpoints`` entry of ``seed``; a clear error when the config lists none."""
    for entry in cfg["source"]["checkpoints"]:
        if entry["seed"] == seed:
            return entry
    raise ValueError(f"config key 'source.checkpoints' has no entry for seed {seed}; add {{seed: {seed}, path: ..., sha256: ...}}")


def pinned_source(checkpoint: str | Path, expected_sha256: str, seed: int, key: str) -> tuple[dict, dict]:
    """``(tensors, meta)`` of a source ``final.pt`` that config key ``key`` pins for ``seed``: read only after its
    sha256 matches, tensors only (``weights_only``), and only if it is an lfsgan source of that seed."""
    found = sha256_file(checkpoint)
    if found != expected_sha256:
        raise ValueError(
            f"{checkpoint}: sha256 {found} differs from {key} (seed {seed}) {expected_sha256}; "
            "restore the shipped file (`git checkout -- <file>`) or, after reproducing it (README), update the sha256"
        )
    tensors, meta = load_checkpoint(checkpoint)  # weights_only
    if meta.get("kind") != FINAL_KIND or not {"g", "d", "g_ema"} <= set(tensors):
        raise ValueError(f"{checkpoint}: not an lfsgan source final.pt with g, d and g_ema (kind={meta.get('kind')!r}, keys {sorted(tensors)})")
    trained_seed = (meta.get("workflow") or {}).get("seed")
    if trained_seed != seed:
        raise ValueError(f"{checkpoint}: pretrained with seed {trained_seed}, listed for seed {seed} in {key}")
    return tensors, meta


def run(cfg: dict, seed: int, checkpoint: str, out: str) -> None:
    sha256 = shipped_entry(cfg, seed)["sha256"]
    tensors, meta = pinned_source(checkpoint, sha256, seed, "source.checkpoints")
    states = {k: tensors[k] for k in ("g", "d", "g_ema")}
    installed = {
        "workflow": {**meta["workflow"], "installed_from": str(checkpoint), "sha256": sha256},
        "train": meta.get("train"),
        "step": meta.get("step"),
        "data": meta.get("data"),
        "pretrained_with": meta.get("versions"),
        "versions": versions(),
    }
    write_source(cfg, states, out, installed, origin=str(checkpoint))
    log.info("installed %s (sha256 %s) -> %s", checkpoint, sha256, Path(out) / "final.pt")
