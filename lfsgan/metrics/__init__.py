"""Metrics: FID/KID (torch-fidelity), intra-cluster LPIPS and B-LPIPS (lpips), forgetting, parameter overhead.

Every value comes with a ``protocol`` dict (sample counts, reference set, extractor and its weights'
sha256, resize, seed, library versions, ``comparable_to_published``).

Names are imported lazily so that ``import lfsgan.metrics`` stays cheap; torch-fidelity, lpips and
torchvision load only when a function that needs them is called.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "fid_kid": "fid",
    "choose_kid_subset_size": "fid",
    "UInt8Images": "fid",
    "train_demo_extractor": "demo_extractor",
    "load_demo_extractor": "demo_extractor",
    "DemoCNN": "demo_extractor",
    "DEMO_EXTRACTOR_NAME": "demo_extractor",
    "register_demo_extractor": "fidelity_extractor",
    "make_lpips": "diversity",
    "lpips_diversity": "diversity",
    "forgetting_matrix": "forgetting",
    "average_forgetting": "forgetting",
    "count_tensors": "overhead",
    "parameter_overhead": "overhead",
    "MissingWeightsError": "weights",
    "write_random_inception_weights": "weights",
    "library_versions": "protocol",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lfsgan.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lfsgan.metrics.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
