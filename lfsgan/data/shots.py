"""Which few shots a method run trains on: the prepared shots, or a replicate's own draw.

With ``data.shots_per_replicate``, replicate ``k`` of a method draws its shots from the task's full
set by the preparation's rule (:data:`lfsgan.data.prepare.SHOT_RULE`) with seed ``shot_seed + k``;
replicate 0 uses the prepared shots (seed ``shot_seed``), so the option changes nothing for it.
"""

from __future__ import annotations

import torch

from lfsgan.data.prepare import SHOT_RULE, PreparedDataset, choose_shots


def run_shots(dataset: PreparedDataset, data_cfg: dict, replicate: int) -> tuple[list[int] | None, torch.Tensor, str]:
    """``(indices into the full set or None, shots uint8 [K, 3, R, R], rule)`` for replicate ``replicate``."""
    manifest = dataset.manifest
    if replicate == 0 or not data_cfg.get("shots_per_replicate"):
        return manifest["shots"], dataset.shots(), manifest.get("shot_rule", SHOT_RULE)
    if manifest.get("shot_files"):
        raise ValueError(
            f"{dataset.path}: data.shots_per_replicate draws each replicate's shots from the full set, but this "
            "domain trains on given shot files; set data.shots_per_replicate: false or drop the domain's `shots`"
        )
    seed = manifest["shot_seed"] + replicate
    indices = choose_shots(len(dataset.images), len(manifest["shots"]), seed, where=str(dataset.path))
    rule = f"{SHOT_RULE} with shot_seed = {manifest['shot_seed']} + replicate {replicate} = {seed}"
    return indices, dataset.images[torch.as_tensor(indices, dtype=torch.long)], rule
