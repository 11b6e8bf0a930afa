"""`lfsgan train-extractor`: the offline demo's feature extractor for FID/KID (non-standard)."""

from __future__ import annotations

from pathlib import Path

import torch

from lfsgan.data import load_prepared
from lfsgan.metrics import train_demo_extractor
from lfsgan.verbs._common import setup_torch


def run(cfg: dict, data: list[str], out: str) -> None:
    """A small CNN trained to tell the demo's domains apart (and, when every prepared set records its
    digit labels, the digits: the quality read-out's second head); its penultimate features feed
    torch-fidelity. Values computed with it are labelled not comparable with published FID."""
    setup_torch(cfg)
    sets = [load_prepared(d) for d in data]
    images = torch.cat([s.images for s in sets])
    labels = torch.cat([torch.full((len(s.images),), i, dtype=torch.long) for i, s in enumerate(sets)])
    digits = torch.cat([s.labels for s in sets]) if all(s.labels is not None for s in sets) else None
    train_demo_extractor(
        images,
        labels,
        out,
        seed=0,
        steps=cfg["evaluation"]["fid"]["extractor_steps"],
        label_names=[Path(d).name for d in data],
        digits=digits,
        data_identity=[{"name": Path(d).name, "images_sha256": s.manifest["images_sha256"],
                        "labels_sha256": (s.manifest.get("labels") or {}).get("sha256")} for d, s in zip(data, sets)],
    )
