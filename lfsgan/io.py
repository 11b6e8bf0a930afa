"""Checkpoints: tensors only, atomic writes, safe loading.

A checkpoint is a ``torch.save``d dict whose values are tensors, nested dicts of tensors, or a
JSON string under ``"meta"``. It loads with ``torch.load(..., weights_only=True)``: nothing in it
can execute code. Files are written to a temporary name in the destination folder and renamed on
success, so a killed job never leaves a file that looks finished. A killed writer leaves only its
hidden temporary (``.<name>.<random>.tmp``); the next write of the same file removes it
(:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

META_KEY = "meta"
TEMP_SUFFIX = ".tmp"  # of atomic_path's temporaries: .<name>.<random>.tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until the rename: marks the temporary as in use
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600; give the file the permissions the umask allows
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Delete the temporaries that killed :func:`atomic_path` writers left in ``folder`` (of the file
    ``name``, or of every file); return what was removed.

    A live writer holds an exclusive ``flock`` on its temporary from creation to rename, so a
    temporary whose lock can be taken has no writer any more; one still being written is left alone
    (two jobs may write the same cache file at once).
    """
    removed = []
    pattern = f".{glob.escape(name) if name != '*' else '*'}.*{TEMP_SUFFIX}"
    for tmp in Path(folder).glob(pattern):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:  # gone meanwhile (renamed by its writer) or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a writer is alive
        else:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def _check_tensors(obj: Any, where: str) -> None:
    if isinstance(obj, torch.Tensor):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint key {k!r} at {where} is not a string")
            _check_tensors(v, f"{where}.{k}")
        return
    raise TypeError(f"checkpoint value at {where} is {type(obj).__name__}; only tensors and dicts of tensors are stored")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Any], meta: dict | None = None) -> None:
    """Write ``tensors`` (nested dicts of tensors) and JSON-serialisable ``meta`` atomically."""
    _check_tensors(tensors, "<root>")
    if META_KEY in tensors:
        raise ValueError(f"'{META_KEY}' is reserved for metadata")
    payload: dict[str, Any] = {k: _detach(v) for k, v in tensors.items()}
    payload[META_KEY] = json.dumps(meta or {}, sort_keys=True)
    # Save through a file object: torch.save(path) names the zip records after the (random) temp
    # file name, which would make identical checkpoints differ in bytes (and in sha256).
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    return {k: _detach(v) for k, v in obj.items()}


def _unloadable(path: Path, e: BaseException) -> str:
    """Why ``path`` could not be loaded, in one line (an empty file is the usual interrupted copy)."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes), e.g. an interrupted copy or download; copy or create it again"
    first = str(e).strip().splitlines()
    return first[0] if first else type(e).__name__


def refuse_non_finite(obj: Any, path: str | os.PathLike, where: str = "") -> None:
    """Raise :class:`ValueError` naming ``path`` and the entry if a floating-point tensor in ``obj``
    (nested dicts/lists of tensors) holds NaN or inf. Every checkpoint loader calls this, so weights
    that diverged elsewhere never enter a run."""
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            bad = int((~torch.isfinite(obj)).sum())
            raise ValueError(
                f"{path}: '{where}' holds {bad} non-finite value(s) (NaN/inf); these weights diverged. "
                "Use another checkpoint or retrain (e.g. with lower learning rates)"
            )
    elif isinstance(obj, dict):
        for k, v in obj.items():
            refuse_non_finite(v, path, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            refuse_non_finite(v, path, f"{where}[{i}]")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(tensors, meta)``.

    Refuses (``ValueError`` naming the file) anything that is not tensors-only, and non-finite weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt file or pickled code objects
        raise ValueError(f"{path}: not a loadable tensors-only checkpoint ({_unloadable(path, e)})") from e
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict at the top level, found {type(payload).__name__}")
    meta_raw = payload.pop(META_KEY, "{}")
    meta = json.loads(meta_raw) if isinstance(meta_raw, str) else {}
    refuse_non_finite(payload, path)
    return payload, meta


def key_mismatch(expected: Any, found: Any, show: int = 3) -> str:
    """``""`` if the two key collections are equal, else ``"missing [...], unexpected [...]"`` (at
    most ``show`` of each, sorted) for an error message about a state dict that does not fit."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if not missing and not unexpected:
        return ""

    def head(keys: list) -> str:
        return f"{keys[:show]}{' …' if len(keys) > show else ''}"

    return f"missing {head(missing)}, unexpected {head(unexpected)}"


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any], show: int = 3) -> str:
    """``""`` if state dict ``found`` has exactly the keys and shapes of ``expected`` (a module's
    ``state_dict()``), else one line saying which keys or shapes differ (at most ``show`` of each)."""
    keys = key_mismatch(expected, found, show)
    if keys:
        return keys
    shapes = [
        f"{k} {list(getattr(found[k], 'shape', []))} (model {list(v.shape)})"
        for k, v in expected.items()
        if tuple(getattr(found[k], "shape", ())) != tuple(v.shape)
    ]
    return f"shapes differ: {', '.join(shapes[:show])}{' …' if len(shapes) > show else ''}" if shapes else ""


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically, keys sorted, human-readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class _Skipped:
    """Stand-in for a pickled object the safe loader must not build (e.g. ``argparse.Namespace``):
    it only keeps the plain state torch's weights-only unpickler hands it; no foreign code runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


#: globals that checkpoints from other codebases carry beside their tensors, replaced by a stand-in
FOREIGN_GLOBALS = ("argparse.Namespace",)


def load_foreign_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """Load a checkpoint written by another codebase (e.g. rosinality's ``{"g", "d", "g_ema", "args", ...}``)
    with ``weights_only=True``.

    PyTorch >= 2.6 refuses such files because they pickle an ``argparse.Namespace``. Here the
    Namespace is replaced by an inert stand-in and dropped; tensors, dicts, lists and numbers are
    kept. Returns ``(payload, skipped)`` where ``skipped`` describes every dropped entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([(_Skipped, name) for name in FOREIGN_GLOBALS]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path}: cannot be loaded safely (weights_only=True): {_unloadable(path, e)}. "
            "A checkpoint must hold only tensors, containers and numbers; lfsgan does not unpickle code."
        ) from e
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict at the top level, found {type(payload).__name__}")
    kept, skipped = {}, []
    for key, value in payload.items():
        if isinstance(value, _Skipped):
            skipped.append(f"{key} (a pickled {FOREIGN_GLOBALS[0]}: {sorted(value.state or {})})")
        else:
            kept[key] = value
    refuse_non_finite(kept, path)
    return kept, skipped
