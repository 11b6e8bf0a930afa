"""Permutation specs for StyleGAN2 G and D with rosinality's ``stylegan2-pytorch`` key layout.

See ``docs/permutation.md`` §2.3–2.4. The builders read the key structure (number of
mapping layers, resolutions, D blocks) and the shapes from a ``state_dict`` (or a module, or
meta tensors), build one :class:`TensorSpec` per expected key, and refuse a state whose keys
differ from the expected set in either direction.

Generator groups
----------------
* ``P_map{i}`` — output of mapping layer ``style.{i}`` (``i < n_mlp``); the z input is not permuted.
* ``P_w`` — W space: output of the last mapping layer and the input axis of **every**
  ``modulation`` (style affine) layer, ToRGBs included. (Our G has no ``w_avg`` buffer; truncation
  uses ``G.mean_latent`` computed from the mapping, see :mod:`lfsgan.permute.lmc`.)
* ``P_{r}`` — synthesis channels at resolution r: ``input.input``, ``conv1`` and ``to_rgb1`` at
  r = 4; for r >= 8 the output of ``convs.{2j}`` (upsampling), both axes of ``convs.{2j+1}``, the
  input of ``to_rgbs.{j}`` and the input of the next ``convs.{2j+2}``.
  ``ModulatedConv2d.weight`` is ``[1, out, in, k, k]`` → ``(None, P_out, P_in, None, None)``;
  its ``modulation`` rows scale the *input* channels → ``(P_in, P_w)``; ``activate.bias`` is
  indexed by the output channels → ``(P_out,)``.

Discriminator groups
--------------------
* ``Q_{r}`` — the residual stream entering the block at resolution r (``convs.0`` output for the
  input resolution; for a ResBlock r → r/2 the summed outputs of ``conv2`` and ``skip``, which must
  share one permutation) and the first C inputs of ``final_conv`` (the (C+1)-th input is the
  minibatch-stddev channel, averaged over all channels → invariant, kept last: a partial axis).
* ``Q_{r}_mid`` — ``conv1`` output inside the ResBlock at resolution r.
* ``Q_final_conv``, ``Q_final_linear`` — the epilogue. ``final_linear.0.weight`` ``[C, C*16]`` is
  viewed as ``[C, C, 16]`` (the ``[C, 4, 4]`` map is flattened channel-major).

Gains (equalised learning rate): ``EqualLinear`` weight ``lr_mul / sqrt(in)``, bias ``lr_mul``;
``EqualConv2d`` / ``ModulatedConv2d`` weight ``1 / sqrt(in * k * k)``; ``FusedLeakyReLU`` biases
and ``ConstantInput`` 1.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import torch
from torch import nn

from lfsgan.io import key_mismatch
from lfsgan.permute.spec import PermutationSpec, TensorSpec

NOISE_MAP = "fixed per-layer noise map: a constant of the evaluation, shared by all channels"
NOISE_STRENGTH = "noise strength is one scalar for all channels"
FIR = "FIR (blur/upsample) kernel: identical for every channel"
RGB_BIAS = "ToRGB bias: indexed by RGB, never permuted"
D_OUT_BIAS = "D logit bias: one output unit"


def _shapes(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    state = source.state_dict() if isinstance(source, nn.Module) else source
    return {k: tuple(v.shape) for k, v in state.items()}


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    """Number of distinct integers captured by ``pattern`` among the keys."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.fullmatch(k))})


def _need(shapes: Mapping[str, tuple[int, ...]], key: str, what: str) -> tuple[int, ...]:
    if key not in shapes:
        raise KeyError(f"{what}: expected key {key!r} is missing; is this a rosinality-layout state_dict?")
    return shapes[key]


def _finish(specs: dict[str, TensorSpec], shapes: Mapping[str, tuple[int, ...]], name: str) -> PermutationSpec:
    if mismatch := key_mismatch(specs, shapes, show=6):
        raise KeyError(f"{name}: state_dict keys do not match the expected layout ({mismatch}, relative to the spec)")
    spec = PermutationSpec({k: specs[k] for k in shapes}, name=name)  # state_dict order
    return spec


# --- generator --------------------------------------------------------------------------------
def generator_spec(source: nn.Module | Mapping[str, torch.Tensor], *, lr_mlp: float | None = None) -> PermutationSpec:
    """Permutation spec of a rosinality-layout StyleGAN2 generator (any size, width, ``n_mlp``).

    ``source`` is the generator or its ``state_dict`` (meta tensors are fine). ``lr_mlp`` is the
    mapping network's learning-rate multiplier; read from the module's ``style.1.lr_mul`` when a
    module is given, else 0.01 (StyleGAN2's default) unless passed.
    """
    shapes = _shapes(source)
    if lr_mlp is None:
        lr_mlp = float(getattr(source.style[1], "lr_mul", 0.01)) if isinstance(source, nn.Module) else 0.01
    what = "StyleGAN2 generator spec"
    n_mlp = _count(shapes, r"style\.(\d+)\.weight")
    n_res = _count(shapes, r"to_rgbs\.(\d+)\.conv\.weight")  # resolutions 8 .. size
    if n_mlp < 1:
        raise KeyError(f"{what}: no mapping layers 'style.<i>.weight' found; is this a rosinality-layout G?")
    style_dim = _need(shapes, "style.1.weight", what)[1]
    specs: dict[str, TensorSpec] = {}

    # mapping network: style.1 .. style.n_mlp (style.0 is PixelNorm, no parameters)
    prev = None  # z axis
    for i in range(1, n_mlp + 1):
        out = "P_w" if i == n_mlp else f"P_map{i}"
        fan_in = _need(shapes, f"style.{i}.weight", what)[1]
        specs[f"style.{i}.weight"] = TensorSpec((out, prev), gain=lr_mlp / math.sqrt(fan_in))
        specs[f"style.{i}.bias"] = TensorSpec((out,), gain=lr_mlp)
        prev = out

    def modulated(prefix: str, p_out: str | None, p_in: str, has_activation: bool) -> None:
        _, _, c_in, k, _ = _need(shapes, f"{prefix}.conv.weight", what)
        specs[f"{prefix}.conv.weight"] = TensorSpec((None, p_out, p_in, None, None), gain=1 / math.sqrt(c_in * k * k))
        specs[f"{prefix}.conv.modulation.weight"] = TensorSpec((p_in, "P_w"), gain=1 / math.sqrt(style_dim))
        specs[f"{prefix}.conv.modulation.bias"] = TensorSpec((p_in,))
        if has_activation:  # StyledConv: noise + FusedLeakyReLU
            specs[f"{prefix}.noise.weight"] = TensorSpec((None,), note=NOISE_STRENGTH)
            specs[f"{prefix}.activate.bias"] = TensorSpec((p_out,))
        else:  # ToRGB
            specs[f"{prefix}.bias"] = TensorSpec((None, None, None, None), note=RGB_BIAS)

    # 4x4: constant input, conv1, to_rgb1 share P_4
    specs["input.input"] = TensorSpec((None, "P_4", None, None))
    modulated("conv1", "P_4", "P_4", has_activation=True)
    modulated("to_rgb1", None, "P_4", has_activation=False)

    # resolutions 8 .. size: convs.{2j} (up), convs.{2j+1}, to_rgbs.{j}
    for j in range(n_res):
        r_in, r = f"P_{2 ** (j + 2)}", f"P_{2 ** (j + 3)}"
        modulated(f"convs.{2 * j}", r, r_in, has_activation=True)
        specs[f"convs.{2 * j}.conv.blur.kernel"] = TensorSpec((None, None), in_cost=False, interpolate=False, note=FIR)
        modulated(f"convs.{2 * j + 1}", r, r, has_activation=True)
        modulated(f"to_rgbs.{j}", None, r, has_activation=False)
        specs[f"to_rgbs.{j}.upsample.kernel"] = TensorSpec((None, None), in_cost=False, interpolate=False, note=FIR)

    for i in range(2 * n_res + 1):
        specs[f"noises.noise_{i}"] = TensorSpec(
            (None, None, None, None), in_cost=False, interpolate=False, note=NOISE_MAP
        )
    return _finish(specs, shapes, f"StyleGAN2 G (n_mlp={n_mlp}, size={2 ** (n_res + 2)})")


# --- discriminator ----------------------------------------------------------------------------
def discriminator_spec(source: nn.Module | Mapping[str, torch.Tensor]) -> PermutationSpec:
    """Permutation spec of a rosinality-layout StyleGAN2 discriminator (any size and width).

    ``convs.0`` is ``ConvLayer(3, C, 1)``: keys ``convs.0.0.weight``, ``convs.0.1.bias``.
    ``convs.{b}`` (b >= 1) is ``ResBlock``: ``conv1.{0.weight,1.bias}``,
    ``conv2.{0.kernel,1.weight,2.bias}`` (blur then stride-2 conv), ``skip.{0.kernel,1.weight}``.
    """
    shapes = _shapes(source)
    what = "StyleGAN2 discriminator spec"
    n_blocks = _count(shapes, r"convs\.(\d+)\.conv1\.0\.weight")
    size = 4 * 2**n_blocks
    specs: dict[str, TensorSpec] = {}

    def conv(key: str, p_out: str | None, p_in: str | None) -> None:
        _, c_in, k, _ = _need(shapes, key, what)
        specs[key] = TensorSpec((p_out, p_in, None, None), gain=1 / math.sqrt(c_in * k * k))

    stream = f"Q_{size}"
    conv("convs.0.0.weight", stream, None)  # fromRGB: RGB input axis not permuted
    specs["convs.0.1.bias"] = TensorSpec((stream,))
    for b in range(1, n_blocks + 1):
        r = size // 2 ** (b - 1)
        mid, out = f"Q_{r}_mid", f"Q_{r // 2}"
        conv(f"convs.{b}.conv1.0.weight", mid, stream)
        specs[f"convs.{b}.conv1.1.bias"] = TensorSpec((mid,))
        specs[f"convs.{b}.conv2.0.kernel"] = TensorSpec((None, None), in_cost=False, interpolate=False, note=FIR)
        conv(f"convs.{b}.conv2.1.weight", out, mid)
        specs[f"convs.{b}.conv2.2.bias"] = TensorSpec((out,))
        specs[f"convs.{b}.skip.0.kernel"] = TensorSpec((None, None), in_cost=False, interpolate=False, note=FIR)
        conv(f"convs.{b}.skip.1.weight", out, stream)  # summed with conv2's output: same perm
        stream = out

    c_out, c_in_plus_1, k, _ = _need(shapes, "final_conv.0.weight", what)
    specs["final_conv.0.weight"] = TensorSpec(
        ("Q_final_conv", stream, None, None),
        gain=1 / math.sqrt(c_in_plus_1 * k * k),
        partial=((1, c_in_plus_1 - 1),),  # minibatch-stddev channel stays last
    )
    specs["final_conv.1.bias"] = TensorSpec(("Q_final_conv",))
    c_fc, flat = _need(shapes, "final_linear.0.weight", what)
    if flat != c_out * 16:
        raise ValueError(f"{what}: final_linear.0.weight has {flat} inputs, expected {c_out}*4*4 = {c_out * 16}")
    specs["final_linear.0.weight"] = TensorSpec(
        ("Q_final_linear", "Q_final_conv", None), gain=1 / math.sqrt(flat), view=(c_fc, c_out, 16)
    )
    specs["final_linear.0.bias"] = TensorSpec(("Q_final_linear",))
    specs["final_linear.1.weight"] = TensorSpec((None, "Q_final_linear"), gain=1 / math.sqrt(c_fc))
    specs["final_linear.1.bias"] = TensorSpec((None,), note=D_OUT_BIAS)
    return _finish(specs, shapes, f"StyleGAN2 D (size={size})")
