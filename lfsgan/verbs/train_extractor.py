"""`lfsgan train-extractor`: the offline demo's feature extractor for FID/KID (non-standard)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lfsgan.data import PreparedDataset, load_prepared
from lfsgan.data.demo import ALL_DIGITS, READOUT_STYLES, demo_domain, render_style, select_rows
from lfsgan.data.mnist import load_mnist_5k
from lfsgan.metrics import train_demo_extractor
from lfsgan.verbs._common import setup_torch


def digit_renders(sets: list[PreparedDataset], cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Every MNIST digit 0–9 in the style of each built-in domain, except the rows a domain of that
    style already holds (an image is never both a domain image and a digit-only copy of itself), then
    every digit once more in each of :data:`~lfsgan.data.demo.READOUT_STYLES` (random renderings).

    Returns (images uint8 [M, 3, R, R], digits int64 [M], style index int64 [M], style names); the
    styles of the domains themselves come first, in the order of ``sets``, the read-out styles last.
    """
    styles: dict[str, list[dict]] = {}
    for s in sets:
        recipe = s.manifest.get("source") or {}
        if recipe.get("kind") == "builtin" and recipe.get("style"):
            styles.setdefault(recipe["style"], []).append(recipe)
    if not styles:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(0, 3, cfg["data"]["resolution"], cfg["data"]["resolution"], dtype=torch.uint8), empty, empty, []
    labels = load_mnist_5k().labels
    images, digits, style_ids = [], [], []
    for i, (style, recipes) in enumerate(styles.items()):
        held = np.concatenate([demo_domain(r["name"]).rows() for r in recipes])
        rows = np.setdiff1d(select_rows(ALL_DIGITS), held)  # ascending
        images.append(render_style(style, rows, demo_domain(recipes[0]["name"]).seed,
                                   cfg["data"]["resolution"], cfg["data"]["resize_filter"]))
        digits.append(torch.from_numpy(labels[rows].astype(np.int64)))
        style_ids.append(torch.full((len(rows),), i, dtype=torch.long))
    every = select_rows(ALL_DIGITS)
    for i, style in enumerate(READOUT_STYLES, start=len(styles)):
        images.append(render_style(style, every, 0, cfg["data"]["resolution"], cfg["data"]["resize_filter"]))
        digits.append(torch.from_numpy(labels[every].astype(np.int64)))
        style_ids.append(torch.full((len(every),), i, dtype=torch.long))
    return torch.cat(images), torch.cat(digits), torch.cat(style_ids), [*styles, *READOUT_STYLES]


@dataclass
class ExtractorInputs:
    """What the demo CNN learns from: every prepared set (one domain label each) and, when every set
    records its digit labels, the digit-only renderings of :func:`digit_renders` (domain label -1)."""

    images: torch.Tensor  # uint8 [M, 3, R, R]
    labels: torch.Tensor  # int64 [M], domain index or -1
    digits: torch.Tensor | None  # int64 [M] or None
    styles: torch.Tensor | None  # int64 [M], index into style_names (-1: a set of no built-in style)
    style_names: list[str] | None
    label_names: list[str]
    data_identity: list[dict]  # each prepared set's name, images_sha256 and labels_sha256

    def sha256(self) -> str:
        """sha256 over every tensor's bytes and the names, in a fixed order: two extractors trained
        with the same settings (:func:`extractor_settings`) on inputs of equal sha256, by the same
        software, are the same weights file."""
        h = hashlib.sha256()
        for t in (self.images, self.labels, self.digits, self.styles):
            h.update(b"-" if t is None else memoryview(t.contiguous().numpy()).cast("B"))
        h.update(json.dumps([self.label_names, self.style_names]).encode())
        return h.hexdigest()


def extractor_inputs(cfg: dict, data: list[str]) -> ExtractorInputs:
    """The training inputs of the demo CNN from the prepared domain folders ``data`` (one class each)."""
    sets = [load_prepared(d) for d in data]
    images = torch.cat([s.images for s in sets])
    labels = torch.cat([torch.full((len(s.images),), i, dtype=torch.long) for i, s in enumerate(sets)])
    digits = torch.cat([s.labels for s in sets]) if all(s.labels is not None for s in sets) else None
    styles = style_names = None
    if digits is not None:
        extra, extra_digits, extra_styles, style_names = digit_renders(sets, cfg)
        own_style = [style_names.index(s.manifest["source"]["style"]) if s.manifest.get("source", {}).get("style") in style_names
                     else -1 for s in sets]
        styles = torch.cat([torch.full((len(s.images),), k, dtype=torch.long) for s, k in zip(sets, own_style)] + [extra_styles])
        images = torch.cat([images, extra])
        labels = torch.cat([labels, torch.full((len(extra),), -1, dtype=torch.long)])
        digits = torch.cat([digits, extra_digits])
    identity = [{"name": Path(d).name, "images_sha256": s.manifest["images_sha256"],
                 "labels_sha256": (s.manifest.get("labels") or {}).get("sha256")} for d, s in zip(data, sets)]
    return ExtractorInputs(images, labels, digits, styles, style_names, [Path(d).name for d in data], identity)


def extractor_settings(cfg: dict) -> dict:
    """The training settings `lfsgan train-extractor` passes to :func:`~lfsgan.metrics.train_demo_extractor`."""
    return {"seed": 0, "steps": cfg["evaluation"]["fid"]["extractor_steps"], "batch_size": 64, "lr": 1e-3, "holdout": 0.1}


def run(cfg: dict, data: list[str], out: str) -> None:
    """A small CNN trained to tell the demo's domains apart and, when every prepared set records its
    digit labels, the digits (the quality read-out's second head) — learnt from every digit 0–9 in
    every built-in style, so a digit reads the same in any style. Its penultimate features feed
    torch-fidelity; values computed with it are labelled not comparable with published FID."""
    setup_torch(cfg)
    inputs = extractor_inputs(cfg, data)
    train_demo_extractor(
        inputs.images,
        inputs.labels,
        out,
        **extractor_settings(cfg),
        label_names=inputs.label_names,
        digits=inputs.digits,
        styles=inputs.styles,
        style_names=inputs.style_names,
        data_identity=inputs.data_identity,
        inputs_sha256=inputs.sha256(),
    )
