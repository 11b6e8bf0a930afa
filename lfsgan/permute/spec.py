"""Permutation specs: which axis of which ``state_dict`` tensor each permutation acts on.

Weight matching (Ainsworth et al. 2023, "Git Re-Basin", §3.2) works on a flat dict of named
tensors and a map ``tensor -> (perm name or None per axis)``; its inverse ``perm -> [(tensor,
axis)]`` lists the tensors that enter each permutation's cost matrix (§1.2 of
``docs/permutation.md``). This module holds the architecture-free part: the per-tensor record
and the checks. The StyleGAN2 builders live in :mod:`lfsgan.permute.stylegan2`.

Conventions
-----------
* A permutation is an int64 tensor ``perm`` of length ``n`` with ``perm[i] = j``: unit ``j`` of
  model B moves to position ``i``. It is applied with ``index_select(axis, perm)``.
* Every ``state_dict`` key (parameters **and** buffers) has a :class:`TensorSpec`. A key without
  one is an error, never a silent skip. Keys with no permuted axis carry a ``note`` saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch

from lfsgan.io import key_mismatch


@dataclass(frozen=True)
class TensorSpec:
    """How one stored tensor transforms under the network's permutations.

    ``axes`` has one entry per axis of the tensor *as viewed* (``view`` if given, else the stored
    shape): a permutation name, or ``None`` for an axis that is never permuted (z, RGB, kernel
    taps, a singleton batch axis...).
    """

    axes: tuple[str | None, ...]
    #: equalised-learning-rate factor: effective tensor = ``gain * stored``. Cost matrices are
    #: built from effective tensors; interpolation uses stored ones (the gain is a per-layer
    #: constant, so lerping either gives the same effective weights).
    gain: float = 1.0
    #: whether the tensor contributes to cost matrices (False for statistics and constants)
    in_cost: bool = True
    #: shape the stored tensor is viewed as before ``axes`` apply, e.g. D's ``final_linear.0``
    #: weight ``[C_fc, C*4*4]`` viewed as ``[C_fc, C, 16]`` (the flatten is channel-major)
    view: tuple[int, ...] | None = None
    #: ``((axis, n), ...)``: only the first ``n`` entries of ``axis`` are permuted, the rest stay
    #: in place (D's ``final_conv`` input: C permuted channels + the minibatch-stddev channel last)
    partial: tuple[tuple[int, int], ...] = ()
    #: whether :func:`lfsgan.permute.lmc.interpolate` lerps it; False = copy model A's value
    #: (fixed noise maps, FIR kernels: constants of the evaluation, not weights)
    interpolate: bool = True
    #: for tensors with no permuted axis: why (documentation, listed by ``unpermuted()``)
    note: str = ""

    def __post_init__(self) -> None:
        if self.view is not None and len(self.view) != len(self.axes):
            raise ValueError(f"view {self.view} has {len(self.view)} axes but axes={self.axes}")
        for axis, n in self.partial:
            if not 0 <= axis < len(self.axes) or self.axes[axis] is None:
                raise ValueError(f"partial axis {axis} must be a permuted axis of {self.axes}")
            if n < 1:
                raise ValueError(f"partial axis {axis}: n must be >= 1, got {n}")
        if not math.isfinite(self.gain) or self.gain <= 0:
            raise ValueError(f"gain must be a positive finite number, got {self.gain}")

    @property
    def permuted(self) -> bool:
        return any(a is not None for a in self.axes)

    def partial_len(self, axis: int) -> int | None:
        """Number of leading permuted entries on ``axis`` if it is partial, else None."""
        for a, n in self.partial:
            if a == axis:
                return n
        return None


@dataclass
class PermutationSpec:
    """A network's permutation symmetry: one :class:`TensorSpec` per ``state_dict`` key."""

    tensors: dict[str, TensorSpec]
    #: free-text description of the architecture the spec was built for (error messages)
    name: str = "network"
    _perm_to_axes: dict[str, list[tuple[str, int]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p2a: dict[str, list[tuple[str, int]]] = {}
        for key, ts in self.tensors.items():
            for axis, p in enumerate(ts.axes):
                if p is not None:
                    p2a.setdefault(p, []).append((key, axis))
        self._perm_to_axes = p2a

    # --- views of the spec ----------------------------------------------------------------------
    @property
    def perm_names(self) -> list[str]:
        """Permutation names in order of first appearance (deterministic)."""
        return list(self._perm_to_axes)

    @property
    def perm_to_axes(self) -> dict[str, list[tuple[str, int]]]:
        """``perm -> [(key, axis), ...]``: every tensor axis the permutation acts on."""
        return {p: list(v) for p, v in self._perm_to_axes.items()}

    def unpermuted(self) -> dict[str, str]:
        """The keys deliberately left unpermuted, with the reason."""
        return {k: ts.note for k, ts in self.tensors.items() if not ts.permuted}

    def __getitem__(self, key: str) -> TensorSpec:
        try:
            return self.tensors[key]
        except KeyError:
            raise KeyError(
                f"{self.name}: state_dict key {key!r} is not in the permutation spec; "
                "the spec builder must learn about it (or the checkpoint is for another architecture)"
            ) from None

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    # --- checks ---------------------------------------------------------------------------------
    def check_state(self, state: Mapping[str, torch.Tensor], what: str = "state") -> None:
        """Raise unless ``state`` has exactly the spec's keys with shapes that fit their axes."""
        unknown = sorted(set(state) - set(self.tensors))
        missing = sorted(set(self.tensors) - set(state))
        if unknown:
            raise KeyError(
                f"{self.name}: {what} has {len(unknown)} key(s) the permutation spec does not know, "
                f"e.g. {unknown[:5]}; extend the spec builder rather than skipping them"
            )
        if missing:
            raise KeyError(f"{self.name}: {what} lacks {len(missing)} key(s) of the spec, e.g. {missing[:5]}")
        for key, ts in self.tensors.items():
            shape = tuple(state[key].shape)
            viewed = ts.view if ts.view is not None else shape
            if ts.view is not None and math.prod(ts.view) != math.prod(shape):
                raise ValueError(f"{self.name}: {what}[{key!r}] has shape {shape}, cannot be viewed as {ts.view}")
            if len(viewed) != len(ts.axes):
                raise ValueError(
                    f"{self.name}: {what}[{key!r}] has {len(viewed)} axes {viewed}, spec expects {len(ts.axes)}: {ts.axes}"
                )
            for axis, n in ts.partial:
                if n > viewed[axis]:
                    raise ValueError(f"{self.name}: {what}[{key!r}] axis {axis} has {viewed[axis]} entries < partial {n}")

    def perm_sizes(self, state: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Length of every permutation, read from ``state``; raises if two axes of one perm disagree."""
        self.check_state(state)
        sizes: dict[str, int] = {}
        for p, entries in self._perm_to_axes.items():
            for key, axis in entries:
                n = self.axis_len(key, axis, state[key])
                if sizes.setdefault(p, n) != n:
                    raise ValueError(
                        f"{self.name}: permutation {p!r} has length {sizes[p]} on {entries[0]} "
                        f"but {n} on ({key!r}, {axis}); the spec groups axes of different sizes"
                    )
        return sizes

    def axis_len(self, key: str, axis: int, tensor: torch.Tensor) -> int:
        """Number of permuted entries of ``tensor`` (stored under ``key``) on ``axis``."""
        ts = self[key]
        n = ts.partial_len(axis)
        if n is not None:
            return n
        shape = ts.view if ts.view is not None else tuple(tensor.shape)
        return shape[axis]


def check_perms(perms: Mapping[str, torch.Tensor], sizes: Mapping[str, int], what: str = "perms") -> dict[str, torch.Tensor]:
    """Validate a perm dict against ``sizes``; returns int64 CPU copies. Raises on anything odd."""
    if mismatch := key_mismatch(sizes, perms, show=5):
        raise KeyError(f"{what}: permutations do not fit the spec's groups ({mismatch})")
    out = {}
    for p, n in sizes.items():
        perm = torch.as_tensor(perms[p]).to(device="cpu", dtype=torch.long)
        if perm.shape != (n,) or not torch.equal(torch.sort(perm).values, torch.arange(n)):
            raise ValueError(f"{what}[{p!r}] is not a permutation of range({n}) (shape {tuple(perm.shape)})")
        out[p] = perm
    return out


def identity_perms(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
    return {p: torch.arange(n) for p, n in sizes.items()}


def random_perms(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
    """Uniformly random permutations (for tests and sanity checks), deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return {p: torch.randperm(n, generator=g) for p, n in sizes.items()}


def invert_perms(perms: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``inv[p][perm[p][i]] = i``: applying ``perm`` then ``inv`` is the identity."""
    return {p: torch.argsort(perm) for p, perm in perms.items()}

