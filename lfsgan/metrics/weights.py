"""Where the metrics' pretrained weights come from, and what to do when they are missing.

Both standard metrics rest on ImageNet-era weights that their packages download on first use,
into the torch hub cache (``$TORCH_HOME/hub/checkpoints/``):

- torch-fidelity's FID Inception, ``weights-inception-2015-12-05-6726825d.pth`` (from GitHub);
- torchvision's VGG16 / AlexNet / SqueezeNet backbones for LPIPS (from download.pytorch.org).

Offline, the download fails deep inside those packages. This module checks first and raises a
:class:`MissingWeightsError` that names the file, where to put it and the config key that points
at a local copy. It also loads weight files safely (``weights_only=True``) before any third-party
code unpickles them, and records each file's sha256 for the protocol.
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


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable."""


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


def sha256_matches_hub_name(sha256: str, filename: str) -> bool:
    """True if ``sha256`` starts with the hash prefix torch hub writes into ``filename`` (``name-<prefix>.pth``)."""
    stem = Path(filename).stem
    prefix = stem.rsplit("-", 1)[-1]
    return len(prefix) >= 8 and sha256.startswith(prefix)


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
