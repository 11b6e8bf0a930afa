"""`lfsgan pretrain`: the source GAN on the source domain, one seed (rule `pretrain_source`).

Resumes only an interrupted run with the same settings, data and code (see :mod:`lfsgan.train.loop`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lfsgan.codedeps import code_fingerprint
from lfsgan.data import InfiniteSampler, load_prepared
from lfsgan.train import TrainConfig, build_models, train
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._models import model_config

log = logging.getLogger("lfsgan")


def run(cfg: dict, seed: int, data: str, out: str, no_resume: bool = False) -> None:
    device = setup_torch(cfg)
    dataset = load_prepared(data)
    tcfg = TrainConfig.from_dict(
        {**cfg["source"]["train"], "seed": seed, "device": str(device.type)}, source="config key 'source.train'"
    )
    torch.manual_seed(seed)  # weight initialisation
    G, D = build_models(model_config(cfg))
    sampler = InfiniteSampler(dataset.images, tcfg.batch, seed=seed, hflip=cfg["data"]["hflip"], sampling=cfg["data"]["sampling"])
    result = train(
        G,
        D,
        sampler,
        tcfg,
        out_dir=Path(out),
        model_cfg=model_config(cfg),
        resume=not no_resume,
        code=code_fingerprint("pretrain"),
        inputs={"data": {"images_sha256": dataset.manifest["images_sha256"], "hflip": cfg["data"]["hflip"], "sampling": cfg["data"]["sampling"]}},
        meta={
            "workflow": {"stage": "source", "seed": seed, "domain": cfg["source"]["domain"]},
            "data": {"path": str(data), "images_sha256": dataset.manifest["images_sha256"]},
            "versions": versions(),
        },
    )
    log.info("pretraining done: %s", result)
