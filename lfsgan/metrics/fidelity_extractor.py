"""Registers :class:`~lfsgan.metrics.demo_extractor.DemoCNN` as a torch-fidelity feature extractor.

torch-fidelity builds extractors by name from its registry, passing every ``calculate_metrics``
keyword to the constructor; the weights file arrives as ``feature_extractor_weights_path``. There is
no random fallback: without a weights file the constructor raises.
"""

from __future__ import annotations

import torch
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from lfsgan.metrics.demo_extractor import DEMO_EXTRACTOR_NAME, LOGITS, PENULTIMATE, load_demo_extractor


class FeatureExtractorDemoCNN(FeatureExtractorBase):
    """torch-fidelity interface: uint8 [B, 3, H, W] in, a tuple of requested features out."""

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs
    ):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(
                f"{DEMO_EXTRACTOR_NAME} needs a trained weights file (config key `evaluation.fid.weights`); "
                "the workflow trains one with lfsgan.metrics.train_demo_extractor"
            )
        self.net, self.meta = load_demo_extractor(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (PENULTIMATE, LOGITS)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return LOGITS if metric == "isc" else PENULTIMATE

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        penultimate, logits = self.net.features(x)  # [B, F], [B, C]
        out = {PENULTIMATE: penultimate, LOGITS: logits}
        return tuple(out[name].float() for name in self.features_list)


def register_demo_extractor() -> str:
    """Register the demo extractor with torch-fidelity (idempotent); returns its name."""
    if DEMO_EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(DEMO_EXTRACTOR_NAME, FeatureExtractorDemoCNN)
    return DEMO_EXTRACTOR_NAME
