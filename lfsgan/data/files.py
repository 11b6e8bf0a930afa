"""Find and read the image files of a folder or a ``.zip``.

Image files are PNG, JPEG and WebP, recognised by suffix (case-insensitive), found in subfolders
too. Hidden files and folders (any path component starting with ``.``), macOS ``__MACOSX`` folders
and every other file type are ignored. Names are relative POSIX paths, sorted as Python strings, so
the order (and with it the few-shot indices) is the same on every machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from lfsgan.io import sha256_file

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def is_image_name(relpath: str) -> bool:
    """True for a visible PNG/JPEG/WebP file name (``relpath`` is a relative POSIX path)."""
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
        raise ValueError(f"{source}: neither a folder nor a .zip archive; give a folder or a .zip of PNG/JPEG/WebP images")


def _starts_like_zip(path: Path) -> bool:
    """True if the file begins with a zip member header (``PK\\x03\\x04``), whatever its suffix."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _folder_files(root: Path) -> ImageFiles:
    names, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # skip hidden folders early
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


def _zip_files(path: Path, archive: zipfile.ZipFile) -> ImageFiles:
    members = [info.filename for info in archive.infolist() if not info.is_dir()]
    names = sorted({m for m in members if is_image_name(m)})
    return ImageFiles(
        description={"kind": "zip", "path": str(path), "sha256": sha256_file(path)},
        names=names,
        read=archive.read,
        where=lambda name: f"{path} (member {name})",
        others=sorted({m for m in members if _is_other(m)}),
    )


def _is_other(relpath: str) -> bool:
    """A visible file that is not an image (hidden files and ``__MACOSX`` are not counted)."""
    parts = PurePosixPath(relpath).parts
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts) and not is_image_name(relpath)


def _require_images(files: ImageFiles, source: Path) -> None:
    if not files.names:
        raise ValueError(
            f"{source}: no PNG/JPEG/WebP images found (subfolders searched; hidden files and other "
            f"file types are ignored); put the domain's images there or fix its `path` in the config"
        )
