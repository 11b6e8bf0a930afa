"""A small CNN feature extractor for FID/KID on the offline CPU demo (NON-STANDARD features).

FID/KID with torch-fidelity's Inception costs ~0.2 s per image on a 2-core CPU (the network runs at
299x299) and needs weights from the network. For the offline demo a small CNN is trained by the
pipeline as a domain/class classifier on the demo's own data, at the images' native resolution; its
penultimate activations (128-d, scaled to norm sqrt(128)) replace Inception's pool3 features
(2048-d). A second head classifies the digit (the built-in domains are MNIST digits, their labels recorded at
preparation); :mod:`lfsgan.metrics.quality` reads both heads. The digit head also learns from
*digit-only* images (domain label ``-1``: they do not train the domain head) — in the workflow every
MNIST digit 0–9 drawn in each domain's style — so that it reads a digit the same in every style;
those images shape the shared features too, so FID values move with them (they are part of the
weights file whose sha256 every FID protocol records). FID computed with a domain classifier is common practice on MNIST-like data, but the
values are **not comparable to published FID**: only to values computed with the same weights file
(its sha256 is recorded).

The weights file is a tensors-only checkpoint (:mod:`lfsgan.io`) whose ``meta`` holds the
architecture, the training resolution and how it was trained.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lfsgan.io import load_checkpoint, save_checkpoint

from .weights import file_identity

DEMO_EXTRACTOR_NAME = "lfsgan-demo-cnn"
#: Feature names the extractor provides to torch-fidelity.
PENULTIMATE = "penultimate"
LOGITS = "logits"


class DemoCNN(nn.Module):
    """Four 3x3 conv blocks (stride 1, 2, 2, 2) -> global average pool -> FC (penultimate) -> FC (logits),
    and with ``n_digits > 0`` a second FC on the same penultimate features: the digit head.

    The penultimate features are scaled onto the sphere of radius sqrt(feature_dim): a classifier
    trained to near-zero loss otherwise inflates them without bound, and KID's kernel
    ``(a.b / d + 1)^3`` stays in [0, 8] this way.
    """

    def __init__(
        self,
        n_classes: int,
        resolution: tuple[int, int],
        widths: tuple[int, ...] = (16, 32, 64, 128),
        feature_dim: int = 128,
        n_digits: int = 0,
    ):
        super().__init__()
        self.n_digits = int(n_digits)
        self.n_classes = int(n_classes)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.widths = tuple(int(w) for w in widths)
        self.feature_dim = int(feature_dim)
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(self.widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, self.n_classes)
        self.digit_head = nn.Linear(self.feature_dim, self.n_digits) if self.n_digits else None

    def arch(self) -> dict:
        """Everything needed to rebuild the module; stored in the checkpoint's meta."""
        return {
            "n_classes": self.n_classes,
            "resolution": list(self.resolution),
            "widths": list(self.widths),
            "feature_dim": self.feature_dim,
            "n_digits": self.n_digits,
        }

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> float [B, 3, h, w] in [-1, 1] at the training resolution.

        Images at another size are resized with antialiased bilinear interpolation (recorded in the
        FID protocol as the resize policy).
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            got = f"{images.dtype} {tuple(images.shape)}"
            raise ValueError(f"{DEMO_EXTRACTOR_NAME} expects uint8 images [B, 3, H, W], got {got}")
        x = images.float() / 127.5 - 1.0  # [B, 3, H, W]
        if tuple(x.shape[-2:]) != self.resolution:
            x = F.interpolate(x, size=self.resolution, mode="bilinear", align_corners=False, antialias=True)
        return x

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B, 3, H, W] -> (penultimate [B, feature_dim], logits [B, n_classes])."""
        h = self.convs(self.to_input(images))  # [B, C, h/8, w/8]
        h = h.mean(dim=(2, 3))  # [B, C]
        f = F.leaky_relu(self.fc(h), 0.2)  # [B, feature_dim]
        f = F.normalize(f, dim=1) * self.feature_dim**0.5  # [B, feature_dim], ||f|| = sqrt(d)
        return f, self.head(f)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)[1]

    def heads(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """uint8 [B, 3, H, W] -> (penultimate [B, feature_dim], domain logits [B, n_classes],
        digit logits [B, n_digits] or None without a digit head)."""
        f, logits = self.features(images)
        return f, logits, None if self.digit_head is None else self.digit_head(f)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) indices: a seeded permutation of ``0..n-1``, its first ``round(fraction·n)``
    held out (at least one image when ``fraction > 0``)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = 0 if fraction <= 0 else max(1, round(fraction * n))
    return perm[k:].sort().values, perm[:k].sort().values


def train_demo_extractor(
    images: torch.Tensor,
    labels: torch.Tensor,
    out_path: str | os.PathLike,
    seed: int = 0,
    steps: int = 300,
    *,
    batch_size: int = 64,
    lr: float = 1e-3,
    label_names: list[str] | None = None,
    digits: torch.Tensor | None = None,
    styles: torch.Tensor | None = None,
    style_names: list[str] | None = None,
    holdout: float = 0.1,
    data_identity: list[dict] | None = None,
    inputs_sha256: str | None = None,
    progress: bool | None = None,
) -> dict:
    """Train :class:`DemoCNN` as a domain/class classifier (cross-entropy, Adam) and save it; with
    ``digits``, jointly as a digit classifier too (loss = CE(domain) + CE(digit)).

    Args:
        images: uint8 [N, 3, H, W], the demo's images of every domain/class to separate.
        labels: int64 [N], class index in ``0..C-1``; ``-1`` marks an image that trains only the digit
            head (e.g. a digit the domains do not hold, drawn in a domain's style).
        out_path: checkpoint to write (tensors-only, atomic).
        seed: seeds the initialisation and the minibatch draws.
        steps: optimiser steps; 300 steps at 32x32 take well under a minute on 2 CPU cores.
        digits: int64 [N], each image's digit ``0..9`` (a digit head is trained); None: domain only.
        styles: int64 [N], each image's style index into ``style_names``: the digit head's held-out
            accuracy is recorded per style (``heldout_accuracy["digit_per_style"]``).
        holdout: fraction of the images (seeded by ``seed``) never trained on; the accuracy of both
            heads on them is recorded in the meta (``heldout_accuracy``).
        data_identity: what the images are (e.g. each prepared set's name and images_sha256), recorded.
        inputs_sha256: a digest of every training input (images, labels, digits, styles), recorded: what a
            shipped copy of the file is checked against before it stands in for training it.
        progress: tqdm bar; ``None`` shows it only on a terminal.

    Returns:
        The checkpoint's meta plus ``path`` and ``sha256`` of the written file.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    labels = torch.as_tensor(labels)
    if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be int64 [N={images.shape[0]}], got {labels.dtype} {tuple(labels.shape)}")
    n_classes = int(labels.max()) + 1
    if labels.min() < (-1 if digits is not None else 0) or n_classes < 2:
        lo, hi = int(labels.min()), int(labels.max())
        raise ValueError(f"labels must be 0..C-1 with C >= 2 classes (-1 only beside digits), got min {lo} max {hi}")
    if label_names is not None and len(label_names) != n_classes:
        raise ValueError(f"label_names has {len(label_names)} names for {n_classes} classes")

    if digits is not None:
        digits = torch.as_tensor(digits)
        if digits.dtype != torch.int64 or digits.shape != labels.shape or int(digits.min()) < 0:
            raise ValueError(f"digits must be int64 [N={images.shape[0]}] in 0..9, got {digits.dtype} {tuple(digits.shape)}")
    n_digits = 0 if digits is None else int(digits.max()) + 1
    train_idx, held_idx = holdout_split(images.shape[0], holdout, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = DemoCNN(n_classes, tuple(images.shape[-2:]), n_digits=n_digits)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    quiet = None if progress is None else not progress  # tqdm: None = only on a terminal
    for _ in tqdm(range(steps), desc=f"train {DEMO_EXTRACTOR_NAME}", disable=quiet):
        idx = train_idx[torch.randint(0, len(train_idx), (batch_size,), generator=g)]  # [B]
        _, logits, digit_logits = net.heads(images[idx])
        has_domain = labels[idx] >= 0  # digit-only images (-1) do not train the domain head
        loss = F.cross_entropy(logits[has_domain], labels[idx][has_domain]) if has_domain.any() else logits.new_zeros(())
        if digit_logits is not None:
            loss = loss + F.cross_entropy(digit_logits, digits[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()

    with torch.no_grad():
        outs = [net.heads(chunk) for chunk in images.split(256)]
    pred = torch.cat([o[1].argmax(1) for o in outs])  # [N]
    digit_pred = torch.cat([o[2].argmax(1) for o in outs]) if digits is not None else None

    def accuracy(p: torch.Tensor | None, y: torch.Tensor | None, idx: torch.Tensor) -> float | None:
        if p is not None:
            idx = idx[y[idx] >= 0]  # images with a label for this head
        return None if p is None or len(idx) == 0 else float((p[idx] == y[idx]).float().mean())

    per_style = None
    if styles is not None and digit_pred is not None:
        names = style_names or [str(i) for i in range(int(styles.max()) + 1)]
        per_style = {name: accuracy(digit_pred, digits, held_idx[styles[held_idx] == i]) for i, name in enumerate(names)}
    meta = {
        "kind": DEMO_EXTRACTOR_NAME,
        "arch": net.arch(),
        "trained": True,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "n_images": int(images.shape[0]),
        "training_data": data_identity,
        "inputs_sha256": inputs_sha256,
        "class_counts": torch.bincount(labels[labels >= 0], minlength=n_classes).tolist(),
        "label_names": label_names,
        "train_accuracy": accuracy(pred, labels, train_idx),
        "heldout": {"fraction": holdout, "n_images": int(len(held_idx)), "rule": "torch.randperm(N, Generator(seed))[:round(fraction*N)]"},
        "heldout_accuracy": {"domain": accuracy(pred, labels, held_idx), "digit": accuracy(digit_pred, digits, held_idx),
                             "digit_per_style": per_style},
        "n_digit_only_images": int((labels < 0).sum()),
        "train_accuracy_digit": accuracy(digit_pred, digits, train_idx),
        "digit_counts": None if digits is None else torch.bincount(digits, minlength=n_digits).tolist(),
        "final_loss": float(loss.detach()),
    }
    save_checkpoint(out_path, net.state_dict(), meta)
    return {**meta, **file_identity(out_path)}


def load_demo_extractor(path: str | os.PathLike) -> tuple[DemoCNN, dict]:
    """Rebuild a :class:`DemoCNN` from a checkpoint written by :func:`train_demo_extractor`."""
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != DEMO_EXTRACTOR_NAME or "arch" not in meta:
        raise ValueError(
            f"{path}: not a {DEMO_EXTRACTOR_NAME} weights file (meta kind={meta.get('kind')!r}); "
            "write one with lfsgan.metrics.train_demo_extractor"
        )
    a = meta["arch"]
    net = DemoCNN(a["n_classes"], tuple(a["resolution"]), tuple(a["widths"]), a["feature_dim"], a.get("n_digits", 0))
    net.load_state_dict(tensors)
    net.requires_grad_(False)
    net.eval()
    return net, meta
