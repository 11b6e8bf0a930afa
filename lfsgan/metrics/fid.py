"""FID and KID with torch-fidelity's extractors and formulas, the real set's features cached on disk as tensors.

FID (Heusel et al. 2017, eq. 6): ``||mu_f - mu_r||^2 + Tr(S_f + S_r - 2 (S_f S_r)^{1/2})`` over
features of the fake and real sets. KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic
polynomial kernel ``k(a, b) = (a.b / d + 1)^3``, averaged over ``kid_subsets`` random subsets of
``kid_subset_size`` images from each set (mean and std reported).

Two extractors:

- ``inception-v3-compat`` (standard, pool3 2048-d, inputs resized to 299x299 the way TF1 did):
  weights from ``weights_path`` (config key ``evaluation.fid.weights``) or torch hub's cache, else
  downloaded by torch-fidelity if the network is reachable, else :class:`MissingWeightsError`.
- ``lfsgan-demo-cnn`` (non-standard, see :mod:`lfsgan.metrics.demo_extractor`): weights file required.

Real-set caching: the real set's features are computed once per (dataset, extractor weights, feature
layer) and kept in ``cache_dir`` as ``real-<real_sha256>-w<weights sha256>-l<layer>.pt``, a tensors-only
file written and read through :mod:`lfsgan.io` (``weights_only=True``). torch-fidelity's own cache
unpickles its files with ``weights_only=False``, and ``cache_dir`` (``results/eval/.cache``) is a DVC
output that ``dvc pull`` delivers from a shared remote, so torch-fidelity's cache is never used: lfsgan
runs torch-fidelity's pipeline steps itself (extractor -> features -> ``fid_features_to_statistics`` ->
``fid_statistics_to_metric``; ``kid_features_to_metric``), which gives the same values as
``calculate_metrics``. A cache file that is not tensors-only (a planted pickle) is refused and recomputed,
and nothing in it runs. Likewise torch-fidelity's Inception unpickles its weights file: lfsgan loads the
configured file with ``weights_only=True`` and hands torch-fidelity a private copy it wrote itself.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from lfsgan.io import load_checkpoint, save_checkpoint
from lfsgan.metrics.demo_extractor import DEMO_EXTRACTOR_NAME, PENULTIMATE
from lfsgan.metrics.protocol import library_versions
from lfsgan.metrics.weights import (
    GITHUB_HOST,
    INCEPTION_FILE,
    INCEPTION_URL,
    file_identity,
    hub_checkpoint_path,
    is_published_weights,
    load_state_dict_safely,
    missing_weights_error,
    network_reachable,
    verify_hub_file,
)

INCEPTION = "inception-v3-compat"
EXTRACTORS = (INCEPTION, DEMO_EXTRACTOR_NAME)
WEIGHTS_CONFIG_KEY = "evaluation.fid.weights"
KID_DEFAULT_SUBSET_SIZE = 1000  # torch-fidelity's default, used when both sets are at least this large
KID_KERNEL = "polynomial: (a.b / d + 1)^3"


class UInt8Images(Dataset):
    """uint8 [N, 3, H, W] -> items uint8 [3, H, W], the form torch-fidelity accepts (not a plain tensor)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def choose_kid_subset_size(n_fake: int, n_real: int, requested: int | None = None) -> int:
    """KID subset size: ``requested`` if it fits both sets, else min(1000, n_fake, n_real).

    torch-fidelity refuses a subset larger than either set.
    """
    limit = min(n_fake, n_real)
    if requested is None:
        return min(KID_DEFAULT_SUBSET_SIZE, limit)
    if not 2 <= requested <= limit:
        raise ValueError(f"kid_subset_size={requested} must be in [2, min(n_fake, n_real)={limit}]")
    return requested


def _check_images(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a uint8 tensor [N, 3, H, W] (values 0..255), got {got}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 images for FID/KID, got {x.shape[0]}")


def _resolve_weights(extractor: str, weights_path: str | os.PathLike | None, allow_download: bool) -> dict:
    """Find the extractor's weights file: ``{"path": Path | None, "source": str}``; path None = download it."""
    if extractor == DEMO_EXTRACTOR_NAME:
        if weights_path is None:
            raise ValueError(
                f"extractor {DEMO_EXTRACTOR_NAME!r} needs its trained weights file "
                f"(config key `{WEIGHTS_CONFIG_KEY}`); train one with lfsgan.metrics.train_demo_extractor"
            )
        if not Path(weights_path).is_file():
            raise FileNotFoundError(
                f"{DEMO_EXTRACTOR_NAME} weights file {weights_path} (config key `{WEIGHTS_CONFIG_KEY}`) does not exist"
            )
        return {"path": Path(weights_path), "source": "config"}
    if weights_path is not None:
        load_state_dict_safely(weights_path, "FID Inception", WEIGHTS_CONFIG_KEY)
        return {"path": Path(weights_path), "source": "config"}
    cached = hub_checkpoint_path(INCEPTION_FILE)
    if cached.is_file():
        verify_hub_file(cached, INCEPTION_FILE, "FID Inception", WEIGHTS_CONFIG_KEY)
        load_state_dict_safely(cached, "FID Inception", WEIGHTS_CONFIG_KEY)
        return {"path": cached, "source": "torch hub cache"}
    if allow_download and network_reachable(GITHUB_HOST):
        return {"path": None, "source": f"downloaded from {INCEPTION_URL}"}
    raise missing_weights_error(
        "FID Inception (torch-fidelity inception-v3-compat)", INCEPTION_FILE, GITHUB_HOST, WEIGHTS_CONFIG_KEY
    )


def _cache_name(real_sha256: str, weights_sha256: str, layer: str | None) -> str:
    return f"real-{real_sha256[:32]}-w{weights_sha256[:16]}-l{layer or 'default'}"


def cache_feature_space(name: str) -> str:
    """The extractor part (``w<weights sha>-l<layer>``) of a real-set cache entry's name: two entries
    with the same part hold features of the same space, so an FID between them is defined."""
    return name.split("-", 2)[2]


def cached_real_features(cache_dir: str | Path, name: str) -> torch.Tensor:
    """The real-set features ``[M, F]`` of cache entry ``name`` (tensors only, ``weights_only=True``);
    FileNotFoundError when the entry was never written."""
    path = Path(cache_dir) / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the FID cache entry {path} (rerun the rule that computes it)")
    return load_checkpoint(path)[0]["features"]


def fid_from_features(a: torch.Tensor, b: torch.Tensor, verbose: bool = False) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets ``[N, F]`` (torch-fidelity)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    return float(
        fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), verbose)[KEY_METRIC_FID]
    )


def _feature_extractor(extractor: str, weights: Path, layer: str, cuda: bool, verbose: bool):
    """torch-fidelity's extractor ``extractor`` computing feature ``layer``, with weights from ``weights``.

    The Inception constructor unpickles its weights file (``weights_only=False``), so it only ever
    sees a copy lfsgan wrote, into a private temporary folder, from a ``weights_only=True`` load.
    """
    from torch_fidelity.utils import create_feature_extractor

    if extractor == DEMO_EXTRACTOR_NAME:  # lfsgan's own extractor: loads with weights_only=True
        return create_feature_extractor(extractor, [layer], cuda=cuda, feature_extractor_weights_path=str(weights), verbose=verbose)
    state = load_state_dict_safely(weights, "FID Inception", WEIGHTS_CONFIG_KEY)
    with tempfile.TemporaryDirectory(prefix="lfsgan-inception-") as tmp:
        private = Path(tmp) / INCEPTION_FILE
        torch.save(state, private)
        return create_feature_extractor(extractor, [layer], cuda=cuda, feature_extractor_weights_path=str(private), verbose=verbose)


def _features(images: torch.Tensor, net, layer: str, batch_size: int, cuda: bool, verbose: bool) -> torch.Tensor:
    """Features [N, F] of uint8 images [N, 3, H, W], batched the way ``calculate_metrics`` does."""
    from torch_fidelity.utils import get_featuresdict_from_dataset

    # save_cpu_ram: a DataLoader without worker processes; the images are already in memory
    return get_featuresdict_from_dataset(UInt8Images(images), net, batch_size, cuda, True, verbose)[layer]


def _real_features(real: torch.Tensor, path: Path, compute) -> tuple[torch.Tensor, bool]:
    """``(features [M, F], cache hit)``: read ``path`` (tensors only) or ``compute()`` and write it.

    An entry that cannot be loaded with ``weights_only=True`` (corrupt, or a pickle carrying code) or
    that does not hold ``M`` feature rows is refused with a warning and recomputed; nothing in it runs.
    """
    if path.is_file():
        try:
            tensors, _meta = load_checkpoint(path)
            cached = tensors.get("features")
            if isinstance(cached, torch.Tensor) and cached.dim() == 2 and cached.shape[0] == real.shape[0]:
                return cached, True
            problem = "does not hold one feature row per real image"
        except ValueError as e:
            problem = str(e).splitlines()[0]
        warnings.warn(f"FID cache entry {path} refused ({problem}); recomputing it")
    features = compute(real)
    save_checkpoint(path, {"features": features}, {"n_real": real.shape[0]})
    return features, False


def fid_kid(
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    real_sha256: str,
    cache_dir: str | os.PathLike,
    reference: str | dict | None = None,
    extractor: str = INCEPTION,
    weights_path: str | os.PathLike | None = None,
    feature_layer: str | None = None,
    batch_size: int = 64,
    kid_subset_size: int | None = None,
    kid_subsets: int = 100,
    seed: int = 0,
    device: str = "cpu",
    allow_download: bool = True,
    progress: bool | None = None,
) -> dict:
    """FID and KID of ``fake`` against ``real`` with torch-fidelity's steps; real-set features cached by identity.

    Args:
        fake: uint8 [N, 3, H, W] generated images (all of them are used).
        real: uint8 [M, 3, H, W] the reference set; same H, W as ``fake`` (comparing e.g. 256 px fakes
            against 1024 px reals shifts FID, rosinality/stylegan2-pytorch#91).
        real_sha256: identity of the reference set (e.g. the prepared dataset's sha256); the cache key.
            A wrong value reuses another set's statistics, so pass the hash of exactly these images.
        cache_dir: where the real set's features are kept (tensors only; see the module docstring).
        reference: description of the reference set, copied into the protocol.
        extractor: ``"inception-v3-compat"`` (standard) or ``"lfsgan-demo-cnn"`` (non-standard).
        weights_path: local weights file (config key ``evaluation.fid.weights``).
        feature_layer: torch-fidelity feature name; default the extractor's standard one (Inception
            ``"2048"``, demo ``"penultimate"``). Any other layer makes the value non-standard.
        kid_subset_size: default min(1000, N, M); must not exceed min(N, M).
        seed: torch-fidelity's ``rng_seed`` (KID subset draws).
        allow_download: if False, never let torch-fidelity fetch the Inception weights.
        progress: torch-fidelity's progress output; ``None`` shows it only on a terminal.

    Returns:
        ``{"fid": float, "kid_mean": float, "kid_std": float, "protocol": dict}``.
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    _check_images(fake, "fake")
    _check_images(real, "real")
    if fake.shape[-2:] != real.shape[-2:]:
        raise ValueError(
            f"fake images are {tuple(fake.shape[-2:])} but real images are {tuple(real.shape[-2:])}; "
            "resize one set first"
        )
    if not isinstance(real_sha256, str) or not re.fullmatch(r"[0-9a-f]{16,64}", real_sha256):
        raise ValueError(f"real_sha256 must be a lowercase hex digest (>= 16 characters), got {real_sha256!r}")
    if extractor not in EXTRACTORS:
        raise ValueError(f"extractor {extractor!r} is not supported; choose one of {EXTRACTORS}")
    n_fake, n_real = fake.shape[0], real.shape[0]
    kid_subset_size = choose_kid_subset_size(n_fake, n_real, kid_subset_size)
    verbose = sys.stderr.isatty() if progress is None else bool(progress)

    weights = _resolve_weights(extractor, weights_path, allow_download)
    if extractor == DEMO_EXTRACTOR_NAME:
        from lfsgan.metrics.fidelity_extractor import register_demo_extractor

        register_demo_extractor()
    if weights["path"] is None:  # fetch into the hub cache, exactly where torch-fidelity would put it
        torch.hub.load_state_dict_from_url(INCEPTION_URL, progress=verbose, map_location="cpu", weights_only=True)
        weights["path"] = hub_checkpoint_path(INCEPTION_FILE)
    identity = file_identity(weights["path"])

    cuda = str(device).startswith("cuda")
    layer = feature_layer or FEATURE_EXTRACTORS_REGISTRY[extractor].get_default_feature_layer_for_metric("fid")
    net = _feature_extractor(extractor, identity["path"], layer, cuda, verbose)

    def compute(images: torch.Tensor) -> torch.Tensor:
        return _features(images, net, layer, batch_size, cuda, verbose)

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = _cache_name(real_sha256, identity["sha256"], feature_layer)
    real_features, cache_hit = _real_features(real, cache_dir / f"{name}.pt", compute)
    logging.getLogger(__name__).info("real-set statistics %s: %s", name, "cached" if cache_hit else "computed")
    fake_features = compute(fake)
    fid = fid_from_features(fake_features, real_features, verbose)
    kid = kid_features_to_metric(
        fake_features, real_features, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, rng_seed=seed, verbose=verbose
    )

    h, w = fake.shape[-2:]
    protocol = {
        "metric": "FID and KID (torch-fidelity calculate_metrics)",
        "n_fake": n_fake,
        "n_real": n_real,
        "reference": reference,
        "real_sha256": real_sha256,
        "extractor": extractor,
        "weights_path": identity["path"],
        "weights_sha256": identity["sha256"],
        "weights_source": weights["source"],
        "input_resolution": [h, w],
        "kid_subset_size": kid_subset_size,
        "kid_subsets": kid_subsets,
        "kid_kernel": KID_KERNEL,
        "seed": seed,
        "device": str(device),
        "batch_size": batch_size,
        # identity only: whether this call hit the cache depends on job order, so it is logged, not recorded
        "real_stats_cache": {"name": name, "file": f"{name}.pt", "format": "tensors only (weights_only=True)"},
        "versions": library_versions(),
    }
    protocol.update(_extractor_protocol(extractor, weights["source"], identity, (h, w), feature_layer))
    return {
        "fid": float(fid),
        "kid_mean": float(kid[KEY_METRIC_KID_MEAN]),
        "kid_std": float(kid[KEY_METRIC_KID_STD]),
        "protocol": protocol,
    }


def _extractor_protocol(extractor: str, source: str, identity: dict, hw: tuple[int, int], layer: str | None) -> dict:
    """Feature layer, resize policy and comparability of one extractor."""
    if extractor == DEMO_EXTRACTOR_NAME:
        from lfsgan.metrics.demo_extractor import load_demo_extractor

        net, meta = load_demo_extractor(identity["path"])
        rh, rw = net.resolution
        resize = "none (native resolution)" if tuple(hw) == net.resolution else (
            f"bilinear, antialiased, {hw[0]}x{hw[1]} -> {rh}x{rw} (the extractor's training size)"
        )
        training = ("seed", "steps", "n_images", "class_counts", "label_names", "train_accuracy", "heldout_accuracy")
        return {
            "feature_layer": layer or f"{PENULTIMATE} ({net.feature_dim}-d)",
            "resize": resize,
            "extractor_training": {k: meta.get(k) for k in training},
            "comparable_to_published": False,
            "note": (
                f"Non-standard features: penultimate layer of {DEMO_EXTRACTOR_NAME}, a small CNN trained by this "
                "pipeline as a domain/class classifier on the demo data. Values are comparable only with values "
                f"computed with the same weights file (sha256 {identity['sha256'][:16]}...), "
                "not with published FID/KID."
            ),
        }
    if layer not in (None, "2048"):
        return {
            "feature_layer": layer,
            "resize": f"bilinear (TF1-compatible) {hw[0]}x{hw[1]} -> 299x299 inside torch-fidelity",
            "comparable_to_published": False,
            "note": f"Inception feature layer {layer!r} instead of pool3 ('2048'): not the standard FID/KID.",
        }
    comparable = is_published_weights(identity["sha256"], INCEPTION_FILE)
    note = (
        "Standard torch-fidelity Inception pool3 features; comparable to published FID only with the same number "
        "of generated images and the same reference set "
        "(LFS-GAN: 5,000 samples vs the task's full set, pytorch-fid 0.3.0)."
    )
    if source == "torch hub cache":
        note = "Inception weights from the torch hub cache, where torch-fidelity keeps its download. " + note
    if not comparable:
        note = (
            f"Inception weights from a file whose sha256 ({identity['sha256'][:16]}...) is not that of torch-fidelity's "
            f"published {INCEPTION_FILE}: the features are not the standard ones, and the values are comparable "
            "only with values computed with the same weights file, not with published FID/KID."
        )
    return {
        "feature_layer": "2048 (pool3)",
        "resize": f"bilinear (TF1-compatible) {hw[0]}x{hw[1]} -> 299x299 inside torch-fidelity",
        "comparable_to_published": comparable,
        "note": note,
    }
