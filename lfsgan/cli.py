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


@verb("prepare", "prepare", "prepare one data domain: images -> tensors + manifest")
def _(p):
    p.add_argument("--domain", required=True, help="a key of data.domains")
    p.add_argument("--out", required=True, help="output folder (images.pt, manifest.json)")


@verb("pretrain", "pretrain", "pretrain the source GAN with one seed")
def _(p):
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--data", required=True, help="prepared source domain folder")
    p.add_argument("--out", required=True, help="run folder (final.pt, samples.png, losses.csv)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out holds an interrupted run's checkpoint.pt")


@verb("import-source", "import_source", "import a rosinality StyleGAN2 checkpoint as the source")
def _(p):
    p.add_argument("--checkpoint", required=True, help="rosinality .pt ({'g','d','g_ema',...})")
    p.add_argument("--out", required=True, help="run folder (final.pt, samples.png)")


@verb("install-source", "install_source", "install a shipped source generator for one seed")
def _(p):
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint", required=True, help="the shipped final.pt listed for --seed in source.checkpoints")
    p.add_argument("--out", required=True, help="run folder (final.pt, samples.png)")


@verb("train-extractor", "train_extractor", "train the offline demo CNN (non-standard FID features)")
def _(p):
    p.add_argument("--data", required=True, nargs="+", help="prepared domain folders (one class each)")
    p.add_argument("--out", required=True, help="extractor weights file")


@verb("install-extractor", "install_extractor", "install the shipped demo CNN in place of training it")
def _(p):
    p.add_argument("--data", required=True, nargs="+", help="prepared domain folders, as for train-extractor")
    p.add_argument("--checkpoint", required=True, help="the shipped weights file named in evaluation.fid.extractor_checkpoint")
    p.add_argument("--out", required=True, help="extractor weights file")


@verb("fisher", "fisher", "diagonal empirical Fisher of the source generator")
def _(p):
    p.add_argument("--source", required=True, help="source run folder's final.pt")
    p.add_argument("--out", required=True, help="output folder (fisher.pt, layers.csv, layers.png)")


@verb("train-task", "train_task", "learn one task with one method")
def _(p):
    p.add_argument("--method", required=True, help="a key of methods")
    p.add_argument("--task", required=True, help="a key of data.domains listed in tasks")
    p.add_argument("--source", required=True, help="source final.pt")
    p.add_argument("--data", required=True, help="prepared task domain folder")
    p.add_argument("--previous", nargs="*", default=[], help="task.pt of the method's earlier tasks, in order")
    p.add_argument("--fisher", default=None, help="fisher.pt (ewc)")
    p.add_argument("--out", required=True, help="task folder (task.pt, samples.png, params.json)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if --out holds an interrupted run's checkpoint.pt")


@verb("sample", "sample", "sample task S after task T, or the source")
def _(p):
    p.add_argument("--method", default=None, help="method run; leave out (with --after/--task/--states) to sample the source")
    p.add_argument("--after", nargs="+", default=None, help="the last task learnt (one per sample set)")
    p.add_argument("--task", nargs="+", default=None, help="the task whose generator is sampled (s <= t; one per set)")
    p.add_argument("--source", required=True, help="source final.pt")
    p.add_argument("--states", nargs="*", default=[], help="task.pt of tasks 1..t of the method, in order (t: the last --after)")
    p.add_argument("--out", required=True, nargs="+", help="output folder of each set (samples.pt, samples.json, grid.png)")


@verb("evaluate", "evaluate", "FID/KID, intra-cluster LPIPS, B-LPIPS of sample sets")
def _(p):
    p.add_argument("--samples", required=True, nargs="+", help="sample folders (samples.pt)")
    p.add_argument("--data", required=True, nargs="+",
                   help="prepared task domain folder of each sample folder, in the same order (reference set and shots)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--cache", required=True, help="folder for cached real-set statistics")
    p.add_argument("--out", required=True, nargs="+", help="metrics JSON of each sample folder, in the same order")
    p.add_argument("--source-samples", default=None,
                   help="the source's sample folder, drawn from the same latents: each set's same-latent correspondence")


@verb("quality", "quality", "quality read-out of a source's samples (demo CNN)")
def _(p):
    p.add_argument("--samples", required=True, help="sample folder of the source (`lfsgan sample` without --method)")
    p.add_argument("--data", required=True, help="prepared source domain folder")
    p.add_argument("--task-data", nargs="*", default=[],
                   help="prepared task folders: each built-in task also reads the source's samples restyled by its recipe (the ceiling)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--out", required=True, help="quality JSON")


@verb("match", "match", "weight matching: permute source B onto source A")
def _(p):
    p.add_argument("--a", required=True, help="final.pt of model A")
    p.add_argument("--b", required=True, help="final.pt of model B")
    p.add_argument("--out", required=True, help="output folder (permuted.pt, match.json, svd.csv, plots)")


@verb("lmc", "lmc", "linear-mode-connectivity curves, naive vs matched")
def _(p):
    p.add_argument("--a", required=True, help="final.pt of model A")
    p.add_argument("--b", required=True, help="final.pt of model B")
    p.add_argument("--permuted", required=True, help="permuted.pt of B (from `lfsgan match`)")
    p.add_argument("--data", required=True, help="prepared source domain folder (reference set)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--cache", required=True, help="folder for cached real-set statistics")
    p.add_argument("--out", required=True, help="output folder (lmc.csv, lmc.json, lmc.png)")


@verb("merge", "merge", "merge N sources (naive, MergeMany, STE) and score them")
def _(p):
    p.add_argument("--sources", nargs="+", required=True, help="final.pt of every source; the first is the anchor")
    p.add_argument("--ste", default=None, help="ste.pt of the same sources (from `lfsgan ste`)")
    p.add_argument("--data", required=True, help="prepared source domain folder (reference set)")
    p.add_argument("--extractor", default=None, help="demo extractor weights (lfsgan-demo-cnn)")
    p.add_argument("--cache", required=True, help="folder for cached real-set statistics")
    p.add_argument("--out", required=True, help="output folder (merged.pt, merge.json, r_gamma.csv, r_gamma.png)")


@verb("ste", "ste", "straight-through-estimator permutation search")
def _(p):
    p.add_argument("--sources", nargs="+", required=True, help="final.pt of every source; the first is the anchor")
    p.add_argument("--out", required=True, help="output folder (ste.pt, ste.json)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")


@verb("report", "report", "the report: claims, tables, plots, sample grids")
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


@verb("weights", "weights", "list (or --fetch) the weights files a config needs")
def _(p):
    p.add_argument("--fetch", action="store_true", help="download the missing public files into the torch hub cache and verify them")


# verb -> (what it reads, what it writes), for `lfsgan VERB --help`. Every verb also reads --config.
_IO: dict[str, tuple[str, str]] = {
    "prepare": ("the domain's images: a folder or .zip (data.domains.<domain>.path, and .shots if given), "
                "or a built-in demo domain",
                "--out/images.pt (uint8 images and the training shots) and --out/manifest.json (every file's sha256, "
                "how the shots were chosen)"),
    "pretrain": ("the prepared source domain (--data); --out/checkpoint.pt of an interrupted run, to resume",
                 "--out/final.pt (G, D, G_ema), --out/samples.png, --out/losses.csv"),
    "import-source": ("a rosinality-format .pt (--checkpoint), loaded as tensors only",
                      "--out/final.pt, --out/samples.png"),
    "install-source": ("a shipped lfsgan final.pt (--checkpoint), after its sha256 matches source.checkpoints",
                       "--out/final.pt, --out/samples.png"),
    "train-extractor": ("prepared domain folders (--data), one class each", "the extractor weights file (--out)"),
    "install-extractor": ("a shipped demo CNN (--checkpoint), after its sha256 matches evaluation.fid.extractor_checkpoint "
                          "and its recorded inputs match the prepared folders (--data)",
                          "the extractor weights file (--out), the shipped bytes unchanged"),
    "fisher": ("the source's final.pt (--source)", "--out/fisher.pt, --out/layers.csv, --out/layers.png"),
    "train-task": ("the source's final.pt, the prepared task (--data), the method's earlier task.pt files (--previous), "
                   "fisher.pt for EWC; --out/checkpoint.pt of an interrupted run, to resume",
                   "--out/task.pt (the task's stored state), --out/params.json, --out/samples.png"),
    "sample": ("the source's final.pt and the method's task.pt files up to task T (--states); only the source without --method",
               "--out/samples.pt, --out/samples.json, --out/grid.png"),
    "evaluate": ("samples.pt of each --samples folder, its prepared task (--data), the demo extractor if used, "
                 "the source's samples.pt (--source-samples) if given; "
                 "Inception/VGG weights from the torch hub cache or the config",
                 "one metrics JSON (--out) per sample folder, with its protocol; real-set features cached in --cache"),
    "quality": ("the source's samples (--samples, from `lfsgan sample` without --method), the prepared source domain, "
                "the prepared tasks (--task-data), the demo extractor", "the quality JSON (--out)"),
    "match": ("two sources' final.pt (--a, --b)", "--out/permuted.pt, --out/match.json, --out/svd.csv and plots"),
    "lmc": ("two sources' final.pt, B's permuted.pt, the prepared source domain",
            "--out/lmc.csv, --out/lmc.json, --out/lmc.png; real-set features cached in --cache"),
    "merge": ("every source's final.pt (--sources), the STE search's ste.pt if given, the prepared source domain",
              "--out/merged.pt, --out/merge.json, --out/r_gamma.csv, --out/r_gamma.png"),
    "ste": ("every source's final.pt (--sources); --out's checkpoint of an interrupted search, to resume",
            "--out/ste.pt, --out/ste.json"),
    "report": ("metrics JSONs, task.pt files, sample grids, LMC/match/merge JSONs, the Fisher CSV, quality JSONs, "
               "the source's and each method's samples.pt (--same-latents)",
               "--out/: claims.csv, summary.md and CSVs, forgetting matrices, plots, samples.png, quality.csv, "
               "same_latents_<task>.png"),
    "weights": ("the config (which Inception, VGG16 and source files it needs) and the torch hub cache",
                "nothing without --fetch; with it, the downloaded files into the torch hub cache"),
}


class _Wide(argparse.HelpFormatter):
    """Room for the longest verb name, so that each verb and its help share one line."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=24)
        self._action_max_length = max(map(len, _VERBS)) + 4  # verbs are listed 4 columns in


def build_parser() -> argparse.ArgumentParser:
    from lfsgan import __version__

    parser = argparse.ArgumentParser(
        prog="lfsgan", formatter_class=_Wide,
        description="Lifelong few-shot image generation, one verb per workflow rule. "
                    "`lfsgan VERB --help` says what a verb reads and writes.")
    parser.add_argument("--version", action="version", version=f"lfsgan {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (_module, help, add_args) in _VERBS.items():
        reads, writes = _IO[name]
        p = sub.add_parser(name, help=help, description=f"{help[0].upper()}{help[1:]}. Reads {reads}. Writes {writes}.")
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
        for v in [] if value is None else value if isinstance(value, list) else [value]:
            if v not in names:
                raise ConfigError(f"{args.config}: --{arg} {v!r} is not in `{key}` of this config; choose one of {', '.join(names)}")


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
