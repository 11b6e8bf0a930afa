"""Tests for lfsgan.models: rosinality compatibility, the two modulated-conv paths, the adapter hook.

Golden file ``tests/data/rosinality_golden.pt`` (tensors-only, ``lfsgan.io`` format) was made by a
scratch script outside the repository that ran rosinality/stylegan2-pytorch at commit bef283a
(``model.py`` unchanged; in ``op/`` only the two ``torch.utils.cpp_extension.load`` calls were
replaced by ``None``, so the pure-PyTorch CPU fallbacks ``upfirdn2d_native`` and the CPU branch of
``fused_leaky_relu`` run). It built ``Generator(16, 32, 2, channel_multiplier=2, lr_mlp=0.01)`` and
``Discriminator(16, channel_multiplier=2)`` and filled every state_dict tensor (buffers included)
with :func:`golden_fill` below, then stored
  * ``z, z2`` [2, 32] (seeds 1, 2), ``z_mean`` [64, 32] (seed 3), ``d_input`` [8, 3, 16, 16] (seed 4);
  * ``w = g.style(z)``, ``w_mean = g.style(z_mean).mean(0, keepdim=True)``;
  * ``img_const = g([z], randomize_noise=False)``;
  * ``img_mix = g([z, z2], inject_index=3, truncation=0.7, truncation_latent=w_mean,
    randomize_noise=False)``;
  * ``d_logits = d(d_input)``;
and, in the JSON meta (keys sorted), rosinality's key → shape tables for that small pair and for the FFHQ-256
configuration (``Generator(256, 512, 8)``, ``Discriminator(256)``, channel_multiplier 2) with their
parameter counts. The FIR kernels are filled randomly too (×0.25), which also checks kernel
orientation (flips) in ``upfirdn2d``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from lfsgan.io import load_checkpoint, save_checkpoint
from lfsgan.models import (
    Discriminator,
    EqualConv2d,
    EqualLinear,
    Generator,
    ModulatedConv2d,
    fused_leaky_relu,
    iter_adaptable,
    upfirdn2d,
)

GOLDEN = Path(__file__).parent / "data" / "rosinality_golden.pt"


@pytest.fixture(scope="module")
def golden():
    tensors, meta = load_checkpoint(GOLDEN)
    return tensors, meta


def golden_fill(sd: dict[str, torch.Tensor], lr_mlp: float, kernel_std: float) -> dict[str, torch.Tensor]:
    """Key ``i`` of ``sorted(sd)`` gets ``randn(shape, generator=manual_seed(i))``; mapping weights
    ``style.N.weight`` are divided by ``lr_mlp`` (rosinality's init), FIR ``*kernel`` buffers are
    multiplied by ``kernel_std``."""
    out = {}
    for i, key in enumerate(sorted(sd)):
        t = torch.randn(sd[key].shape, generator=torch.Generator().manual_seed(i))
        if re.fullmatch(r"style\.\d+\.weight", key):
            t = t / lr_mlp
        if key.endswith("kernel"):
            t = t * kernel_std
        out[key] = t
    return out


def shapes(m: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in m.state_dict().items()}


def small_pair(modconv: str = "auto", seed: int = 0, channel_max: int = 32, size: int = 32):
    torch.manual_seed(seed)
    G = Generator(size, style_dim=32, n_mlp=2, channel_max=channel_max, modconv=modconv)
    D = Discriminator(size, channel_max=channel_max)
    return G, D


def randomize_(module: nn.Module, seed: int = 0) -> None:
    """Give zero-initialised tensors (biases, noise strengths) non-zero values so they matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or name.endswith("noise.weight"):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


# --- structure ----------------------------------------------------------------------------------


def test_param_counts_256():
    with torch.device("meta"):
        G, D = Generator(256), Discriminator(256)
    assert sum(p.numel() for p in G.parameters()) == 30_034_338
    assert sum(p.numel() for p in D.parameters()) == 28_864_129


def test_state_dict_layout_matches_rosinality_256(golden):
    _, meta = golden
    with torch.device("meta"):
        G, D = Generator(256), Discriminator(256)
    assert shapes(G) == meta["g256_shapes"]
    assert shapes(D) == meta["d256_shapes"]
    g, d = shapes(G), shapes(D)
    # a few entries written out, so a wrong golden file cannot hide a wrong layout
    assert g["style.8.weight"] == [512, 512]
    assert g["conv1.conv.weight"] == [1, 512, 512, 3, 3]
    assert g["convs.10.conv.weight"] == [1, 128, 256, 3, 3]
    assert g["convs.10.conv.blur.kernel"] == [4, 4]
    assert g["to_rgbs.5.upsample.kernel"] == [4, 4]
    assert g["to_rgbs.5.conv.modulation.weight"] == [128, 512]
    assert g["convs.11.conv.weight"] == [1, 128, 128, 3, 3] and "convs.11.conv.blur.kernel" not in g
    assert g["to_rgbs.5.bias"] == [1, 3, 1, 1] and g["input.input"] == [1, 512, 4, 4]
    assert g["noises.noise_12"] == [1, 1, 256, 256]
    assert d["convs.0.0.weight"] == [128, 3, 1, 1]
    assert d["convs.1.conv2.0.kernel"] == [4, 4]
    assert d["convs.1.skip.1.weight"] == [256, 128, 1, 1]
    assert d["final_linear.0.weight"] == [512, 8192]
    assert meta["g256_params"] == 30_034_338 and meta["d256_params"] == 28_864_129


def test_small_layout_matches_golden(golden):
    _, meta = golden
    G = Generator(meta["size"], meta["style_dim"], meta["n_mlp"], lr_mlp=meta["lr_mlp"])
    D = Discriminator(meta["size"])
    assert shapes(G) == meta["g_shapes"]
    assert shapes(D) == meta["d_shapes"]


@pytest.mark.parametrize("size", [8, 16, 32, 64, 128, 256, 512, 1024])
def test_every_size_constructs(size):
    torch.manual_seed(0)
    G = Generator(size, style_dim=16, n_mlp=1, channel_max=8 if size > 64 else 16)
    D = Discriminator(size, channel_max=8 if size > 64 else 16)
    log2 = size.bit_length() - 1
    assert (G.size, G.style_dim, G.n_latent, G.num_layers) == (size, 16, 2 * log2 - 2, 2 * log2 - 3)
    assert all(c <= 16 for c in G.channels.values())
    if size <= 128:
        with torch.no_grad():
            img = G(torch.randn(2, 16), noise_mode="const")
            assert img.shape == (2, 3, size, size)
            assert D(img).shape == (2, 1)


def test_bad_size_rejected():
    for size in (4, 48, 2048):
        with pytest.raises(ValueError, match="power of two"):
            Generator(size)
        with pytest.raises(ValueError, match="power of two"):
            Discriminator(size)


def test_strict_roundtrip_through_checkpoint(tmp_path):
    G, D = small_pair(size=16)
    randomize_(G)
    save_checkpoint(tmp_path / "ck.pt", {"g": G.state_dict(), "d": D.state_dict()}, {"size": 16})
    tensors, meta = load_checkpoint(tmp_path / "ck.pt")
    G2, D2 = small_pair(seed=1, size=16)
    G2.load_state_dict(tensors["g"], strict=True)
    D2.load_state_dict(tensors["d"], strict=True)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = G(z, noise_mode="const")
        assert torch.equal(img, G2(z, noise_mode="const"))
        assert torch.equal(D(img), D2(img))


# --- numerics against rosinality ------------------------------------------------------------


@pytest.mark.parametrize("modconv", ["grouped", "scaled"])
def test_matches_rosinality_golden(golden, modconv):
    t, meta = golden
    G = Generator(meta["size"], meta["style_dim"], meta["n_mlp"], lr_mlp=meta["lr_mlp"], modconv=modconv)
    G.load_state_dict(golden_fill(G.state_dict(), meta["lr_mlp"], meta["kernel_std"]), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(t["z"]), t["w"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(G.mean_latent(64, seed=3), t["w_mean"], atol=1e-5, rtol=1e-5)  # z_mean = seed 3
        assert t["img_const"].abs().max() > 1  # the golden image is not trivially small
        torch.testing.assert_close(G(t["z"], noise_mode="const"), t["img_const"], atol=1e-4, rtol=0)
        img_mix = G([t["z"], t["z2"]], noise_mode="const", truncation=0.7, truncation_latent=t["w_mean"], inject_index=3)
        torch.testing.assert_close(img_mix, t["img_mix"], atol=1e-4, rtol=0)


def test_discriminator_matches_rosinality_golden(golden):
    """Batch 8 with stddev group 4: also checks which samples are grouped together."""
    t, meta = golden
    D = Discriminator(meta["size"])
    D.load_state_dict(golden_fill(D.state_dict(), meta["lr_mlp"], meta["kernel_std"]), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(D(t["d_input"]), t["d_logits"], atol=1e-4, rtol=0)


def test_upfirdn2d_matches_direct_definition():
    """Brute force: zero-stuff by ``up``, pad (negative = crop), true convolution, keep every
    ``down``-th sample; asymmetric kernel and pads."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=gen)
    k = torch.randn(3, 4, generator=gen)
    for up, down, pad in [(1, 1, (1, 2, 0, 1)), (2, 1, (2, 1, 1, 2)), (1, 2, (1, 1, 2, 0)), (2, 2, (-1, 2, 1, 0)), (3, 1, (0, 0, 0, 0))]:
        x0, x1, y0, y1 = pad
        z = torch.zeros(2, 3, 5 * up, 6 * up)
        z[:, :, ::up, ::up] = x
        z = torch.nn.functional.pad(z, [x0, x1, y0, y1])
        kh, kw = k.shape
        H, W = z.shape[2] - kh + 1, z.shape[3] - kw + 1
        ref = torch.zeros(2, 3, H, W)
        for i in range(H):
            for j in range(W):
                patch = z[:, :, i : i + kh, j : j + kw]
                ref[:, :, i, j] = (patch * k.flip([0, 1])).sum([2, 3])
        ref = ref[:, :, ::down, ::down]
        torch.testing.assert_close(upfirdn2d(x, k, up=up, down=down, pad=pad), ref, atol=1e-5, rtol=1e-5)


def test_fused_leaky_relu():
    x = torch.tensor([[-1.0, 2.0]]).view(1, 2, 1, 1)
    b = torch.tensor([0.5, -3.0])
    expected = torch.tensor([-0.5 * 0.2, -1.0 * 0.2]).view(1, 2, 1, 1) * 2**0.5
    torch.testing.assert_close(fused_leaky_relu(x, b), expected)


# --- grouped vs scaled -----------------------------------------------------------------------


def test_grouped_equals_scaled_generator():
    G, _ = small_pair(modconv="grouped")
    randomize_(G)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = G(z, noise_mode="const")
        G.set_modconv("scaled")
        assert G.modconv_in_use() == "scaled"
        b = G(z, noise_mode="const")
    # A randomly initialised G with randomised biases outputs values up to ~16, not images in
    # [-1, 1]; "the same images to 1e-5" is read on that image scale (1e-5 of the peak value),
    # i.e. a few float32 ulps of each output, whatever order the two paths accumulate in.
    peak = a.abs().max()
    assert peak > 0.1
    torch.testing.assert_close(a / peak, b / peak, atol=1e-5, rtol=0)


@pytest.mark.parametrize("resample", ["none", "upsample", "downsample"])
@pytest.mark.parametrize("demodulate", [True, False])
def test_grouped_equals_scaled_layer(resample, demodulate):
    torch.manual_seed(0)
    layer = ModulatedConv2d(8, 6, 3, 16, demodulate=demodulate, upsample=resample == "upsample",
                            downsample=resample == "downsample", modconv="grouped")
    x = torch.randn(3, 8, 8, 8, requires_grad=True)
    s = torch.randn(3, 16, requires_grad=True)
    results = []
    for mode in ("grouped", "scaled"):
        layer.set_modconv(mode)
        layer.zero_grad()
        x.grad = s.grad = None
        out = layer(x, s)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), x.grad.clone(), s.grad.clone(), layer.weight.grad.clone()))
    expected_hw = {"none": 8, "upsample": 16, "downsample": 4}[resample]
    assert results[0][0].shape == (3, 6, expected_hw, expected_hw)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_modconv_mode_validated():
    with pytest.raises(ValueError, match="modconv"):
        Generator(8, style_dim=8, n_mlp=1, channel_max=8, modconv="fast")


# --- forward API ------------------------------------------------------------------------------


def test_noise_modes():
    G, _ = small_pair(size=16)
    randomize_(G)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
        assert torch.equal(G(z, noise_mode="none"), G(z, noise_mode="none"))
        assert not torch.allclose(G(z, noise_mode="random"), G(z, noise_mode="random"))
        assert not torch.allclose(G(z, noise_mode="const"), G(z, noise_mode="none"))
        zeros = [torch.zeros_like(getattr(G.noises, f"noise_{i}")) for i in range(G.num_layers)]
        assert torch.equal(G(z, noise_mode="none"), G.synthesis(G.make_ws([G.mapping(z)]), noise=zeros))
        with pytest.raises(ValueError, match="noise_mode"):
            G(z, noise_mode="fixed")


def test_truncation():
    G, _ = small_pair(size=16)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    w_avg = G.mean_latent(100, seed=1)
    assert w_avg.shape == (1, 32)
    assert torch.equal(w_avg, G.mean_latent(100, seed=1)) and not torch.equal(w_avg, G.mean_latent(100, seed=2))
    with torch.no_grad():
        plain = G(z, noise_mode="const")
        assert torch.equal(G(z, noise_mode="const", truncation=1.0, truncation_latent=w_avg), plain)
        collapsed = G(z, noise_mode="const", truncation=0.0, truncation_latent=w_avg)
        torch.testing.assert_close(collapsed[0], collapsed[1])
        mean_img = G(w_avg.expand(2, -1), noise_mode="const", input_is_latent=True)
        torch.testing.assert_close(collapsed, mean_img)
    with pytest.raises(ValueError, match="truncation_latent"):
        G(z, truncation=0.5)


def test_make_ws_and_style_mixing():
    G, _ = small_pair(size=16)  # n_latent = 6
    w1, w2 = torch.randn(2, 32), torch.randn(2, 32)
    ws = G.make_ws([w1, w2], inject_index=2)
    assert ws.shape == (2, G.n_latent, 32)
    assert torch.equal(ws[:, :2], w1[:, None].expand(2, 2, 32))
    assert torch.equal(ws[:, 2:], w2[:, None].expand(2, 4, 32))
    assert torch.equal(G.make_ws([ws]), ws)
    torch.manual_seed(0)
    idx = {int((G.make_ws([w1, w2])[0] == w1[0]).all(1).sum()) for _ in range(50)}
    assert idx <= set(range(1, G.n_latent)) and len(idx) > 1
    with torch.no_grad():
        assert torch.equal(G([w1, w2], input_is_latent=True, inject_index=2, noise_mode="const"),
                           G.synthesis(ws, noise_mode="const"))


def test_make_ws_keeps_grad():
    G, _ = small_pair(size=8)
    w = G.mapping(torch.randn(2, 32))
    ws = G.make_ws([w])
    img = G.synthesis(ws, noise_mode="const")
    (grad,) = torch.autograd.grad(img.sum(), ws)
    assert grad.shape == ws.shape and grad.abs().sum() > 0


def test_features():
    G, D = small_pair(size=32)
    with torch.no_grad():
        img, feats = G.synthesis(G.make_ws([G.mapping(torch.randn(4, 32))]), noise_mode="const", return_features=True)
        assert len(feats) == G.num_layers
        assert [f.shape[-1] for f in feats] == [4, 8, 8, 16, 16, 32, 32]
        assert feats[-1].shape == (4, G.channels[32], 32, 32)
        logits, dfeats = D(img, return_features=True)
        assert logits.shape == (4, 1) and torch.equal(logits, D(img))
        assert [f.shape[-1] for f in dfeats] == [32, 16, 8, 4] and len(dfeats) == len(D.convs)
        with pytest.raises(ValueError, match="divisible"):
            D(torch.randn(6, 3, 32, 32))


# --- adapter hook ---------------------------------------------------------------------------


class IdentityAdapter(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))  # a parameter, to see it appear in state_dict
        self.seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, weight, bias):
        self.seen.append((weight, bias))
        return weight * self.gain, bias


class DoubleWeight(nn.Module):
    def forward(self, weight, bias):
        return 2 * weight, bias


def test_iter_adaptable_order_and_attributes():
    with torch.device("meta"):
        G, D = Generator(256), Discriminator(256)
    g = list(iter_adaptable(G))
    assert [n for n, _ in g][:10] == [f"style.{i}" for i in range(1, 9)] + ["conv1.conv", "conv1.conv.modulation"]
    assert sum(isinstance(m, ModulatedConv2d) for _, m in g) == 20 and len(g) == 8 + 2 * 20
    d = list(iter_adaptable(D))
    assert sum(isinstance(m, EqualConv2d) for _, m in d) == 1 + 3 * 6 + 1 and len(d) == 22
    mc = dict(g)["convs.0.conv"]
    assert (mc.in_channel, mc.out_channel, mc.kernel_size, mc.demodulate, mc.upsample) == (512, 512, 3, True, True)
    assert mc.scale == pytest.approx(1 / (512 * 9) ** 0.5)
    lin = dict(g)["style.1"]
    assert (lin.in_dim, lin.out_dim, lin.lr_mul) == (512, 512, 0.01) and lin.scale == pytest.approx(0.01 / 512**0.5)
    assert dict(g)["to_rgb1.conv"].demodulate is False


def test_adapter_hook():
    G, D = small_pair(size=16)
    randomize_(G)
    keys_g, keys_d = list(G.state_dict()), list(D.state_dict())
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img0 = G(z, noise_mode="const")
        logit0 = D(img0)
    adapters = {}
    for net in (G, D):
        for name, layer in iter_adaptable(net):
            assert layer.adapter is None
            adapters[(id(net), name)] = a = IdentityAdapter()
            layer.set_adapter(a)
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const"), img0)
        assert torch.equal(D(img0), logit0)
    # the adapter sees the stored tensors themselves
    for net in (G, D):
        for name, layer in iter_adaptable(net):
            w, b = adapters[(id(net), name)].seen[-1]
            assert w is layer.weight and b is getattr(layer, "bias", None)
    extra = set(G.state_dict()) - set(keys_g)
    assert extra and all(k.endswith(".adapter.gain") for k in extra)
    assert len(list(iter_adaptable(G))) == len(extra)  # adapters are not themselves listed
    for net in (G, D):
        for _, layer in iter_adaptable(net):
            layer.set_adapter(None)
    assert list(G.state_dict()) == keys_g and list(D.state_dict()) == keys_d
    # a non-identity adapter changes the output; removing it restores it
    G.style[1].set_adapter(DoubleWeight())
    with torch.no_grad():
        assert not torch.allclose(G(z, noise_mode="const"), img0)
        G.style[1].set_adapter(None)
        assert torch.equal(G(z, noise_mode="const"), img0)
    with pytest.raises(TypeError):
        G.conv1.conv.set_adapter(lambda w, b: (w, b))


def test_equal_layers_without_bias_and_adapter_shape_check():
    lin = EqualLinear(4, 3, bias=False)
    assert lin(torch.randn(2, 4)).shape == (2, 3)
    conv = EqualConv2d(4, 3, 3, padding=1, bias=False)
    assert conv(torch.randn(1, 4, 5, 5)).shape == (1, 3, 5, 5)

    class WrongShape(nn.Module):
        def forward(self, weight, bias):
            return weight[:1], bias

    lin.set_adapter(WrongShape())
    with pytest.raises(ValueError, match="shape"):
        lin(torch.randn(2, 4))
