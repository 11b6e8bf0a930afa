"""One process of a tiny data-parallel training run, for tests/test_distributed.py (started by torchrun,
or plainly for one process).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_worker.py OUT [options]

Options: ``--iterations N``; ``--batch B`` (the total batch); ``--no-cross-rank-coupling`` (the
discriminator's minibatch-stddev groups of one image and the generator's noise inputs frozen at 0, so
that a 2-process run computes what a 1-process run does, up to the order of float sums);
``--stall-rank R --stall-at-step S`` (rank R writes its pid to ``--stall-file`` after step S and then
waits to be killed); ``--collective-timeout T`` (seconds, default 60); ``--audit DIR`` (every file-system write this process makes, as Python's audit
events report them, goes to ``DIR/rank<R>.json`` at exit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from lfsgan.data import InfiniteSampler
from lfsgan.train import TrainConfig, build_models, train
from lfsgan.train.distributed import process_group, shard_from_env

MODEL = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
SHOTS = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
#: audit events that write to the file system (``open`` only with a writing mode)
WRITE_EVENTS = ("os.rename", "os.remove", "os.mkdir", "tempfile.mkstemp", "os.truncate", "shutil.rmtree")


def config(iterations: int, batch: int, world_size: int) -> TrainConfig:
    return TrainConfig(iterations=iterations, batch=batch, r1_gamma=1.0, r1_every=2, path_reg_weight=2.0, path_reg_every=2,
                       checkpoint_every=2, sample_every=2, log_every=1, ema_decay=0.9, seed=3, devices=world_size)


def models(no_cross_rank_coupling: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    G, D = build_models(MODEL)
    if no_cross_rank_coupling:
        D.stddev_group = 1  # a group of one image: the stddev feature never mixes rows of two ranks
        for name, p in G.named_parameters():
            if "noise" in name:  # noise strength 0 and frozen: per-rank noise streams change nothing
                p.requires_grad_(False)
    return G, D


class WriteAudit:
    """Python audit events of writes below ``root`` (``[event, path, ...]``), kept in memory."""

    def __init__(self, root: Path):
        self.root, self.events, self.on = str(root.resolve()), [], True
        sys.addaudithook(self)

    def __call__(self, event: str, args: tuple) -> None:
        if not self.on:
            return
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and (args[1] or "r").strip("rbt") != "":
            self.events.append(["open", os.path.abspath(args[0]), args[1]])
        elif event in WRITE_EVENTS and args and isinstance(args[0], (str, os.PathLike)):
            paths = [os.path.abspath(a) for a in args[:2] if isinstance(a, (str, os.PathLike))]
            self.events.append([event, *paths])

    def dump(self, path: Path) -> None:
        self.on = False
        below = [e for e in self.events if any(str(p).startswith(self.root) for p in e[1:])]
        path.write_text(json.dumps(below))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--no-cross-rank-coupling", action="store_true")
    ap.add_argument("--stall-rank", type=int, default=None)
    ap.add_argument("--stall-at-step", type=int, default=None)
    ap.add_argument("--stall-file", default=None)
    ap.add_argument("--audit", default=None)
    ap.add_argument("--collective-timeout", type=float, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shard = shard_from_env()
    audit = WriteAudit(Path(args.out).parent) if args.audit else None
    cfg = config(args.iterations, args.batch, shard.size)

    def stall(step: int, record: dict) -> None:
        if shard.rank == args.stall_rank and step == args.stall_at_step:
            Path(args.stall_file).write_text(str(os.getpid()))
            time.sleep(600)  # until the test kills this process

    with process_group(shard, torch.device("cpu"), timeout_s=args.collective_timeout):
        G, D = models(args.no_cross_rank_coupling)
        sampler = InfiniteSampler(SHOTS, cfg.batch, seed=cfg.seed, rank=shard.rank, world_size=shard.size)
        train(G, D, sampler, cfg, out_dir=args.out, model_cfg=MODEL, progress=False, resume=True, shard=shard,
              callback=stall if args.stall_rank is not None else None)
    if audit is not None:
        audit.dump(Path(args.audit) / f"rank{shard.rank}.json")


if __name__ == "__main__":
    main()
