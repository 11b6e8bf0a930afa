"""Apply permutations to a state dict: ``π(θ)``.

For an MLP layer this is ``W' = P_ℓ W P_{ℓ-1}ᵀ``, ``b' = P_ℓ b`` (Git Re-Basin, eq. 1); in
general every axis named in the spec is re-indexed with ``index_select(axis, perm)``, after the
tensor is viewed as ``TensorSpec.view`` and with partial axes padded by their fixed tail.
"""

from __future__ import annotations

from typing import Mapping

import torch

from lfsgan.permute.spec import PermutationSpec, TensorSpec, check_perms


def viewed(tensor: torch.Tensor, ts: TensorSpec) -> torch.Tensor:
    """The tensor in the shape its spec's ``axes`` refer to."""
    return tensor.reshape(ts.view) if ts.view is not None else tensor


def permute_viewed(
    x: torch.Tensor, ts: TensorSpec, perms: Mapping[str, torch.Tensor], skip_axis: int | None = None
) -> torch.Tensor:
    """Permute every named axis of the (already viewed) tensor ``x`` except ``skip_axis``."""
    for axis, p in enumerate(ts.axes):
        if p is None or axis == skip_axis:
            continue
        index = perms[p]
        n = ts.partial_len(axis)
        if n is not None:  # permute the first n entries, keep the tail (e.g. the stddev channel) last
            index = torch.cat([index, torch.arange(n, x.shape[axis])])
        x = x.index_select(axis, index.to(x.device))
    return x


def apply_permutation(
    state: Mapping[str, torch.Tensor], spec: PermutationSpec, perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Return ``π(state)``: a new state dict (same keys and order), every tensor a fresh copy.

    Works for any state with the spec's keys: G, G_ema, D, or optimiser moments laid out alike.
    Raises if a key is unknown to the spec or a permutation has the wrong length.
    """
    spec.check_state(state)
    perms = check_perms(perms, spec.perm_sizes(state))
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        ts = spec[key]
        if not ts.permuted:
            out[key] = tensor.clone()
            continue
        out[key] = permute_viewed(viewed(tensor, ts), ts, perms).reshape(tensor.shape).clone()
    return out
