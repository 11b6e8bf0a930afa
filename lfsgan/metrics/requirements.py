"""Every weights file a config needs, where it must lie, and whether it is there.

A run on an offline cluster must not discover a missing file after hours of training, at its
first evaluation job. :func:`required_weights` reads a resolved config and lists:

- the FID extractor's weights (torch-fidelity's Inception, unless ``evaluation.fid.weights`` names a
  local copy; the demo CNN is trained by the workflow itself and needs nothing);
- the LPIPS backbone of the evaluation (``evaluation.lpips``) and of every LFS-GAN method whose
  mode-seeking loss clusters with LPIPS (``methods.<m>.options``), unless a seeded random backbone
  is allowed (non-standard);
- the imported source checkpoint (``source.import_checkpoint``), which only its user can supply.

Every file with a published identity (the hub files: torch hub writes the first hex digits of a file's
sha256 into its name, and :data:`lfsgan.metrics.weights.PUBLISHED_SHA256` has the full hash of some) is
verified by its sha256, not only found: a truncated download or another file under the published name
is refused by name. A file the user names in the config has no published identity; its sha256 is
recorded in each metric's protocol instead.

``lfsgan weights`` prints the list; ``--fetch`` downloads what has a public address into the torch hub
cache and verifies it; the Snakefile's start-up check (:func:`check_required_weights`) stops a run
before its first job when a file is wrong, or missing and not downloadable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfsgan.io import sha256_file
from lfsgan.metrics.weights import (
    INCEPTION_FILE,
    INCEPTION_URL,
    LPIPS_BACKBONE_FILES,
    MissingWeightsError,
    WrongWeightsError,
    hub_checkpoint_path,
    hub_name_prefix,
    network_reachable,
    published_sha256,
    wrong_weights_message,
)

TORCHVISION_URL = "https://download.pytorch.org/models/{}"


@dataclass(frozen=True)
class WeightsFile:
    """One file a run needs: what it is for, the config key that points at it, where it must lie."""

    what: str
    config_key: str
    path: Path
    url: str | None  # a public address to fetch it from; None = only the user has it
    sha256_prefix: str | None  # torch hub's naming: the first hex digits of the file's sha256
    sha256: str | None = None  # what its sha256 must be (full hash where published, else the prefix); None: unchecked

    @property
    def present(self) -> bool:
        return self.path.is_file()

    def actual_sha256(self) -> str:
        """The sha256 of the file on disk (computed once per file version)."""
        stat = self.path.stat()
        return _sha256(str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)

    def wrong(self) -> str | None:
        """A sentence saying the file on disk is not the published one, or None (right, unchecked or absent)."""
        if self.sha256 is None or not self.present or self.actual_sha256().startswith(self.sha256):
            return None
        return wrong_weights_message(self.what, self.path, self.path.name, self.actual_sha256(), self.config_key)

    @property
    def host(self) -> str | None:
        return self.url.split("/")[2] if self.url else None


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # noqa: ARG001 - size and mtime key the cache
    return sha256_file(path)


def _hub_file(what: str, config_key: str, filename: str, url: str) -> WeightsFile:
    """A published file, kept in the torch hub cache under its published name and checked by its sha256."""
    return WeightsFile(what, config_key, hub_checkpoint_path(filename), url, hub_name_prefix(filename), published_sha256(filename))


def _lpips_need(what: str, net: str, weights: str | None, allow_random: bool, key: str) -> WeightsFile | None:
    if weights:
        return WeightsFile(what, key, Path(weights), None, None)
    if allow_random:
        return None
    filename = LPIPS_BACKBONE_FILES[net]
    return _hub_file(what, key, filename, TORCHVISION_URL.format(filename))


def required_weights(cfg: dict[str, Any]) -> list[WeightsFile]:
    """The weights files a resolved config needs (see the module docstring), without duplicates."""
    needs: list[WeightsFile] = []
    fid = cfg["evaluation"]["fid"]
    if fid["extractor"] == "inception-v3-compat":
        if fid.get("weights"):
            needs.append(WeightsFile("FID Inception (torch-fidelity)", "evaluation.fid.weights", Path(fid["weights"]), None, None))
        else:
            needs.append(_hub_file("FID Inception (torch-fidelity)", "evaluation.fid.weights", INCEPTION_FILE, INCEPTION_URL))
    lp = cfg["evaluation"]["lpips"]
    needs.append(_lpips_need(f"LPIPS-{lp['net']} backbone (evaluation)", lp["net"], lp.get("backbone_weights"),
                             lp.get("allow_random_backbone", False), "evaluation.lpips.backbone_weights"))
    for name, method in cfg["methods"].items():
        opts = method.get("options") or {}
        if method["kind"] == "lfsgan" and opts.get("mode_seeking", "intended") != "off":
            needs.append(_lpips_need(f"LPIPS-vgg backbone (method {name}'s mode-seeking clusters)", "vgg",
                                     opts.get("lpips_backbone_weights"), opts.get("lpips_allow_random_backbone", False),
                                     f"methods.{name}.options.lpips_backbone_weights"))
    if cfg["source"].get("import_checkpoint"):
        needs.append(WeightsFile("source generator (rosinality format)", "source.import_checkpoint",
                                 Path(cfg["source"]["import_checkpoint"]), None, None))
    unique: dict[Path, WeightsFile] = {}
    for need in needs:
        if need is not None and need.path not in unique:
            unique[need.path] = need
    return list(unique.values())


def weights_problems(cfg: dict[str, Any], check_network: bool = True) -> tuple[list[str], list[str]]:
    """``(missing, wrong)``: one sentence per needed file that is absent and cannot be downloaded now,
    and one per file whose sha256 is not the published one (both empty: all is well)."""
    missing, wrong = [], []
    reachable: dict[str, bool] = {}
    for need in required_weights(cfg):
        if need.present:
            if need.wrong():
                wrong.append(need.wrong())
            continue
        if need.url is not None and check_network:
            host = need.host or ""
            if host not in reachable:
                reachable[host] = network_reachable(host)
            if reachable[host]:
                continue  # the library downloads it on first use
        where = f"copy it to {need.path}" if need.url else f"the file {need.path} does not exist"
        fetch = " or run `lfsgan weights --fetch` on a machine with internet" if need.url else ""
        missing.append(f"{need.what}: {where}{fetch} (config key `{need.config_key}`)")
    return missing, wrong


def check_required_weights(cfg: dict[str, Any], source: str = "config") -> None:
    """Raise :class:`WrongWeightsError` naming every file that is not the published one, else
    :class:`MissingWeightsError` listing every missing file; run before the first job."""
    missing, wrong = weights_problems(cfg)
    counts = [f"{len(wrong)} weights file(s) not the published one"] if wrong else []
    counts += [f"{len(missing)} weights file(s) missing"] if missing else []
    if counts:
        error = WrongWeightsError if wrong else MissingWeightsError
        raise error(
            f"{source}: {' and '.join(counts)}, so the run would fail or mislabel its metrics at its first job "
            "that needs them:\n  - " + "\n  - ".join(wrong + missing)
        )


def fetch_weights(need: WeightsFile) -> Path:
    """Download ``need`` into the torch hub cache and verify it: its sha256 against the published one
    (:class:`WrongWeightsError` otherwise, also for a wrong file already there) and a tensors-only state
    dict in any case. Returns the path; a failed download raises :class:`MissingWeightsError` saying
    what to do instead."""
    from lfsgan.metrics.weights import load_state_dict_safely

    if need.url is None:
        raise MissingWeightsError(f"{need.what}: no public address; put the file at {need.path} (config key `{need.config_key}`)")
    if not need.present:
        _download(need)
    if need.wrong():
        raise WrongWeightsError(need.wrong())
    load_state_dict_safely(need.path, need.what, need.config_key)
    return need.path


def _download(need: WeightsFile) -> None:
    """torch hub's download of ``need.url`` into the hub cache (it checks the name's sha256 prefix)."""
    import torch

    try:
        torch.hub.load_state_dict_from_url(need.url, map_location="cpu", progress=True,
                                           check_hash=need.sha256_prefix is not None, weights_only=True)
    except OSError as e:  # urllib's URLError (no network, unknown host) is one
        reason = getattr(e, "reason", None) or e
        raise MissingWeightsError(
            f"{need.what}: cannot download {need.url} ({reason}). On a machine with internet run `lfsgan weights "
            f"--fetch` and copy the file to {need.path}, or set the config key `{need.config_key}` to a local copy"
        ) from e
    except RuntimeError as e:  # torch hub's "invalid hash value": it already deleted the download
        raise WrongWeightsError(
            f"{need.what}: the download from {need.url} does not have the published sha256 ({e}); "
            f"try again, or copy the published file to {need.path}"
        ) from e
