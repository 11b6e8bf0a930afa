"""The `lfsgan` command: one verb per workflow rule; argument parsing only.

Each verb is one function in :mod:`lfsgan.verbs`; this module maps command-line arguments onto
it. Every verb takes ``--config`` (validated against the schema before anything runs) and explicit
input/output paths, so the Snakemake rules hold the paths and the package holds the logic.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from typing import Callable

log = logging.getLogger("lfsgan")

# verb -> (module in lfsgan.verbs, help, argument adder)
_VERBS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {}


def verb(name: str, module: str, help: str):
    def register(add_args: Callable[[argparse.ArgumentParser], None]):
        _VERBS[name] = (module, help, add_args)
        return add_args

    return register


@verb("prepare", "prepare", "prepare one data domain: images -> uint8 tensors + manifest")
def _(p):
    p.add_argument("--domain", required=True, help="a key of data.domains")
    p.add_argument("--out", required=True, help="output folder (images.pt, manifest.json)")


@verb("pretrain", "pretrain", "pretrain the source GAN on the source domain with one seed")
def _(p):
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--data", required=True, help="prepared source domain folder")
    p.add_argument("--out", required=True, help="run folder (final.pt, samples.png, losses.csv)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out holds an interrupted run's checkpoint.pt")


@verb("import-source", "import_source", "import a rosinality-format StyleGAN2 checkpoint as the source")
def _(p):
    p.add_argument("--checkpoint", required=True, help="rosinality .pt ({'g','d','g_ema',...})")
    p.add_argument("--out", required=True, help="run folder (final.pt, samples.png)")


@verb("install-source", "install_source", "install a shipped pretrained source (source.checkpoints) for one seed")
def _(p):
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint", required=True, help="the shipped final.pt listed for --seed in source.checkpoints")
    p.add_argument("--out", required=True, help="run folder (final.pt, samples.png)")


@verb("train-extractor", "train_extractor", "train the offline demo feature extractor (non-standard FID)")
def _(p):
    p.add_argument("--data", required=True, nargs="+", help="prepared domain folders (one class each)")
    p.add_argument("--out", required=True, help="extractor weights file")


@verb("fisher", "fisher", "diagonal empirical Fisher of the source generator")
def _(p):
    p.add_argument("--source", required=True, help="source run folder's final.pt")
    p.add_argument("--out", required=True, help="output folder (fisher.pt, layers.csv, layers.png)")


@verb("train-task", "train_task", "learn one task with one method (after the method's earlier tasks)")
def _(p):
    p.add_argument("--method", required=True, help="a key of methods")
    p.add_argument("--task", required=True, help="a key of data.domains listed in tasks")
    p.add_argument("--source", required=True, help="source final.pt")
    p.add_argument("--data", required=True, help="prepared task domain folder")
    p.add_argument("--previous", nargs="*", default=[], help="task.pt of the method's earlier tasks, in order")
    p.add_argument("--fisher", default=None, help="fisher.pt (ewc)")
    p.add_argument("--out", required=True, help="task folder (task.pt, samples.png, params.json)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out holds an interrupted run's checkpoint.pt")


@verb("sample", "sample", "generate images of task S with a method's generator after task T (no --method: the source's)")
def _(p):
    p.add_argument("--method", default=None, help="method run; leave out (with --after/--task/--states) to sample the source")
    p.add_argument("--after", default=None, help="the last task learnt")
    p.add_argument("--task", default=None, help="the task whose generator is sampled (s <= t)")
    p.add_argument("--source", required=True, help="source final.pt")
    p.add_argument("--states", nargs="*", default=[], help="task.pt of tasks 1..t of the method, in order")
    p.add_argument("--out", required=True, help="output folder (samples.pt, samples.json, grid.png)")


@verb("evaluate", "evaluate", "FID/KID, intra-cluster LPIPS and B-LPIPS of one sample set")
def _(p):
    p.add_argument("--samples", required=True, help="sample folder (samples.pt)")
    p.add_argument("--data", required=True, help="prepared task domain folder (reference set and shots)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--cache", required=True, help="folder for cached real-set statistics")
    p.add_argument("--out", required=True, help="metrics JSON")


@verb("quality", "quality", "quality read-out of a source generator's samples (demo CNN digit and domain heads)")
def _(p):
    p.add_argument("--samples", required=True, help="sample folder of the source (`lfsgan sample` without --method)")
    p.add_argument("--data", required=True, help="prepared source domain folder")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--out", required=True, help="quality JSON")


@verb("match", "match", "weight matching: permute source B onto source A")
def _(p):
    p.add_argument("--a", required=True, help="final.pt of model A")
    p.add_argument("--b", required=True, help="final.pt of model B")
    p.add_argument("--out", required=True, help="output folder (permuted.pt, match.json, svd.csv, plots)")


@verb("lmc", "lmc", "linear-mode-connectivity curves (naive vs matched vs mixture)")
def _(p):
    p.add_argument("--a", required=True, help="final.pt of model A")
    p.add_argument("--b", required=True, help="final.pt of model B")
    p.add_argument("--permuted", required=True, help="permuted.pt of B (from `lfsgan match`)")
    p.add_argument("--data", required=True, help="prepared source domain folder (reference set)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--cache", required=True, help="folder for cached real-set statistics")
    p.add_argument("--out", required=True, help="output folder (lmc.csv, lmc.json, lmc.png)")


@verb("merge", "merge", "merge N sources (naive, MergeMany weight matching, STE) and score the merged generators")
def _(p):
    p.add_argument("--sources", nargs="+", required=True, help="final.pt of every source; the first is the anchor")
    p.add_argument("--ste", default=None, help="ste.pt of the same sources (from `lfsgan ste`)")
    p.add_argument("--data", required=True, help="prepared source domain folder (reference set)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--cache", required=True, help="folder for cached real-set statistics")
    p.add_argument("--out", required=True, help="output folder (merged.pt, merge.json, r_gamma.csv, r_gamma.png)")


@verb("ste", "ste", "straight-through-estimator permutation search of N sources onto the first")
def _(p):
    p.add_argument("--sources", nargs="+", required=True, help="final.pt of every source; the first is the anchor")
    p.add_argument("--out", required=True, help="output folder (ste.pt, ste.json)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")


@verb("report", "report", "tables, plots, forgetting matrices and sample grids")
def _(p):
    p.add_argument("--metrics", nargs="+", required=True, help="metrics JSON files from `lfsgan evaluate`")
    p.add_argument("--tasks", nargs="+", required=True, help="task.pt files (parameter overhead)")
    p.add_argument("--grids", nargs="*", default=[], help="sample grid PNGs")
    p.add_argument("--lmc", nargs="*", default=[], help="lmc.json files")
    p.add_argument("--match", nargs="*", default=[], help="match.json files")
    p.add_argument("--merge", nargs="*", default=[], help="merge.json files (from `lfsgan merge`)")
    p.add_argument("--fisher", default=None, help="Fisher per-layer CSV")
    p.add_argument("--quality", nargs="*", default=[], help="source quality JSONs from `lfsgan quality`")
    p.add_argument("--source", default=None, help="source final.pt (fine-tuning's weight change per layer group)")
    p.add_argument("--cache", default=None, help="FID cache folder (real sets' features: each task's distance from the source)")
    p.add_argument("--same-latents", nargs="*", default=[],
                   help="samples.pt of the source and of each method right after each task (same-latent grids)")
    p.add_argument("--out", required=True, help="report folder")


@verb("weights", "weights", "list the weights files the config needs (Inception, VGG16, source); --fetch downloads them")
def _(p):
    p.add_argument("--fetch", action="store_true", help="download the missing public files into the torch hub cache and verify them")


def build_parser() -> argparse.ArgumentParser:
    from lfsgan import __version__

    parser = argparse.ArgumentParser(prog="lfsgan", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lfsgan {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (_module, help, add_args) in _VERBS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", required=True, help="workflow config YAML (validated against the schema)")
        add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from lfsgan.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
        check_names(args, cfg)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    log.info(
        "lfsgan %s: SLURM_JOB_ID=%s CUDA_VISIBLE_DEVICES=%s SLURM_GPUS=%s",
        args.verb,
        os.environ.get("SLURM_JOB_ID", "-"),
        os.environ.get("CUDA_VISIBLE_DEVICES", "-"),
        os.environ.get("SLURM_GPUS", "-"),
    )
    # Failure injection for the workflow's own tests (a rule that fails on demand).
    if os.environ.get("LFSGAN_FAIL_RULE") == args.verb:
        log.error("failing on purpose: LFSGAN_FAIL_RULE=%s", args.verb)
        return 1
    module = importlib.import_module(f"lfsgan.verbs.{_VERBS[args.verb][0]}")
    kwargs = {k: v for k, v in vars(args).items() if k not in ("verb", "config")}
    try:
        module.run(cfg, **kwargs)
    except Exception as e:
        known = known_error(e)
        if known is None:
            raise  # a bug: the traceback is what a developer needs
        log.debug("traceback", exc_info=True)
        log.error("lfsgan %s: %s", args.verb, one_line(known, args))
        return 2 if isinstance(known, ConfigError) else 1
    return 0


def check_names(args: argparse.Namespace, cfg: dict) -> None:
    """Arguments that name config entries (``--method``, ``--domain``, ``--task``, ``--after``) must
    name existing ones; :class:`~lfsgan.config.ConfigError` otherwise, listing the choices."""
    from lfsgan.config import ConfigError, method_runs

    choices = {"method": ("methods", method_runs(cfg)), "domain": ("data.domains", list(cfg["data"]["domains"])),
               "task": ("tasks", list(cfg["tasks"])), "after": ("tasks", list(cfg["tasks"]))}
    for arg, (key, names) in choices.items():
        value = getattr(args, arg, None)
        if value is not None and value not in names:
            raise ConfigError(f"{args.config}: --{arg} {value!r} is not in `{key}` of this config; choose one of {', '.join(names)}")


def known_error(e: BaseException) -> BaseException | None:
    """The user-facing error behind ``e``: ``e`` itself if it is a bad-input error (config, missing
    or unreadable file, bad value, diverged training: ``lfsgan.train.NonFiniteError`` is a
    ``FloatingPointError``), else an ``OSError`` it was raised while handling (torch's writer turns a
    full disk into ``RuntimeError: [enforce fail ...]``); None for a bug."""
    from lfsgan.config import ConfigError

    if isinstance(e, (ConfigError, ValueError, OSError, FloatingPointError)):
        return e
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


def one_line(e: BaseException, args: argparse.Namespace) -> str:
    """``e`` as one line; an ``OSError`` without a file name names the verb's ``--out``."""
    if isinstance(e, OSError) and e.filename is None and e.strerror:
        out = getattr(args, "out", None)
        hint = "; free space there (or choose another --out) and rerun" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        text = f"cannot write {out}: {e.strerror} [errno {e.errno}]{hint}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
