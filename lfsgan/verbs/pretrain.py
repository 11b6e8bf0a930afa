"""`lfsgan pretrain`: the source GAN on the source domain, one seed (rule `pretrain_source`).

Resumes only an interrupted run with the same settings, data and code (see :mod:`lfsgan.train.loop`).
Started by torchrun (``source.train.devices`` x ``nodes`` processes), each process trains on its share
of every batch and rank 0 writes (see :mod:`lfsgan.train.distributed`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lfsgan.codedeps import code_fingerprint
from lfsgan.data import InfiniteSampler, load_prepared
from lfsgan.train import TrainConfig, build_models, train
from lfsgan.train.distributed import check_world, process_group, shard_from_env
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._models import load_states, model_config
from lfsgan.verbs.install_source import pinned_source

log = logging.getLogger("lfsgan")


def continue_from(cfg: dict, seed: int, G: torch.nn.Module, D: torch.nn.Module) -> dict | None:
    """Load the ``source.continue_from`` entry of ``seed`` (if any) into ``G`` and ``D``: its raw ``g`` and its
    ``d``, checked like a shipped source (sha256 first, tensors only, same seed, the config's model).
    Returns ``{"path", "sha256", "step"}`` of that file for the run's identity, or None."""
    entry = next((e for e in cfg["source"]["continue_from"] if e["seed"] == seed), None)
    if entry is None:
        return None
    path = entry["path"]
    tensors, meta = pinned_source(path, entry["sha256"], seed, "source.continue_from")
    load_states({"g": G, "d": D}, tensors, model_config(cfg), path)
    log.info("continuing %s (sha256 %s, step %s) with source.train", path, entry["sha256"], meta.get("step"))
    return {"path": str(path), "sha256": entry["sha256"], "step": meta.get("step")}


def run(cfg: dict, seed: int, data: str, out: str, no_resume: bool = False) -> None:
    device = setup_torch(cfg)
    dataset = load_prepared(data)
    tcfg = TrainConfig.from_dict(
        {**cfg["source"]["train"], "seed": seed, "device": str(device.type)}, source="config key 'source.train'"
    )
    shard = shard_from_env()
    check_world(tcfg.devices, tcfg.nodes, shard)
    data_identity = {"images_sha256": dataset.manifest["images_sha256"], "hflip": cfg["data"]["hflip"], "sampling": cfg["data"]["sampling"]}
    with process_group(shard, device, tcfg.collective_timeout):
        torch.manual_seed(seed)  # weight initialisation, the same in every process
        G, D = build_models(model_config(cfg))
        start = continue_from(cfg, seed, G, D)  # None: from these random weights
        sampler = InfiniteSampler(dataset.images, tcfg.batch, seed=seed, hflip=cfg["data"]["hflip"], sampling=cfg["data"]["sampling"],
                                  rank=shard.rank, world_size=shard.size)
        result = train(
            G,
            D,
            sampler,
            tcfg,
            out_dir=Path(out),
            model_cfg=model_config(cfg),
            resume=not no_resume,
            code=code_fingerprint("pretrain"),
            inputs={"data": data_identity, **({"continue_from": start} if start else {})},
            meta={
                "workflow": {"stage": "source", "seed": seed, "domain": cfg["source"]["domain"],
                             **({"continued_from": start} if start else {})},
                "data": {"path": str(data), "images_sha256": dataset.manifest["images_sha256"]},
                "versions": versions(),
            },
            shard=shard,
        )
    log.info("pretraining done: %s", result)
