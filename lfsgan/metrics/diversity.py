"""Intra-cluster LPIPS and B-LPIPS (LFS-GAN's ``evaluate_b_lpips.py``), with seeded sampling.

Given N generated images x_n and the K training images y_k as centres (docs/methods.md §1.9):

- assignment  ``c(n) = argmin_k LPIPS(x_n, y_k)``, clusters ``S_k = {n : c(n) = k}``;
- ``p_k = |S_k| / N + 1e-5``,  ``H_k = -p_k log10 p_k``;
- ``d_k`` = mean LPIPS over all pairs of (at most ``cluster_size``) members of ``S_k``; NaN if < 2;
- intra-cluster LPIPS = mean of the non-NaN ``d_k`` (CDC's diversity metric);
- B-LPIPS = ``sum_k H_k d_k`` over non-NaN ``d_k``; entropy = ``sum_k H_k``.

With K = 10 equal clusters every ``H_k`` is 0.1 and B-LPIPS equals intra-cluster LPIPS; with every
sample in one cluster ``H -> 0`` and B-LPIPS -> 0, so B-LPIPS penalises collapse onto few training
images. (Exactly then ``p_k = 1 + 1e-5 > 1`` makes ``H_k`` about ``-4.3e-6`` and B-LPIPS a tiny negative
number: the formula's, kept so values compare with the paper's.) The original script takes the first 1000 files and the first 50 members of each cluster in
``os.listdir`` order (arbitrary); here the N fakes are the first N by index (callers pass them in
seed order) and a cluster's members are a seeded random subset.

LPIPS (Zhang et al. 2018, eq. 1): ``d(x, y) = sum_l mean_hw || w_l * (f_l(x) - f_l(y)) ||^2`` over
unit-normalised backbone features ``f_l``. Each image's features are computed once (per stage) and
all pairs of a block come from one matrix product per layer (:func:`lpips_matrix`), so 1000 x 10
assignments and 10 x C(50, 2) pairs cost ~1,500 backbone passes instead of ~45,000.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import warnings
import weakref
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lfsgan.metrics.protocol import library_versions
from lfsgan.metrics.weights import (
    LPIPS_BACKBONE_FILES,
    TORCHVISION_HOST,
    file_identity,
    hub_checkpoint_path,
    is_published_weights,
    load_state_dict_safely,
    missing_weights_error,
    network_reachable,
    verify_hub_file,
)

BACKBONE_CONFIG_KEY = "evaluation.lpips.backbone_weights"
#: Smallest square input each backbone accepts (its pooling stack reaches 1x1); smaller images are upsampled.
LPIPS_MIN_SIZE = {"vgg": 16, "alex": 32, "squeeze": 32}
P_EPS = 1e-5  # added to p_k, as in evaluate_b_lpips.py
#: the fakes' LPIPS features are kept from the assignment for the within-cluster distances up to this size
#: (the demo's 200 fakes at 32 px: ~100 MB); larger sets are passed through the backbone a second time
KEEP_FEATURE_BYTES = 2**30


def _backbone_state_for_lpips(model, state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Map torchvision ``features`` keys (``features.<i>.<p>`` or ``<i>.<p>``) onto lpips' ``slice<s>.<i>.<p>``.

    lpips splits ``torchvision.models.<net>().features`` into ``slice1..sliceL`` keeping each layer's
    index as its name, so the index alone says which slice a parameter belongs to.
    """
    where = {}
    for slice_name, block in model.net.named_children():
        for idx, _ in block.named_children():
            where[idx] = slice_name
    mapped = {}
    for key, value in state.items():
        if key.startswith("classifier."):
            continue
        key = key.removeprefix("features.")
        idx = key.split(".", 1)[0]
        if idx not in where:
            raise ValueError(f"{path}: key {key!r} is not a layer of the lpips {model.pnet_type} backbone")
        mapped[f"{where[idx]}.{key}"] = value
    expected = set(model.net.state_dict())
    if set(mapped) != expected:
        missing = sorted(expected - set(mapped))[:5]
        raise ValueError(f"{path}: not a torchvision {model.pnet_type} `features` state dict (missing e.g. {missing})")
    return mapped


def _vgg16_features_only(pretrained: bool = False, **_) -> SimpleNamespace:
    """``torchvision.models.vgg16()`` as lpips uses it — ``.features`` only, initialised as torchvision
    initialises it (Kaiming normal, fan-out, zero bias) — without the 120 M-parameter classifier that
    lpips discards: building and initialising that took ~1.4 s of every job that builds LPIPS."""
    from torchvision.models import vgg

    if pretrained:
        raise ValueError("_vgg16_features_only builds a random backbone; pretrained weights come from torchvision")
    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return SimpleNamespace(features=features)


def _build_lpips(net: str, pnet_rand: bool):
    """``lpips.LPIPS`` v0.1 with its shipped linear layers; hides torchvision's ``pretrained=`` deprecation noise.

    With ``pnet_rand`` and VGG, lpips gets a VGG16 built without its classifier (its backbone is then
    either overwritten by loaded weights, or is the seeded random backbone: same architecture and
    initialisation law, drawn from the seed without the classifier's draws in between)."""
    import lpips
    import lpips.pretrained_networks as pn

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        if not (pnet_rand and net == "vgg"):
            return lpips.LPIPS(net=net, pnet_rand=pnet_rand, verbose=False)
        tv = pn.tv
        pn.tv = SimpleNamespace(vgg16=_vgg16_features_only)
        try:
            return lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        finally:
            pn.tv = tv


def make_lpips(
    net: str = "vgg",
    backbone_weights: str | os.PathLike | None = None,
    allow_random_backbone: bool = False,
    device: str = "cpu",
    *,
    seed: int = 0,
    allow_download: bool = True,
):
    """Build ``lpips.LPIPS`` (v0.1, its shipped linear layers) with the backbone weights from a known place.

    Backbone weights, in order of preference:

    1. ``backbone_weights`` (config key ``evaluation.lpips.backbone_weights``): a torchvision state dict
       of the backbone (full model or its ``features``), loaded with ``weights_only=True``;
    2. torchvision's file in the torch hub cache (e.g. ``vgg16-397923af.pth``), loaded the same way
       once its sha256 is the published one (else :class:`~lfsgan.metrics.weights.WrongWeightsError`);
    3. torchvision's download, if the network is reachable and ``allow_download``;
    4. a random backbone (seeded), only if ``allow_random_backbone``: real lpips code, but not the
       published LPIPS (protocol says ``comparable_to_published: false``).

    Otherwise raises :class:`MissingWeightsError`. The returned module is in eval mode with gradients
    off and carries ``lfsgan_protocol`` (net, weights path, sha256, comparability) for the metrics.
    """
    if net not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"LPIPS net {net!r} not supported; choose one of {sorted(LPIPS_BACKBONE_FILES)}")
    hub_file = hub_checkpoint_path(LPIPS_BACKBONE_FILES[net])
    path = Path(backbone_weights) if backbone_weights is not None else hub_file if hub_file.is_file() else None
    lin_file = f"lpips {library_versions()['lpips']} weights/v0.1/{net}.pth"
    info: dict = {"net": net, "version": "0.1", "linear_layers": lin_file}

    if path is not None:
        if backbone_weights is None:  # the hub cache's file: refuse one that is not torchvision's
            verify_hub_file(path, LPIPS_BACKBONE_FILES[net], f"LPIPS {net} backbone", BACKBONE_CONFIG_KEY)
        state = load_state_dict_safely(path, f"LPIPS {net} backbone", BACKBONE_CONFIG_KEY)
        model = _build_lpips(net, pnet_rand=True)
        model.net.load_state_dict(_backbone_state_for_lpips(model, state, path))
        identity = file_identity(path)
        official = is_published_weights(identity["sha256"], LPIPS_BACKBONE_FILES[net])
        info.update(
            backbone="config file" if backbone_weights is not None else "torch hub cache",
            backbone_weights_path=identity["path"],
            backbone_weights_sha256=identity["sha256"],
            comparable_to_published=True if official else None,
            note="ImageNet backbone (sha256 of torchvision's published file)" if official else
            f"backbone weights sha256 does not match torchvision's {LPIPS_BACKBONE_FILES[net]}; "
            "comparable to published LPIPS only if they are the same ImageNet weights in another container",
        )
    elif allow_download and network_reachable(TORCHVISION_HOST):
        model = _build_lpips(net, pnet_rand=False)
        identity = file_identity(hub_file)
        info.update(backbone="downloaded by torchvision", backbone_weights_path=identity["path"],
                    backbone_weights_sha256=identity["sha256"], comparable_to_published=True,
                    note="ImageNet backbone downloaded by torchvision")
    elif allow_random_backbone:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = _build_lpips(net, pnet_rand=True)
        info.update(backbone=f"random init (torch.manual_seed({seed}); VGG16 features built without the classifier)", backbone_weights_path=None,
                    backbone_weights_sha256=None, comparable_to_published=False,
                    note="Randomly initialised backbone with lpips' calibrated linear layers: a perceptual-style "
                    "distance, NOT the published LPIPS. Comparable only with values computed with the same seed.")
    else:
        raise missing_weights_error(f"LPIPS {net} backbone (torchvision ImageNet weights)", LPIPS_BACKBONE_FILES[net],
                                    TORCHVISION_HOST, BACKBONE_CONFIG_KEY)
    model = model.to(device).eval().requires_grad_(False)
    model.lfsgan_protocol = info
    return model


def lpips_features(model, x: torch.Tensor) -> list[torch.Tensor]:
    """Unit-normalised backbone features of float [B, 3, H, W] in [-1, 1]: one [B, C_l, H_l, W_l] per layer l."""
    import lpips

    x = model.scaling_layer(x)
    outs = _backbone(model, x)(x)
    return [lpips.normalize_tensor(f) for f in outs]


#: backbone -> (its weights' identity, a copy with channels-last conv weights)
_CHANNELS_LAST_BACKBONES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _backbone(model, x: torch.Tensor) -> nn.Module:
    """The LPIPS backbone to run ``x [B, 3, H, W]`` through: the model's own or, for a channels-last
    batch on the CPU (a generator's output), a copy whose weights are stored channels-last as well.

    oneDNN runs a channels-last batch in that layout either way; with contiguous weights it first
    reorders every weight on every call (about a fifth of the backbone's time for 16 images at 32 px
    on one thread: LFS-GAN's cluster assignment, every step). The features are bit-identical
    (tests/test_metrics.py pins it). A contiguous batch keeps the model's own backbone, since for it
    channels-last weights would change the convolution's arithmetic. The copy is made once per
    backbone and made again when the backbone's weights change (in place or replaced).
    """
    net = model.net
    if x.device.type != "cpu" or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return net
    stamp = tuple((p.data_ptr(), p._version) for p in net.parameters())
    cached = _CHANNELS_LAST_BACKBONES.get(net)
    if cached is None or cached[0] != stamp:
        cached = _CHANNELS_LAST_BACKBONES[net] = (stamp, copy.deepcopy(net).to(memory_format=torch.channels_last))
    return cached[1]


def _lin_weights(model) -> list[torch.Tensor]:
    """The 1x1 conv weight w_l [C_l] of each of lpips' linear layers (dropout is inactive in eval mode)."""
    out = []
    for lin in model.lins:
        conv = [m for m in lin.modules() if isinstance(m, torch.nn.Conv2d)]
        if len(conv) != 1 or conv[0].bias is not None or conv[0].out_channels != 1:
            raise ValueError("unexpected lpips linear layer; lfsgan supports lpips 0.1.4's NetLinLayer")
        out.append(conv[0].weight.flatten())  # [C_l]
    return out


def lpips_matrix(model, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS between every a and every b from their features (:func:`lpips_features`) -> float64 [A, B].

    lpips v0.1 computes ``d(a, b) = sum_l mean_hw sum_c w_lc (fa_lchw - fb_lchw)^2``. Expanding the
    square turns all A x B pairs into one matrix product per layer:
    ``mean_hw [sum_c w_c fa^2] + mean_hw [sum_c w_c fb^2] - 2 <w * fa, fb> / HW`` (float64, so the
    cancellation stays exact to ~1e-12; the tests pin it to ``lpips.LPIPS.forward``).
    """
    total = 0.0
    for w, a, b in zip(_lin_weights(model), fa, fb):
        hw = a.shape[2] * a.shape[3]
        w = w.double().view(1, -1, 1, 1)  # [1, C, 1, 1]
        a, b = a.double(), b.double()  # [A, C, H, W], [B, C, H, W]
        wa = (w * a).flatten(1)  # [A, C*H*W]
        sa = (wa * a.flatten(1)).sum(1)  # [A]
        sb = (w * b * b).flatten(1).sum(1)  # [B]
        total = total + (sa[:, None] + sb[None, :] - 2 * wa @ b.flatten(1).T) / hw  # [A, B]
    return total.clamp_min(0.0)


def _prepare(x: torch.Tensor, name: str, size: int | None, device) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 3:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor [N, 3, H, W] in [-1, 1], got {got}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(
            f"{name} values span [{lo:.3g}, {hi:.3g}]; LPIPS expects [-1, 1] (convert uint8 with x / 127.5 - 1)"
        )
    x = x.float().to(device)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def _features_batched(model, x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    chunks = [lpips_features(model, c) for c in x.split(batch_size)]
    return [torch.cat(layer) for layer in zip(*chunks)]


def _center_distances(
    model, x: torch.Tensor, f_centers: list[torch.Tensor], batch_size: int, quiet: bool, keep_bytes: int = 0
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """``LPIPS(x_n, y_k)`` for every fake n and centre k -> ([N, K], the fakes' features or None).

    ``f_centers`` from :func:`_features_batched`. The fakes' features (one ``[N, C_l, H_l, W_l]`` per
    layer) are returned when they fit in ``keep_bytes``, so the within-cluster distances need no second
    backbone pass over the members; otherwise they are dropped chunk by chunk (e.g. 1,000 fakes at
    256 px: tens of GB) and None is returned.
    """
    dist, kept, size = [], [], 0
    for chunk in tqdm(x.split(batch_size), desc="LPIPS assignment", disable=quiet):
        f = lpips_features(model, chunk)
        dist.append(lpips_matrix(model, f, f_centers))
        size += sum(t.numel() * t.element_size() for t in f)
        kept = kept + [f] if kept is not None and size <= keep_bytes else None
    features = [torch.cat(layer) for layer in zip(*kept)] if kept else None
    return torch.cat(dist), features


def _mean_pairwise(model, f: list[torch.Tensor]) -> float:
    """Mean LPIPS over all unordered pairs i < j of the n >= 2 images whose features (per layer
    ``[n, C_l, H_l, W_l]``, from :func:`lpips_features`) are ``f``."""
    n = f[0].shape[0]
    i, j = torch.triu_indices(n, n, offset=1)  # [n(n-1)/2] each
    return float(lpips_matrix(model, f, f)[i, j].mean())


def lpips_diversity(
    fake: torch.Tensor,
    centers: torch.Tensor,
    *,
    lpips_model,
    n_fake: int = 1000,
    cluster_size: int = 50,
    seed: int = 0,
    batch_size: int = 64,
    resize: int | None = None,
    reference: str | dict | None = None,
    progress: bool | None = None,
) -> dict:
    """Intra-cluster LPIPS, B-LPIPS and the cluster entropy of ``fake`` around ``centers``.

    Args:
        fake: float [>= n_fake, 3, H, W] in [-1, 1], in seed order; the first ``n_fake`` are used.
        centers: float [K, 3, H, W] in [-1, 1], the task's training images.
        lpips_model: from :func:`make_lpips`.
        cluster_size: at most this many members per cluster enter ``d_k``, drawn with ``seed``.
        batch_size: images per backbone pass.
        resize: square size to resize both sets to (LFS-GAN: 256); ``None`` keeps the native size,
            except below the backbone's minimum (vgg 16 px), where images are upsampled to it.
        reference: description of the centres, copied into the protocol.

    Returns:
        ``intra_lpips``, ``b_lpips``, ``entropy`` (floats; NaN if no cluster has 2 members),
        ``cluster_sizes`` ``|S_k|``, ``cluster_sizes_used``, ``d_k`` (None for NaN), ``H_k``, ``protocol``.
    """
    if fake.dim() != 4 or fake.shape[0] < n_fake:
        raise ValueError(f"fake has {fake.shape[0] if fake.dim() else 0} images; n_fake={n_fake} are required")
    if centers.dim() != 4 or centers.shape[0] < 1:
        raise ValueError(f"centers must be [K>=1, 3, H, W], got {tuple(centers.shape)}")
    if fake.shape[-2:] != centers.shape[-2:] and resize is None:
        raise ValueError(
            f"fake {tuple(fake.shape[-2:])} and centers {tuple(centers.shape[-2:])} differ in size; pass resize="
        )
    if cluster_size < 2:
        raise ValueError(f"cluster_size must be >= 2, got {cluster_size}")
    net = getattr(lpips_model, "pnet_type", "vgg")
    h, w = fake.shape[-2:]
    size = resize
    resize_rule = f"bilinear to {resize}x{resize} (requested)" if resize else "none (native resolution)"
    min_size = LPIPS_MIN_SIZE.get(net, 16)
    if size is not None and size < min_size:
        raise ValueError(f"resize={size} is below the LPIPS-{net} minimum input of {min_size} px")
    if size is None and min(h, w) < min_size:
        size = min_size
        resize_rule = f"bilinear {h}x{w} -> {size}x{size} (below the LPIPS-{net} minimum input of {size} px)"
    device = next(lpips_model.parameters()).device
    quiet = (not sys.stderr.isatty()) if progress is None else not progress

    with torch.no_grad():
        x = _prepare(fake[:n_fake], "fake", size, device)  # [N, 3, S, S]
        y = _prepare(centers, "centers", size, device)  # [K, 3, S, S]
        k = y.shape[0]
        dist, fx = _center_distances(lpips_model, x, _features_batched(lpips_model, y, batch_size), batch_size, quiet,
                                     keep_bytes=KEEP_FEATURE_BYTES)  # fx: the fakes' features, or None
        assign = dist.argmin(dim=1).cpu()  # [N]
        sizes = torch.bincount(assign, minlength=k)  # [K]
        p = sizes.double() / n_fake + P_EPS  # [K]
        entropy_k = -p * torch.log10(p)  # [K]  H_k

        g = torch.Generator().manual_seed(seed)
        d_k, used = [], []
        for c in tqdm(range(k), desc="LPIPS within clusters", disable=quiet):
            members = torch.nonzero(assign == c).flatten()  # ascending index
            if members.numel() > cluster_size:
                members = members[torch.randperm(members.numel(), generator=g)[:cluster_size]].sort().values
            used.append(int(members.numel()))
            pairs_exist = members.numel() >= 2
            if not pairs_exist:
                d_k.append(math.nan)
                continue
            members = members.to(device)
            f = [layer[members] for layer in fx] if fx is not None else _features_batched(lpips_model, x[members], batch_size)
            d_k.append(_mean_pairwise(lpips_model, f))

    d = torch.tensor(d_k, dtype=torch.float64)  # [K]
    valid = ~torch.isnan(d)
    intra = float(d[valid].mean()) if valid.any() else math.nan
    b_lpips = float((entropy_k[valid] * d[valid]).sum()) if valid.any() else math.nan
    unknown = {"note": "model not built by make_lpips: backbone unknown"}
    model_info = dict(getattr(lpips_model, "lfsgan_protocol", unknown))
    protocol = {
        "metric": "intra-cluster LPIPS and B-LPIPS (LFS-GAN evaluate_b_lpips.py)",
        "n_fake": n_fake,
        "n_centers": k,
        "cluster_size": cluster_size,
        "reference": reference,
        "fake_selection": f"first {n_fake} by index (callers pass samples in seed order)",
        "member_selection": f"clusters larger than {cluster_size}: seeded random subset (torch.randperm, seed {seed}, "
        "clusters in centre order); the original's listing order is replaced",
        "assignment": "argmin_k LPIPS(x_n, y_k)",
        "weights": f"p_k = |S_k|/N + {P_EPS:g}, H_k = -p_k log10 p_k",
        "seed": seed,
        "input_resolution": [int(h), int(w)],
        "resize": resize_rule,
        "lpips": model_info,
        "comparable_to_published": model_info.get("comparable_to_published"),
        "note": model_info.get("note"),
        "versions": library_versions(),
    }
    return {
        "intra_lpips": intra,
        "b_lpips": b_lpips,
        "entropy": float(entropy_k.sum()),
        "cluster_sizes": sizes.tolist(),
        "cluster_sizes_used": used,
        "d_k": [None if math.isnan(v) else v for v in d_k],
        "H_k": entropy_k.tolist(),
        "protocol": protocol,
    }
