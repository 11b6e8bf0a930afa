"""The protocol written next to every metric value: what was measured, with what, and how.

Every metric function here returns ``{..., "protocol": {...}}``. The protocol always carries the
library versions and a ``comparable_to_published`` flag:

- ``True``: standard features (torch-fidelity's Inception, LPIPS with ImageNet backbone weights);
  the value is comparable to published numbers when sample counts and reference sets match too;
- ``False``: non-standard features (the demo CNN, a random LPIPS backbone, an Inception weights file
  whose sha256 is not torch-fidelity's published one); comparable only to values computed with the
  same weights file (sha256 recorded);
- ``None``: the weights file's identity could not be checked; see ``note``.
"""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("torch", "torchvision", "torch-fidelity", "lpips")


def library_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (default: those the metrics depend on), read from metadata, no import."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
