"""`lfsgan train-task`: one method learns one task, after its earlier tasks (rule `train_task`).

Resumes only an interrupted run with the same settings, data, source, earlier task states, Fisher and
code (their sha256 are part of the run's fingerprint; see :mod:`lfsgan.train.loop`). Started by
torchrun (``train.devices`` x ``nodes`` processes), it trains data-parallel as `lfsgan pretrain` does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.codedeps import code_fingerprint
from lfsgan.config import ConfigError, method_entry, method_train_config, split_run
from lfsgan.data import InfiniteSampler, images_sha256, load_prepared, to_float
from lfsgan.data.shots import run_shots
from lfsgan.io import load_checkpoint, sha256_file, write_json
from lfsgan.metrics import count_tensors
from lfsgan.methods.base import TaskContext
from lfsgan.train import TrainConfig, build_models, train
from lfsgan.train.distributed import check_world, process_group, shard_from_env
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._methods import load_task_states, method_for, task_source
from lfsgan.verbs._models import model_config

log = logging.getLogger("lfsgan")

#: replicate k of a method trains task i with seed i + 1000 k (replicate 0: seed i)
REPLICATE_SEED_STRIDE = 1000


def run(
    cfg: dict,
    method: str,
    task: str,
    source: str,
    data: str,
    out: str,
    previous: list[str] = (),
    fisher: str | None = None,
    no_resume: bool = False,
) -> None:
    if task not in cfg["tasks"]:
        raise ConfigError(f"task '{task}' is not in the config's tasks list {cfg['tasks']}")
    index = cfg["tasks"].index(task)
    if len(previous) != index:
        raise ValueError(
            f"task '{task}' is task {index + 1} of {cfg['tasks']}: it needs the {index} earlier task.pt files of "
            f"method '{method}' in order (got {len(previous)})"
        )
    device = setup_torch(cfg)
    kind = method_entry(cfg, method)["kind"]
    replicate = split_run(cfg, method)[1]
    seed = index + REPLICATE_SEED_STRIDE * replicate  # per position in the sequence and per replicate
    tcfg = TrainConfig.from_dict(
        {**method_train_config(cfg, method), "seed": seed, "device": str(device.type)},
        source=f"config keys 'task_train' + 'methods.{method}.train'",
    )
    g_src, d_src = task_source(cfg, method, source)
    dataset = load_prepared(data)
    shot_indices, shots, shot_rule = run_shots(dataset, cfg["data"], replicate)  # shots: uint8 [n_shots, 3, R, R]
    shots_record = {"shots": shot_indices, "shots_sha256": images_sha256(shots), "shot_rule": shot_rule}
    extras = {}
    if kind == "ewc":
        if fisher is None:
            raise ValueError(f"method '{method}' (ewc) needs --fisher (the output of `lfsgan fisher`)")
        extras["fisher"] = load_checkpoint(fisher)[0]["fisher"]
    ctx = TaskContext(
        task_index=index,
        task_name=task,
        source_g=g_src,
        source_d=d_src,
        previous=load_task_states(list(previous), kind),
        real_shots=to_float(shots),
        device=device,
        seed=seed,
        extras=extras,
    )
    shard = shard_from_env()
    check_world(tcfg.devices, tcfg.nodes, shard)
    sampler = InfiniteSampler(shots, tcfg.batch, seed=seed, hflip=cfg["data"]["hflip"], sampling=cfg["data"]["sampling"],
                              rank=shard.rank, world_size=shard.size)
    G, D = build_models(model_config(cfg))
    g_total = sum(p.numel() for p in G.parameters())
    impl = method_for(cfg, method)
    with process_group(shard, device, tcfg.collective_timeout):
        train(
            G,
            D,
            sampler,
            tcfg,
            out_dir=Path(out),
            method=impl,
            ctx=ctx,
            model_cfg=model_config(cfg),
            resume=not no_resume,
            code=code_fingerprint("train-task"),
            inputs={
                "data": {"images_sha256": dataset.manifest["images_sha256"], **shots_record}
                | {"hflip": cfg["data"]["hflip"], "sampling": cfg["data"]["sampling"]},
                "source_sha256": sha256_file(source),
                "previous_sha256": [sha256_file(p) for p in previous],
                "fisher_sha256": sha256_file(fisher) if extras.get("fisher") is not None else None,
            },
            meta={
                "workflow": {"stage": "task", "method": method, "kind": kind, "task": task, "task_index": index, "replicate": replicate},
                "data": {"path": str(data), "images_sha256": dataset.manifest["images_sha256"], **shots_record},
                "versions": versions(),
            },
            shard=shard,
        )
    if not shard.is_main:
        return  # rank 0 writes
    state, meta = load_checkpoint(Path(out) / "task.pt")
    added = count_tensors(state)
    write_json(
        Path(out) / "params.json",
        {
            "method": method,
            "kind": kind,
            "task": task,
            "task_index": index,
            "params_added": added,
            "generator_params": g_total,
            "fraction_of_generator": added / g_total,
            "stored_tensors": sorted(_names(state)),
        },
    )
    log.info("task %s/%s: %d parameters stored (%.3f%% of G)", method, task, added, 100 * added / g_total)


def _names(state: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in state.items():
        out += _names(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return out
