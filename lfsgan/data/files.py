"""Find and read the image files of a folder or a ``.zip``.

Image files are PNG, JPEG, WebP, BMP, TIFF and GIF (:data:`IMAGE_FORMATS`), recognised by suffix
(case-insensitive), found in subfolders too. Hidden files and folders (any path component starting
with ``.``) and macOS ``__MACOSX`` folders are ignored. Every other visible file is *skipped* and
listed with the reason (:attr:`ImageFiles.skipped`; the preparation logs them and writes them into
the manifest), so no file leaves the set unnoticed. Names are relative POSIX paths, sorted as Python
strings, so the order (and with it the few-shot indices) is the same on every machine.

A symbolic link is followed: a linked file is read like a file, a linked folder like a subfolder (its
images are named by the path through the link). A folder reached twice (two links to one folder, or
a link to a folder above it) is an error naming both paths, as is a ``.zip`` holding two members of
one name (only the last would be readable).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from lfsgan.io import sha256_file

#: the image files lfsgan reads, by suffix, and the one Pillow decoder each must open with
IMAGE_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF",
}
IMAGE_SUFFIXES = frozenset(IMAGE_FORMATS)
FORMATS_TEXT = "PNG/JPEG/WebP/BMP/TIFF/GIF"


def is_image_name(relpath: str) -> bool:
    """True for a visible image file name of :data:`IMAGE_FORMATS` (``relpath`` is a relative POSIX path)."""
    path = PurePosixPath(relpath)
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass
class ImageFiles:
    """The image files of one folder or zip, in sorted order."""

    description: dict  # {"kind": "folder" | "zip", "path": str, ("sha256": str for a zip)}
    names: list[str]  # relative POSIX paths, sorted
    read: Callable[[str], bytes]  # name -> the file's bytes
    where: Callable[[str], str]  # name -> a location a person can find (for error messages)
    others: list[str] = dataclasses.field(default_factory=list)  # visible files that are not images, sorted

    @property
    def skipped(self) -> list[dict[str, str]]:
        """``[{"name", "reason"}]``: every visible file that is not read, and why."""
        return [{"name": name, "reason": skip_reason(name)} for name in self.others]


@functools.cache
def _pillow_formats() -> dict[str, str]:
    """Every suffix Pillow knows, with its format name."""
    from PIL import Image

    Image.init()
    return dict(Image.registered_extensions())


def skip_reason(relpath: str) -> str:
    """Why a visible file is not read: an image format lfsgan does not decode, or not an image."""
    fmt = _pillow_formats().get(PurePosixPath(relpath).suffix.lower())
    if fmt is not None:
        return f"a {fmt} file; lfsgan reads {FORMATS_TEXT} only: convert it to PNG to include it"
    return "not an image file (by its suffix)"


@contextlib.contextmanager
def open_image_files(source: str | os.PathLike) -> Iterator[ImageFiles]:
    """Open a folder or ``.zip`` of images; errors name the path and say what to do."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or .zip; check the domain's `path` in the config")
    if source.is_dir():
        files = _folder_files(source)
        _require_images(files, source)
        yield files
    elif zipfile.is_zipfile(source):
        try:
            archive = zipfile.ZipFile(source)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{source}: a damaged .zip archive ({e}); copy or download it again") from e
        with archive:
            files = _zip_files(source, archive)
            _require_images(files, source)
            yield files
    elif source.suffix.lower() == ".zip" or _starts_like_zip(source):
        raise ValueError(
            f"{source}: a truncated or damaged .zip archive (its central directory is missing: "
            "the copy or download stopped early); copy or download it again"
        )
    else:
        raise ValueError(f"{source}: neither a folder nor a .zip archive; give a folder or a .zip of {FORMATS_TEXT} images")


def _starts_like_zip(path: Path) -> bool:
    """True if the file begins with a zip member header (``PK\\x03\\x04``), whatever its suffix."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _folder_files(root: Path) -> ImageFiles:
    names, others = [], []
    reached: dict[str, str] = {}  # real folder -> the path it was first read through
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # skip hidden folders early
        _first_visit(reached, dirpath)
        rel = Path(dirpath).relative_to(root)
        names += [(rel / f).as_posix() for f in filenames if is_image_name((rel / f).as_posix())]
        others += [(rel / f).as_posix() for f in filenames if _is_other((rel / f).as_posix())]
    return ImageFiles(
        description={"kind": "folder", "path": str(root)},
        names=sorted(names),
        read=lambda name: (root / name).read_bytes(),
        where=lambda name: str(root / name),
        others=sorted(others),
    )


def _first_visit(reached: dict[str, str], folder: str) -> None:
    """Record ``folder``'s real path; a folder reached a second time (through a symlink) is an error."""
    real = os.path.realpath(folder)
    if real in reached:
        raise ValueError(
            f"{folder}: reaches the folder {real} a second time (first as {reached[real]}) through a symbolic link; "
            "its images would count twice (or forever, for a link to a folder above it): remove the link"
        )
    reached[real] = folder


def _zip_files(path: Path, archive: zipfile.ZipFile) -> ImageFiles:
    members = [info.filename for info in archive.infolist() if not info.is_dir()]
    twice = sorted(m for m, n in collections.Counter(members).items() if n > 1)
    if twice:
        raise ValueError(
            f"{path}: the .zip holds {len(twice)} name(s) more than once ({', '.join(twice[:5])}); only the last "
            "of each could be read: rebuild the .zip with one file per name"
        )
    names = sorted(m for m in members if is_image_name(m))
    return ImageFiles(
        description={"kind": "zip", "path": str(path), "sha256": sha256_file(path)},
        names=names,
        read=archive.read,
        where=lambda name: f"{path} (member {name})",
        others=sorted(m for m in members if _is_other(m)),
    )


def _is_other(relpath: str) -> bool:
    """A visible file that is not an image (hidden files and ``__MACOSX`` are not counted)."""
    parts = PurePosixPath(relpath).parts
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts) and not is_image_name(relpath)


def _require_images(files: ImageFiles, source: Path) -> None:
    if not files.names:
        raise ValueError(
            f"{source}: no {FORMATS_TEXT} images found (subfolders searched; hidden files are ignored, other "
            f"file types skipped); put the domain's images there or fix its `path` in the config"
        )
