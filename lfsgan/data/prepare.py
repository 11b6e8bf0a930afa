"""Prepare a dataset (folder, .zip or built-in demo domain) and load it back.

A prepared dataset is a folder with two files:

- ``images.pt`` — :func:`lfsgan.io.save_checkpoint` of ``{"images": uint8 [N, 3, R, R],
  "shots": uint8 [n_shots, 3, R, R]}``: the full set (the reference of FID/KID and LPIPS) and the
  few-shot training images, plus ``"labels": int64 [N]`` (the MNIST digit of each image) for the
  built-in demo domains;
- ``manifest.json`` — where every image came from (sorted names, sha256 of each source file or,
  for built-ins, of each generated image's bytes, original (w, h)), the crop/colour/resize policy,
  the few shots and how they were chosen, ``images_sha256`` (the key under which metrics cache
  real-image statistics), ``shots_sha256`` and software versions. No timestamps: preparing twice
  gives the same manifest.

The few shots are either **drawn** from the full set with ``shot_seed`` (``shots`` lists their
indices) or **given** as a folder/zip of their own (``shot_files`` lists them with their sha256, and
``shots`` the index of the byte-identical full-set file where there is one, else null) — the layout
of released few-shot benchmarks, which ship a fixed 10-shot set beside the full set. Shots are
distinct images: two shots with one sha256 (a file copied twice into the shots folder, or a drawn
pair of duplicates of the full set) are an error naming both, since n shots would silently be fewer.

Nothing leaves the full set unnoticed: the visible files that are not read (:mod:`lfsgan.data.files`
says which are) are logged and listed with the reason in ``skipped``, and groups of byte-identical
files of the full set in ``duplicate_files`` (logged too; they stay in the reference set).

The folder is built beside ``out_dir`` under a temporary name and renamed when complete, so a job
killed midway leaves nothing that looks finished.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

import lfsgan
from lfsgan.data.demo import BUILTIN_PREFIX, demo_domain
from lfsgan.data.files import FORMATS_TEXT, ImageFiles, open_image_files
from lfsgan.data.images import COLOUR_POLICY, CROP_POLICY, centre_crop_resize, decode_rgb, resample_filter, to_chw
from lfsgan.data.mnist import load_mnist_5k
from lfsgan.data.sampler import to_float
from lfsgan.io import load_checkpoint, save_checkpoint, write_json

FORMAT = "lfsgan-prepared-dataset"
FORMAT_VERSION = 2
IMAGES_FILE, MANIFEST_FILE = "images.pt", "manifest.json"
SHOT_RULE = "sorted(numpy.random.default_rng(shot_seed).choice(n_images, n_shots, replace=False))"
log = logging.getLogger(__name__)
_REQUIRED_KEYS = ("format", "format_version", "n_images", "resolution", "shots", "shot_seed", "images_sha256", "shots_sha256", "files")


def images_sha256(images: torch.Tensor) -> str:
    """sha256 of a uint8 tensor's bytes in C order (``[N, 3, R, R]``: image, channel, row, column)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return hashlib.sha256(memoryview(images.detach().cpu().contiguous().numpy())).hexdigest()


def choose_shots(n_images: int, n_shots: int, seed: int, where: str = "dataset") -> list[int]:
    """The few-shot subset: ``sorted(default_rng(seed).choice(n_images, n_shots, replace=False))``."""
    if n_shots < 0:
        raise ValueError(f"n_shots must be >= 0, got {n_shots}")
    if n_images < n_shots:
        raise ValueError(f"{where}: found {n_images} image(s), fewer than n_shots={n_shots}; add images or lower data.n_shots")
    chosen = np.random.default_rng(seed).choice(n_images, n_shots, replace=False)
    return sorted(int(i) for i in chosen)


def prepare_dataset(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resolution: int,
    resize_filter: str = "lanczos",
    n_shots: int = 10,
    shot_seed: int = 0,
    shots_source: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Prepare ``source`` into ``out_dir`` (``images.pt`` + ``manifest.json``) and return the manifest.

    ``source``: a folder or ``.zip`` of images (:data:`lfsgan.data.files.IMAGE_FORMATS`, subfolders searched), or the string
    ``"builtin:NAME"`` for a demo domain (:data:`lfsgan.data.demo.DEMO_DOMAINS`). Each image is
    decoded to RGB, centre-cropped to a square and resized to ``resolution`` with ``resize_filter``
    (policies in :mod:`lfsgan.data.images`). ``shots_source``: a folder or ``.zip`` holding exactly
    ``n_shots`` images, the fixed training shots (then ``shot_seed`` is not used). An existing
    ``out_dir`` is replaced only if it is empty or a prepared dataset. ``progress``: None = a tqdm bar
    only on a terminal.
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    resample_filter(resize_filter)  # fail on a bad name before reading anything
    out_dir = Path(out_dir)
    is_builtin = isinstance(source, str) and source.startswith(BUILTIN_PREFIX)
    _check_out_dir(out_dir, None if is_builtin else Path(source))

    labels, skipped = None, []
    if is_builtin:
        images, files, source_info, labels = _render_builtin(source, resolution, resize_filter)
        shots = choose_shots(len(files), n_shots, shot_seed, where=source)
        crop, colour = source_info["canvas"], "RGB rendered by the recipe (source.description)"
    else:
        with open_image_files(source) as found:
            shots = choose_shots(len(found.names), n_shots, shot_seed, where=str(source))
            images, files = _read_files(found, resolution, resize_filter, progress)
            source_info, skipped = found.description, found.skipped
        crop, colour = CROP_POLICY, COLOUR_POLICY
    _log_skipped(source, skipped)
    duplicates = _duplicate_groups(files)
    if duplicates:
        log.warning("%s: %d group(s) of identical files in the full set (kept; listed in the manifest's duplicate_files), "
                    "e.g. %s", source, len(duplicates), " = ".join(duplicates[0]))

    shot_files = None
    if shots_source is not None:
        shot_images, shot_files = _read_shots(Path(shots_source), n_shots, resolution, resize_filter)
        _refuse_duplicate_shots(shot_files, f"the shots {shots_source}", "remove one and add another image")
        by_sha = {f["sha256"]: i for i, f in enumerate(files)}
        shots = [by_sha.get(f["sha256"]) for f in shot_files]
    else:
        _refuse_duplicate_shots([files[i] for i in shots], f"the shots drawn from {source}",
                                "remove the duplicate file from the full set (or change data.shot_seed)")
        shot_images = images[torch.as_tensor(shots, dtype=torch.long)]

    digest = images_sha256(images)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source_info,
        "files": files,  # [{"name", "sha256", "size": [w, h]}] in sorted order = image order
        "n_images": len(files),
        "skipped": skipped,  # [{"name", "reason"}]: visible files of the source that are not images lfsgan reads
        "duplicate_files": duplicates,  # groups of names with one sha256 (all kept in the full set)
        "resolution": resolution,
        "resize_filter": resize_filter,
        "crop": crop,
        "colour": colour,
        "n_shots": n_shots,
        "shots": shots,
        "shot_seed": shot_seed if shot_files is None else None,
        "shot_rule": SHOT_RULE if shot_files is None else f"given: every image of {shots_source}, sorted by name",
        "shot_files": shot_files,
        "shots_sha256": images_sha256(shot_images),
        "images_sha256": digest,
        "images_layout": f"{IMAGES_FILE} keys 'images': uint8 [N, 3, R, R] and 'shots': uint8 [n_shots, 3, R, R], RGB",
        "labels": None if labels is None else {
            "kind": "digit", "layout": f"{IMAGES_FILE} key 'labels': int64 [N], the MNIST class of each image",
            "classes": sorted(set(labels.tolist())), "sha256": hashlib.sha256(labels.numpy().tobytes()).hexdigest()},
        "lfsgan_version": lfsgan.__version__,
        "pillow_version": importlib.metadata.version("pillow"),
        "numpy_version": np.__version__,
    }
    meta = {"format": FORMAT, "n_images": len(files), "resolution": resolution, "images_sha256": digest}
    with _atomic_dir(out_dir) as tmp:
        tensors = {"images": images, "shots": shot_images}
        if labels is not None:
            tensors["labels"] = labels
        save_checkpoint(tmp / IMAGES_FILE, tensors, meta)
        write_json(tmp / MANIFEST_FILE, manifest)
    return manifest


def _log_skipped(source: Any, skipped: list[dict[str, str]]) -> None:
    if skipped:
        shown = "; ".join(f"{f['name']} ({f['reason']})" for f in skipped[:5])
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        log.warning("%s: skipped %d file(s), listed in the manifest's 'skipped': %s%s", source, len(skipped), shown, more)


def _duplicate_groups(files: list[dict]) -> list[list[str]]:
    """Names of files with one sha256, in groups of two or more (sorted)."""
    by_sha = collections.defaultdict(list)
    for f in files:
        by_sha[f["sha256"]].append(f["name"])
    return sorted(names for names in by_sha.values() if len(names) > 1)


def _refuse_duplicate_shots(shots: list[dict], what: str, fix: str) -> None:
    """ValueError naming the first two shots that are the same file (by sha256)."""
    groups = _duplicate_groups(shots)
    if groups:
        raise ValueError(
            f"{what}: {groups[0][0]} and {groups[0][1]} are the same image (sha256 "
            f"{next(f['sha256'] for f in shots if f['name'] == groups[0][0])[:16]}...), so there would be fewer "
            f"distinct shots than data.n_shots; {fix}"
        )


def _read_files(found: ImageFiles, resolution: int, resize_filter: str, progress: bool | None) -> tuple[torch.Tensor, list[dict]]:
    images = torch.empty(len(found.names), 3, resolution, resolution, dtype=torch.uint8)  # [N, 3, R, R]
    files = []
    bar = tqdm(found.names, desc="prepare", unit="img", disable=None if progress is None else not progress, mininterval=5)
    for i, name in enumerate(bar):
        where = found.where(name)
        try:
            data = found.read(name)
        except Exception as e:  # unreadable file or zip member (permissions, encryption, bad CRC...)
            raise ValueError(f"{where}: cannot read image ({type(e).__name__}: {e}); remove or replace it") from e
        img = decode_rgb(data, where)
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": list(img.size)})
        images[i] = to_chw(centre_crop_resize(img, resolution, resize_filter))
    return images, files


def _read_shots(source: Path, n_shots: int, resolution: int, resize_filter: str) -> tuple[torch.Tensor, list[dict]]:
    """The given few-shot set: exactly ``n_shots`` images, nothing else visible in the folder/zip."""
    with open_image_files(source) as found:
        others = [n for n in found.others if not n.endswith("/")]
        if others:
            raise ValueError(
                f"{found.where(others[0])}: not a {FORMATS_TEXT} image, in the shots folder {source}; "
                f"a shots folder holds only the {n_shots} training images"
            )
        if len(found.names) != n_shots:
            raise ValueError(
                f"{source}: holds {len(found.names)} shot image(s) but data.n_shots is {n_shots}; "
                "give exactly n_shots images or change data.n_shots"
            )
        return _read_files(found, resolution, resize_filter, progress=False)


def _render_builtin(source: str, resolution: int, resize_filter: str) -> tuple[torch.Tensor, list[dict], dict, torch.Tensor]:
    """A demo domain's images, its "files" (rows of mnist_5k.csv.gz, hashed as generated) and the
    digit of each image (int64 [N])."""
    domain = demo_domain(source)
    images = domain.render(resolution, resize_filter)  # [N, 3, R, R]
    digit_of = load_mnist_5k().labels  # cached
    files = [
        {"name": f"row{row:04d}-digit{digit_of[row]}", "sha256": images_sha256(images[i]), "size": [28, 28]}
        for i, row in enumerate(domain.rows())
    ]
    labels = torch.from_numpy(digit_of[domain.rows()].astype(np.int64))  # [N]
    return images, files, {"kind": "builtin", **domain.recipe()}, labels


def _check_out_dir(out_dir: Path, source: Path | None) -> None:
    """Refuse to replace anything that is not an empty folder or a prepared dataset."""
    if source is not None and source.exists():
        src, out = source.resolve(), out_dir.resolve()
        if src == out or out in src.parents:
            raise ValueError(f"{out_dir}: the output folder would contain the source {source}; choose another out_dir")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder; remove it or choose another out_dir")
    if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise FileExistsError(f"{out_dir}: exists and is not a prepared dataset (no {MANIFEST_FILE}); remove it or choose another out_dir")


@contextlib.contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; it becomes ``out_dir`` only if the block succeeds."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = tmp.with_suffix(".old")
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); give it a normal folder's mode
        yield tmp
        if out_dir.exists():
            out_dir.rename(old)  # a folder cannot be replaced by rename; move the old one aside first
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class PreparedDataset:
    """A prepared dataset in memory: ``images`` uint8 ``[N, 3, R, R]``, its ``manifest``, the training
    shots and, for the built-in demo domains, each image's digit ``labels`` int64 ``[N]`` (else None)."""

    path: Path
    images: torch.Tensor
    manifest: dict[str, Any]
    shot_images: torch.Tensor  # uint8 [n_shots, 3, R, R]
    labels: torch.Tensor | None = None

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    def shots(self) -> torch.Tensor:
        """The few-shot training images, uint8 ``[n_shots, 3, R, R]`` (drawn from the full set or given)."""
        return self.shot_images

    def as_float(self) -> torch.Tensor:
        """All images as float ``[N, 3, R, R]`` in [-1, 1]."""
        return to_float(self.images)


def load_prepared(path: str | os.PathLike, verify: bool = True) -> PreparedDataset:
    """Load a folder written by :func:`prepare_dataset`, checking images and manifest agree.

    ``verify`` also recomputes ``images_sha256`` (a second per GB of images).
    """
    path = Path(path)
    redo = "run `lfsgan prepare` (or the Snakemake rule prepare_data) for this domain"
    manifest_path, images_path = path / MANIFEST_FILE, path / IMAGES_FILE
    if not manifest_path.is_file() or not images_path.is_file():
        raise FileNotFoundError(f"{path}: not a prepared dataset ({MANIFEST_FILE} and {IMAGES_FILE} expected); {redo}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as e:
        raise ValueError(f"{manifest_path}: not valid JSON ({e}); {redo}") from e
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing or manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: not a {FORMAT} v{FORMAT_VERSION} manifest (missing {missing}, format "
            f"{manifest.get('format')!r} v{manifest.get('format_version')!r}); {redo}"
        )
    tensors, meta = load_checkpoint(images_path)
    images = tensors.get("images")
    n, r = manifest["n_images"], manifest["resolution"]
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or tuple(images.shape) != (n, 3, r, r):
        found = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else "no 'images' tensor"
        raise ValueError(f"{images_path}: expected uint8 [{n}, 3, {r}, {r}] as the manifest says, found {found}; {redo}")
    if meta.get("images_sha256") != manifest["images_sha256"]:
        raise ValueError(f"{path}: {IMAGES_FILE} and {MANIFEST_FILE} come from different preparations; {redo}")
    if verify and images_sha256(images) != manifest["images_sha256"]:
        raise ValueError(f"{images_path}: the images do not match the manifest's images_sha256 (file changed); {redo}")
    if any(i is not None and not 0 <= i < n for i in manifest["shots"]):
        raise ValueError(f"{manifest_path}: shot indices {manifest['shots']} out of range for {n} images; {redo}")
    shots = tensors.get("shots")
    if not isinstance(shots, torch.Tensor) or shots.dtype != torch.uint8 or tuple(shots.shape) != (len(manifest["shots"]), 3, r, r):
        raise ValueError(f"{images_path}: no uint8 'shots' tensor of {len(manifest['shots'])} images as the manifest says; {redo}")
    if verify and images_sha256(shots) != manifest.get("shots_sha256"):
        raise ValueError(f"{images_path}: the shots do not match the manifest's shots_sha256 (file changed); {redo}")
    labels = tensors.get("labels")
    if (labels is None) != (manifest.get("labels") is None):
        raise ValueError(f"{path}: {MANIFEST_FILE} and {IMAGES_FILE} disagree on whether digit labels exist; {redo}")
    if labels is not None and (labels.dtype != torch.int64 or tuple(labels.shape) != (n,)):
        raise ValueError(f"{images_path}: 'labels' must be int64 [{n}], found {labels.dtype} {tuple(labels.shape)}; {redo}")
    return PreparedDataset(path=path, images=images, manifest=manifest, shot_images=shots, labels=labels)
