"""Where the metrics' pretrained weights come from, and what to do when they are missing.

Both standard metrics rest on ImageNet-era weights that their packages download on first use,
into the torch hub cache (``$TORCH_HOME/hub/checkpoints/``):

- torch-fidelity's FID Inception, ``weights-inception-2015-12-05-6726825d.pth`` (from GitHub);
- torchvision's VGG16 / AlexNet / SqueezeNet backbones for LPIPS (from download.pytorch.org).

Offline, the download fails deep inside those packages. This module checks first and raises a
:class:`MissingWeightsError` that names the file, where to put it and the config key that points
at a local copy. It also loads weight files safely (``weights_only=True``) before any third-party
code unpickles them, records each file's sha256 for the protocol, and tells a published file from
another one (:func:`published_sha256`, :func:`is_published_weights`): a file in the hub cache under a
published name must have that file's sha256 (:func:`verify_hub_file`), since a truncated download or
a planted file would otherwise be used, or labelled standard, under the published name.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch

from lfsgan.io import atomic_path, sha256_file

#: torch-fidelity 0.4.0's Inception weights (``URL_INCEPTION_V3`` in ``feature_extractor_inceptionv3.py``).
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"

#: torchvision's ImageNet backbones, as lpips 0.1.4 requests them (``pretrained_networks.py``).
#: The 8 hex digits in each name are the first digits of the file's sha256 (torch hub's ``check_hash``).
LPIPS_BACKBONE_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
TORCHVISION_HOST = "download.pytorch.org"
GITHUB_HOST = "github.com"

#: the full sha256 of published files where it is known (each begins with the prefix in its name);
#: for the others the name's prefix is all there is to check.
PUBLISHED_SHA256 = {
    INCEPTION_FILE: "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "vgg16-397923af.pth": "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    "alexnet-owt-7be5be79.pth": "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable."""


class WrongWeightsError(ValueError):
    """A file stands where a published weights file belongs, but its sha256 is not that file's."""


def hub_checkpoint_path(filename: str) -> Path:
    """Where torch hub keeps (and looks for) a downloaded file: ``$TORCH_HOME/hub/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def network_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True if a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_weights_error(what: str, filename: str, host: str, config_key: str) -> MissingWeightsError:
    """The error raised when ``filename`` is not in the hub cache and ``host`` cannot be reached."""
    expected = hub_checkpoint_path(filename)
    return MissingWeightsError(
        f"{what}: weights file {filename!r} is not in the torch hub cache ({expected}) and {host} cannot be "
        f"reached to download it. Either copy the file to {expected} (the hub cache follows $TORCH_HOME), or "
        f"set the config key `{config_key}` to the path of a local copy."
    )


def load_state_dict_safely(path: str | os.PathLike, what: str, config_key: str) -> dict[str, torch.Tensor]:
    """Load a plain ``{name: tensor}`` state dict with ``weights_only=True``; nothing in it can run code.

    Third-party loaders (torch-fidelity's Inception) unpickle their weights file without
    ``weights_only``; calling this first refuses a file that holds anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what}: weights file {path} (config key `{config_key}`) does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{what}: {path} (config key `{config_key}`) is not a tensors-only state dict ({e}). "
            "Convert it to a plain {name: tensor} dict saved with torch.save."
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what}: {path} (config key `{config_key}`) must hold a flat {{name: tensor}} state dict")
    return state


def file_identity(path: str | os.PathLike) -> dict[str, str]:
    """``{"path": …, "sha256": <hex>}`` of a weights file, for the protocol.

    The sha256 is the identity; the path is for people: relative to the working directory (the
    workflow's) when the file lies under it, so the same run gives the same protocol in any clone,
    absolute otherwise (e.g. torch hub's cache).
    """
    path = Path(path).resolve()
    cwd = Path.cwd().resolve()
    shown = path.relative_to(cwd) if path.is_relative_to(cwd) else path
    return {"path": str(shown), "sha256": sha256_file(path)}


def hub_name_prefix(filename: str) -> str | None:
    """The sha256 prefix torch hub writes into a file name (``name-<prefix>.pth``), if it has one."""
    prefix = Path(filename).stem.rsplit("-", 1)[-1]
    return prefix if len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix) else None


def published_sha256(filename: str) -> str | None:
    """What a published file's sha256 is known to be: the full hash (:data:`PUBLISHED_SHA256`), else the
    prefix in its name, else None (nothing to check)."""
    return PUBLISHED_SHA256.get(filename) or hub_name_prefix(filename)


def is_published_weights(sha256: str, filename: str) -> bool:
    """True if ``sha256`` is that of the published ``filename`` (the full hash where known, else the name's prefix)."""
    expected = published_sha256(filename)
    return expected is not None and sha256.startswith(expected)


def wrong_weights_message(what: str, path: str | os.PathLike, filename: str, sha256: str, config_key: str) -> str:
    """The sentence for a file under a published name whose sha256 is not the published one."""
    return (
        f"{what}: {path} has sha256 {sha256[:16]}..., not that of the published {filename} "
        f"({published_sha256(filename)[:16]}...): a truncated download or another file. Delete it and run "
        f"`lfsgan weights --fetch` (or copy the published file there), or set the config key `{config_key}` to a local copy"
    )


def verify_hub_file(path: str | os.PathLike, filename: str, what: str, config_key: str) -> str:
    """sha256 of ``path``, a file torch hub keeps as ``filename``; :class:`WrongWeightsError` unless it is
    the published file's."""
    digest = sha256_file(path)
    if published_sha256(filename) is not None and not is_published_weights(digest, filename):
        raise WrongWeightsError(wrong_weights_message(what, path, filename, digest, config_key))
    return digest


def write_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a randomly initialised torch-fidelity Inception state dict to ``path``.

    FOR TESTS AND TIMING ONLY: FID computed with these weights is meaningless. It has exactly the
    keys and shapes torch-fidelity's ``FeatureExtractorInceptionV3`` loads through
    ``feature_extractor_weights_path``, so the standard code path runs end to end offline. Convs get
    He-normal weights; batch norms keep identity statistics.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Uninitialised(FeatureExtractorInceptionV3):
        # torch-fidelity loads its weights inside __init__; keep the freshly initialised ones instead.
        def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ARG002
            return None

    with tempfile.TemporaryDirectory() as tmpdir:
        empty = Path(tmpdir) / "empty.pth"
        torch.save({}, empty)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = _Uninitialised("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
            for m in net.modules():  # variance-preserving init, so deep features neither vanish nor explode
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
