"""Methods: LeFT (identity at init, gradients, parameter counts), cluster-wise mode seeking, CDC
anchor/patch D, fine-tuning, EWC, Piggyback; forgetting (rebuild after later tasks) for LFS-GAN and
Piggyback through the real training step (:class:`lfsgan.train.Trainer`)."""

from __future__ import annotations

import json

import lpips
import pytest
import tensorly as tl
import torch
import torch.nn.functional as F

from lfsgan.fisher import fisher_diagonal
from lfsgan.io import load_checkpoint, save_checkpoint
from lfsgan.methods import METHODS, TaskContext, make_method
from lfsgan.methods.adapters import count_tensors
from lfsgan.methods.ewc import ewc_penalty
from lfsgan.methods.left import LeFTConv, LeFTFC, dyadic_partition
from lfsgan.methods.lfsgan import patch_feature_index
from lfsgan.methods.lfsgan import SALT_MS, seeded
from lfsgan.methods.mode_seeking import RealFeatureCache, assign_clusters, cluster_pairs, mode_seeking_loss
from lfsgan.methods.piggyback import n_free, piggyback_param_count
from lfsgan.models import Discriminator, Generator, iter_adaptable
from lfsgan.train import TrainConfig, Trainer

torch.set_num_threads(1)  # small tensors: threads only add contention

SIZE = 16
GKW = dict(style_dim=32, n_mlp=2, channel_max=32)
DKW = dict(channel_max=32)
CFG = TrainConfig(batch=4, r1_every=2, path_reg_every=2, seed=0)


def tiny_models(seed: int = 0) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    return Generator(SIZE, **GKW), Discriminator(SIZE, **DKW)


@pytest.fixture(scope="module")
def source():
    G, D = tiny_models(0)
    return ({k: v.clone() for k, v in G.state_dict().items()}, {k: v.clone() for k, v in D.state_dict().items()})


@pytest.fixture(scope="module")
def lpips_vgg():
    torch.manual_seed(0)
    return lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()


@pytest.fixture(scope="module")
def G256():
    torch.manual_seed(0)
    return Generator(256)  # 30,034,338 parameters, ~0.3 s on the CPU


def real_batch(seed: int, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def assert_adapted_weights_equal(G: Generator, source_g: dict[str, torch.Tensor]) -> None:
    """Every adapted layer's ``(weight, bias)`` as its adapter rebuilds them is bit-equal to the source's."""
    n = 0
    with torch.no_grad():
        for name, layer in iter_adaptable(G):
            if layer.adapter is None:
                continue
            w, b = layer.adapted(layer.weight, getattr(layer, "bias", None))
            assert torch.equal(w, source_g[f"{name}.weight"]), name
            assert b is None or torch.equal(b, source_g[f"{name}.bias"]), name
            n += 1
    assert n > 0


def images(G: Generator, seed: int = 123, n: int = 4) -> torch.Tensor:
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, noise_mode="const")


def train_task(method, source, task_index, previous, steps=2, extras=None):
    """``method.setup`` + ``steps`` real Trainer iterations on a fixed real batch; returns (G, D, state)."""
    G, D = tiny_models(100 + task_index)
    ctx = TaskContext(task_index, f"t{task_index}", source[0], source[1], previous=list(previous),
                      seed=task_index, extras=extras or {})
    method.setup(G, D, ctx)
    trainer = Trainer(G, D, CFG, method)
    torch.manual_seed(task_index)
    for step in range(steps):
        trainer.step(step, real_batch(task_index))
    return G, D, method.task_state(G, D)


def roundtrip(state, tmp_path, name):
    save_checkpoint(tmp_path / f"{name}.pt", state, {"name": name})
    return load_checkpoint(tmp_path / f"{name}.pt")[0]


# --- options -----------------------------------------------------------------------------------
def test_registry_and_option_checking():
    assert set(METHODS) == {"finetune", "ewc", "piggyback", "lfsgan"}
    for kind in METHODS:
        m = make_method(kind, {})
        assert m.name == kind
        json.dumps(m.meta())  # meta is JSON
        with pytest.raises(ValueError, match=f"method '{kind}'.*'bogus' was unexpected"):
            make_method(kind, {"bogus": 1})
    with pytest.raises(ValueError, match="unknown method kind"):
        make_method("lora", {})
    for bad in ({"rank": 0}, {"init": "random"}, {"mode_seeking": "yes"}, {"use_add": "true"}):
        with pytest.raises(ValueError, match="lfsgan"):
            make_method("lfsgan", bad)
    with pytest.raises(ValueError, match="lambda_u"):
        make_method("piggyback", {"lambda_u": 0})
    with pytest.raises(ValueError, match="lambda"):
        make_method("ewc", {"lambda": -1.0})


# --- LeFT --------------------------------------------------------------------------------------
@pytest.mark.parametrize("init,rank", [("trainable", 1), ("trainable", 2), ("trainable", 3), ("trainable", 4),
                                       ("faithful", 1)])
def test_left_reproduces_source_at_init(source, init, rank):
    """At init the reconstructed weights are the source's: bit for bit with the dyadic ``trainable``
    construction. Images go through another code path once an adapter returns a new tensor (e.g. a
    1x1 conv weight whose size-1 dims carry other strides, which the CPU conv may treat as
    channels-last), so on some CPUs (AMD EPYC) they differ in the last bit: compared with a tolerance."""
    G, _ = tiny_models(5)
    G.load_state_dict(source[0])
    ref = images(G)
    m = make_method("lfsgan", {"init": init, "rank": rank})
    m.attach_left(G, seed=7)
    out = images(G)
    assert (out - ref).abs().max().item() <= 1e-6
    if init == "trainable":  # dyadic construction: exactly the identity
        assert_adapted_weights_equal(G, source[0])
    assert tl.get_backend() == "numpy"  # TensorLy's backend did not leak


@pytest.mark.parametrize("base", ["g", "g_ema"])
def test_left_base_is_the_chosen_source_generator_bit_for_bit(base):
    """``options.base`` picks the source generator LeFT trains on: with ``g`` (the released train.py's
    ckpt['g']) the task generator's frozen weights are the source's ``g`` tensors bit for bit, with
    ``g_ema`` its ``g_ema``'s (the shipped sources hold both, and they differ)."""
    from lfsgan.config import load_config
    from lfsgan.train import build_models
    from lfsgan.verbs._methods import task_source
    from lfsgan.verbs._models import model_config

    cfg = load_config("config/config.yaml")
    cfg["methods"]["left-base"] = {"kind": "lfsgan", "options": {"base": base, "patch_d": False, "lpips_allow_random_backbone": True}}
    shipped = cfg["source"]["checkpoints"][0]["path"]  # the demo's base source
    g, d = task_source(cfg, "left-base", shipped)
    stored, _ = load_checkpoint(shipped)
    other = "g_ema" if base == "g" else "g"
    G, D = build_models(model_config(cfg))
    method = make_method("lfsgan", cfg["methods"]["left-base"]["options"])
    assert method.base == base
    method.setup(G, D, TaskContext(task_index=0, task_name="t", source_g=g, source_d=d))
    frozen = {k: v for k, v in G.state_dict().items() if k in stored[base]}
    assert frozen.keys() == stored[base].keys()
    assert all(torch.equal(frozen[k], stored[base][k]) for k in frozen)
    assert any(not torch.equal(frozen[k], stored[other][k]) for k in frozen)
    assert not any(p.requires_grad for k, p in G.named_parameters() if k in stored[base])


def test_base_g_needs_a_source_with_a_raw_generator(source, tmp_path):
    from lfsgan.verbs._models import load_source

    path = tmp_path / "ema_only.pt"
    save_checkpoint(path, {"g_ema": source[0], "d": source[1]}, {})
    assert load_source(path)[0] is not None
    with pytest.raises(ValueError, match="no raw generator 'g'.*options.base to g_ema"):
        load_source(path, generator="g")
    with pytest.raises(ValueError, match="must be one of"):
        load_source(path, generator="ema")


def test_dyadic_partition_sums_exactly():
    g = torch.Generator().manual_seed(0)
    for parts in (1, 2, 3, 5, 8):
        for total in (0.5, 1.0, 2.0):
            p = dyadic_partition(1000, parts, total, 0.1, g)
            assert torch.all(p.sum(1) == total) and torch.all(p.flip(1).sum(1) == total)
            if parts > 1:
                assert p.std(1).min() > 0  # symmetry actually broken


def test_left_conv_tensorly_matches_handwritten_formula():
    """§1.3b with torch.einsum, independently of the TensorLy version (values and gradients)."""
    g = torch.Generator().manual_seed(0)
    mod = LeFTConv(6, 5, 3, rank=3, use_add=True, use_act=True, init="trainable", noise=0.2, generator=g)
    with torch.no_grad():
        for p in mod.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    W = torch.randn(1, 6, 5, 3, 3, generator=g)
    out, _ = mod(W, None)
    A, T, B, P, Q, R, S = (getattr(mod, k) for k in "ATBPQRS")
    m1 = torch.relu(torch.einsum("oq,sqk->sok", A, T) + torch.einsum("oq,kq->ok", P, Q)[None])
    m2 = torch.einsum("is,sok->oik", B, m1)
    ref = W * m2.reshape(1, 6, 5, 3, 3) + torch.einsum("iq,kq->ik", R, S).reshape(1, 1, 5, 3, 3)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    g1 = torch.autograd.grad(out.square().sum(), list(mod.parameters()))
    g2 = torch.autograd.grad(ref.square().sum(), list(mod.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    fc = LeFTFC(4, 7, rank=2, init="trainable", generator=g)
    with torch.no_grad():
        fc.U_a.add_(1.0)
    W2, b2 = torch.randn(4, 7, generator=g), torch.randn(4, generator=g)
    w_hat, b_hat = fc(W2, b2)
    torch.testing.assert_close(w_hat, W2 * (fc.U_m @ fc.V_m.T) + fc.U_a @ fc.V_a.T)
    torch.testing.assert_close(b_hat, b2 * fc.beta_m + fc.beta_a)


ADDITIVE = {"LeFTFC": ("U_a", "V_a"), "LeFTConv": ("P", "Q", "R", "S")}
ZERO_PARTNER = {"U_a", "P", "R"}  # the zero-initialised factor of each pair (trainable init)


def _left_grads(source, init, rank=1):
    G, _ = tiny_models(5)
    G.load_state_dict(source[0])
    m = make_method("lfsgan", {"init": init, "rank": rank})
    m.attach_left(G, seed=3)
    z = torch.randn(4, G.style_dim, generator=torch.Generator().manual_seed(1))
    G(z, noise_mode="const").square().mean().backward()
    return m


def test_faithful_additive_factors_get_exactly_zero_gradient(source):
    m = _left_grads(source, "faithful")
    for a in m.adapters.values():
        for k in ADDITIVE[type(a).__name__]:
            assert torch.count_nonzero(getattr(a, k).grad) == 0, k
    assert sum(a.beta_a.grad.abs().sum() for a in m.adapters.values() if isinstance(a, LeFTFC)) > 0


def test_trainable_additive_factors_get_gradient(source):
    m = _left_grads(source, "trainable")
    for kind, names in ADDITIVE.items():
        for k in names:
            if k in ZERO_PARTNER:
                total = sum(getattr(a, k).grad.abs().sum() for a in m.adapters.values() if type(a).__name__ == kind)
                assert total > 0, k


def test_rank_components_diverge_only_with_trainable_init(source):
    """§1.3d: with constant init the r components get identical updates forever; with noise they don't."""
    spread = {}
    for init in ("faithful", "trainable"):
        G, D = tiny_models(5)
        m = make_method("lfsgan", {"init": init, "rank": 2, "mode_seeking": "off", "patch_d": False})
        m.setup(G, D, TaskContext(0, "t", source[0], source[1], seed=0))
        trainer = Trainer(G, D, CFG, m)
        torch.manual_seed(0)
        for step in range(2):
            trainer.step(step, real_batch(0))
        conv, fc = m.adapters["convs.0.conv"], m.adapters["style.1"]
        spread[init] = max((conv.B[:, 0] - conv.B[:, 1]).abs().max().item(),
                           (fc.V_m[:, 0] - fc.V_m[:, 1]).abs().max().item())
    assert spread["faithful"] == 0.0
    assert spread["trainable"] > 1e-4


@pytest.mark.parametrize("rank,use_add,expected", [(1, True, 108_446), (2, True, 191_540), (4, True, 358_472),
                                                   (1, False, 54_161)])
def test_left_parameter_count_at_256(G256, rank, use_add, expected):
    m = make_method("lfsgan", {"rank": rank, "use_add": use_add})
    m.attach_left(G256, seed=0)
    assert count_tensors(m.task_state(G256, None)) == expected
    assert sum(p.numel() for p in m.generator_parameters(G256)) == expected
    assert sum(p.numel() for p in G256.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("init, expected", [("faithful", 66_961), ("trainable", 108_446)])
def test_left_trained_parameter_count_at_256(init, expected):
    """The released LeFT (faithful init) trains 54,161 multiplicative + 12,800 bias-offset parameters:
    its additive factor pairs start at zero on both sides and never move. The fixed init trains all."""
    torch.manual_seed(0)
    G = Generator(256)
    with torch.no_grad():  # a pretrained source has non-zero mapping biases (0 at init, where b * beta_m has no gradient)
        for name, p in G.named_parameters():
            if name.startswith("style.") and name.endswith("bias"):
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    m = make_method("lfsgan", {"rank": 1, "use_add": True, "init": init})
    m.attach_left(G, seed=0)
    named = [(n, p) for n, p in G.named_parameters() if p.requires_grad]
    before = {n: p.detach().clone() for n, p in named}
    opt = torch.optim.Adam([p for _, p in named], lr=1e-3)
    z = torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # two steps: with the fixed init the random factor moves once its zero partner has
        opt.zero_grad()
        G(z, noise_mode="const").square().mean().backward()
        opt.step()
    trained = sum(p.numel() for n, p in named if not torch.equal(p.detach(), before[n]))
    assert trained == expected


# --- mode seeking ------------------------------------------------------------------------------
def reference_mode_seeking(z, w, feats, x, clusters, n_clusters, variant):
    """§1.6 written as the released loops (F.l1_loss per pair), with the chosen pairing."""
    S, C = 0.0, 0
    for b in range(n_clusters):
        members = (clusters == b).nonzero().flatten().tolist()
        if len(members) < 2:
            continue
        C += 1
        idx = members if variant == "intended" else list(range(len(members)))
        for a in range(len(idx)):
            for c in range(a + 1, len(idx)):
                i, j = idx[a], idx[c]
                dw = F.l1_loss(w[i], w[j])
                S = S + dw / F.l1_loss(z[i], z[j])
                S = S + sum(F.l1_loss(f[i], f[j]) for f in feats) / len(feats) / dw
                S = S + F.l1_loss(x[i], x[j]) / dw
    return 1 / (S / C + 1e-5)


def _ms_inputs(seed, n=12):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, generator=g, requires_grad=True)
    w = (z @ torch.randn(8, 8, generator=g)).tanh()
    feats = [(w @ torch.randn(8, 2 * 9, generator=g)).reshape(n, 2, 3, 3), (w @ torch.randn(8, 16, generator=g)).reshape(n, 1, 4, 4)]
    x = (w @ torch.randn(8, 3 * 16, generator=g)).reshape(n, 3, 4, 4)
    return z, w, feats, x


@pytest.mark.parametrize("variant", ["intended", "faithful"])
def test_mode_seeking_matches_reference_and_is_finite(variant):
    for seed in range(6):
        z, w, feats, x = _ms_inputs(seed)
        g = torch.Generator().manual_seed(seed)
        clusters = torch.randint(4, (12,), generator=g)
        if seed == 0:
            clusters = torch.zeros(12, dtype=torch.long)  # everything in one cluster
        if seed == 1:
            clusters = torch.tensor([0, 1, 2, 3] * 2 + [1, 2, 3, 3])
        loss, info = mode_seeking_loss(z, w, feats, x, clusters, 4, variant)
        ref = reference_mode_seeking(z, w, feats, x, clusters, 4, variant)
        assert torch.isfinite(loss) and info["ms_clusters"] >= 1
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-7)
        (gz,) = torch.autograd.grad(loss, z, retain_graph=True)
        (gz_ref,) = torch.autograd.grad(ref, z)
        assert torch.isfinite(gz).all() and gz.abs().sum() > 0  # flows through numerators and denominators
        torch.testing.assert_close(gz, gz_ref, rtol=1e-4, atol=1e-8)


def test_mode_seeking_pairings_and_empty_case():
    clusters = torch.tensor([2, 0, 2, 1, 2, 0])
    I, J, C = cluster_pairs(clusters, 3, "intended")
    assert C == 2 and sorted(zip(I.tolist(), J.tolist())) == [(0, 2), (0, 4), (1, 5), (2, 4)]
    I, J, C = cluster_pairs(clusters, 3, "faithful")  # the released bug: first L_b batch indices
    assert C == 2 and sorted(zip(I.tolist(), J.tolist())) == [(0, 1), (0, 1), (0, 2), (1, 2)]
    z, w, feats, x = _ms_inputs(0, n=3)
    loss, info = mode_seeking_loss(z, w, feats, x, torch.tensor([0, 1, 2]), 3)
    assert loss.item() == 0.0 and info["ms_clusters"] == 0


@pytest.mark.parametrize("variant", ["intended", "faithful"])
def test_lfsgan_fast_mode_seeking_equals_straightforward_loss(source, lpips_vgg, variant):
    """The LFS-GAN term (row-wise pair distances, each distinct pair once; LPIPS features of the real
    shots cached across steps; d(w) on w, not its broadcast) equals §1.6 computed the plain way — the
    released loops over F.l1_loss on the broadcast ws, LPIPS of every real every step — in value and
    in the gradient of every LeFT tensor, over three steps (the cache is hit from the second on)."""
    G, D = tiny_models(1)
    m = make_method("lfsgan", {"mode_seeking": variant, "ms_factor": 4})
    m.lpips_model = lpips_vgg
    m.setup(G, D, TaskContext(0, "t", source[0], source[1], seed=0))
    params = list(m.generator_parameters(G))
    ref_gen = seeded(0, SALT_MS)
    real = real_batch(0)
    for step in range(3):
        real = real[torch.randperm(4, generator=torch.Generator().manual_seed(step))]  # the same shots, reordered
        torch.manual_seed(100 + step)  # G's noise inputs
        fast = m.generator_loss_terms(G, D, real, step)["mode_seeking"]
        g_fast = torch.autograd.grad(fast, params)
        torch.manual_seed(100 + step)
        z = torch.randn(16, G.style_dim, generator=ref_gen)
        ws = G.make_ws([G.mapping(z)])
        images, feats = G.synthesis(ws, noise_mode="random", return_features=True)
        clusters = assign_clusters(images, real, lpips_vgg)
        ref = reference_mode_seeking(z, ws, feats, images, clusters, 4, variant)
        g_ref = torch.autograd.grad(ref, params)
        assert m.last_info["ms_pairs"] > 0
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=0)
        scale = max(float(b.abs().max()) for b in g_ref)  # some LeFT factors get ~0 gradient (methods.md §1.3d)
        assert scale > 0
        for a, b in zip(g_fast, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)


def test_fakes_and_mode_seeking_samples_in_one_pass_equal_two_passes(source, lpips_vgg):
    """The trainer draws LFS-GAN's mode-seeking samples in the same G call as the step's fakes
    (``synthesize``): with G's noise inputs off (their draw order is the one thing that differs), the
    fakes (style-mixed), the extra images, features, w and the mode-seeking term equal the two separate
    passes, and so do the gradients of every LeFT tensor."""
    from lfsgan.methods.base import synthesize
    from lfsgan.models.layers import NoiseInjection

    G, D = tiny_models(1)
    m = make_method("lfsgan", {"mode_seeking": "intended", "ms_factor": 4})
    m.lpips_model = lpips_vgg
    m.setup(G, D, TaskContext(0, "t", source[0], source[1], seed=0))
    for module in G.modules():
        if isinstance(module, NoiseInjection):
            module.weight.data.fill_(0.0)
    params, real = list(m.generator_parameters(G)), real_batch(0)
    gen = torch.Generator().manual_seed(3)
    latents = list(torch.randn(2, 4, G.style_dim, generator=gen).unbind(0))  # style mixing, cut at 2
    z = torch.randn(16, G.style_dim, generator=gen)

    fake, extra = synthesize(G, latents, 2, z)
    assert fake.shape == (4, 3, 16, 16) and extra.images.shape == (16, 3, 16, 16)
    ms = m.generator_loss_terms(G, D, real, 1, extra)["mode_seeking"]
    joint = torch.autograd.grad(fake.square().mean() + ms, params, allow_unused=True)

    fake2 = G(latents, inject_index=2)
    _, alone = synthesize(G, [], None, z)
    ms2 = m.generator_loss_terms(G, D, real, 1, alone)["mode_seeking"]
    apart = torch.autograd.grad(fake2.square().mean() + ms2, params, allow_unused=True)

    torch.testing.assert_close(fake, fake2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extra.images, alone.images, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extra.w, alone.w, rtol=1e-5, atol=1e-6)
    for a, b in zip(extra.feats, alone.feats, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ms, ms2, rtol=1e-5, atol=0)
    scale = max(float(b.abs().max()) for b in apart if b is not None)
    assert scale > 0
    for a, b in zip(joint, apart, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_pair_distances_read_any_memory_layout():
    """Channels-last feature maps (what G's convolutions return) are read without a copy, in memory
    order: same distances and gradients as the contiguous tensor and as F.l1_loss pair by pair."""
    from lfsgan.methods.mode_seeking import pair_groups, pair_mean_l1

    x = torch.randn(7, 5, 4, 3, generator=torch.Generator().manual_seed(0))
    clusters = torch.tensor([0, 1, 0, 0, 1, 2, 1])
    I, J, _ = cluster_pairs(clusters, 3)
    want = torch.stack([F.l1_loss(x[i], x[j]) for i, j in zip(I.tolist(), J.tolist())])
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.clone().to(memory_format=layout).requires_grad_()
        d = pair_mean_l1(xl, I, J, pair_groups(clusters, 3))
        torch.testing.assert_close(d, want, rtol=1e-6, atol=1e-7)
        (g,) = torch.autograd.grad((d * torch.arange(1.0, len(d) + 1)).sum(), xl)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1])


def test_real_feature_cache_equals_fresh_features(lpips_vgg):
    from lfsgan.metrics.diversity import lpips_features

    cache, real = RealFeatureCache(), real_batch(5, n=6)
    for batch in (real[[0, 1, 2]], real[[2, 0, 3, 3, 5]], real.flip(0)):
        for got, want in zip(cache.features(lpips_vgg, batch), lpips_features(lpips_vgg, batch)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert len(cache._store) == 6  # each distinct image stored once
    tiny = RealFeatureCache(max_bytes=1)  # over budget: emptied, still correct
    for got, want in zip(tiny.features(lpips_vgg, real), lpips_features(lpips_vgg, real)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_lpips_cluster_assignment(lpips_vgg):
    real = real_batch(3)  # [4, 3, 16, 16]
    order = torch.tensor([2, 0, 3, 3, 1, 0, 2, 1])
    fakes = real[order]
    assert torch.equal(assign_clusters(fakes, real, lpips_vgg), order)
    fakes = real_batch(4, n=6)  # unrelated images: same argmin as calling LPIPS pair by pair
    with torch.no_grad():
        brute = torch.stack([lpips_vgg(fakes, y[None].expand(6, -1, -1, -1)).flatten() for y in real], 1)
    assert torch.equal(assign_clusters(fakes, real, lpips_vgg), brute.argmin(1))
    from lfsgan.metrics.diversity import lpips_features, lpips_matrix

    fakes = real_batch(6, n=40)  # the b-independent term left out: still the full LPIPS matrix's argmin
    full = lpips_matrix(lpips_vgg, lpips_features(lpips_vgg, fakes), lpips_features(lpips_vgg, real))
    assert torch.equal(assign_clusters(fakes, real, lpips_vgg), full.argmin(1))


def test_lfsgan_mode_seeking_term_uses_generator(source, lpips_vgg):
    G, D = tiny_models(1)
    m = make_method("lfsgan", {"mode_seeking": "intended"})
    m.lpips_model = lpips_vgg
    m.setup(G, D, TaskContext(0, "t", source[0], source[1], seed=0))
    terms = m.generator_loss_terms(G, D, real_batch(0), step=1)
    assert set(terms) == {"mode_seeking"} and torch.isfinite(terms["mode_seeking"])
    terms["mode_seeking"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.generator_parameters(G))
    assert m.last_info["ms_clusters"] >= 1
    assert make_method("lfsgan", {"mode_seeking": "off"}).generator_loss_terms(G, D, real_batch(0), 1) == {}


# --- CDC anchor / patch D ----------------------------------------------------------------------
def test_patch_feature_index():
    assert patch_feature_index(256) == 3  # 32x32, CDC's 512-ch map
    assert patch_feature_index(32) == 2 and patch_feature_index(16) == 1 and patch_feature_index(8) == 0
    assert patch_feature_index(1024) == 5


def test_anchor_and_patch_steps(source):
    G, D = tiny_models(2)
    m = make_method("lfsgan", {"n_anchors": 3})
    m.setup(G, D, TaskContext(0, "t", source[0], source[1], seed=4))
    anchors = m.anchors.clone()
    gen = torch.Generator().manual_seed(0)
    (z,) = m.sample_latents(0, 5, G, gen)  # anchor step: one latent, near an anchor
    dist = (z[:, None] - anchors[None]).abs().amax(2).min(1).values
    assert z.shape == (5, G.style_dim) and dist.max() < 0.1 * 5
    assert m.discriminate(D, real_batch(0), 0).shape == (4, 1)
    patch = m.discriminate(D, real_batch(0), 1)
    assert patch.shape == (4, 1, 8, 8)  # 16 px -> 8x8 patch logits
    # CDC's tap: the main branch of the ResBlock, before the residual add (not the block output)
    with torch.no_grad():
        block = D.convs[m.patch_index]
        x = D.convs[: m.patch_index](real_batch(0))
        torch.testing.assert_close(patch, m.patch_head(block.conv2(block.conv1(x))))
        assert not torch.allclose(patch, m.patch_head(block(x)))
    assert m.extra_discriminator_modules() is m.patch_head
    m2 = make_method("lfsgan", {"n_anchors": 3})
    m2.setup(*tiny_models(3), TaskContext(0, "t", source[0], source[1], seed=4))
    assert torch.equal(m2.anchors, anchors)  # drawn from the seed
    m3 = make_method("lfsgan", {"patch_d": False})
    m3.setup(G, D, TaskContext(0, "t", source[0], source[1], seed=4))
    assert m3.discriminate(D, real_batch(0), 1).shape == (4, 1) and m3.extra_discriminator_modules() is None


# --- forgetting --------------------------------------------------------------------------------
def test_lfsgan_task_rebuilt_after_later_tasks_is_identical(source, lpips_vgg, tmp_path):
    def method():
        m = make_method("lfsgan", {"rank": 2})
        m.lpips_model = lpips_vgg
        return m

    states, after = [], []
    for t in range(3):
        G, D, state = train_task(method(), source, t, states)
        G.requires_grad_(False)
        after.append(images(G))
        states.append(roundtrip(state, tmp_path, f"lfs{t}"))
        assert not torch.equal(after[-1], images(method().rebuild(tiny_models(9)[0], source[0], [])))  # it trained
        # the frozen base never moved
        assert all(torch.equal(v, source[0][k]) for k, v in G.state_dict().items() if ".adapter." not in k)
    for t in range(3):
        G = method().rebuild(tiny_models(9)[0], source[0], states[: t + 1])
        assert torch.equal(images(G), after[t])


def test_lfsgan_train_biases_trains_and_stores_just_those_biases(source, lpips_vgg, tmp_path):
    """``train_biases``: ``none`` (the released code) leaves every source bias frozen and stores only
    LeFT; ``rgb`` trains and stores the ToRGB biases (3 each), ``all`` also the activation biases; every
    other source weight stays fixed and the stored state rebuilds the trained generator exactly."""
    plain = make_method("lfsgan")
    plain.lpips_model = lpips_vgg
    G, D, state = train_task(plain, source, 0, [])
    assert set(state) == {"left"}
    n_left = count_tensors(state)
    for which, extra in (("rgb", 3 * G.log_size - 3), ("all", None)):
        m = make_method("lfsgan", {"train_biases": which})
        m.lpips_model = lpips_vgg
        G, D, state = train_task(m, source, 0, [])
        G.requires_grad_(False)
        rgb = {k for k in state["biases"] if "rgb" in k}
        assert rgb == {"to_rgb1.bias", *(f"to_rgbs.{i}.bias" for i in range(G.log_size - 2))}
        assert (set(state["biases"]) == rgb) == (which == "rgb")
        if which == "all":
            assert "conv1.activate.bias" in state["biases"] and "convs.0.activate.bias" in state["biases"]
            extra = sum(v.numel() for v in state["biases"].values())
        assert count_tensors(state) == n_left + extra
        after = G.state_dict()
        for k, v in source[0].items():  # the stored biases moved; every other source tensor did not
            assert torch.equal(after[k], v) != (k in state["biases"]), k
        state = roundtrip(state, tmp_path, which)
        rebuilt = make_method("lfsgan", {"train_biases": which}).rebuild(tiny_models(9)[0], source[0], [state])
        assert torch.equal(images(rebuilt), images(G))
        with pytest.raises(KeyError, match="train_biases='none'"):
            make_method("lfsgan").rebuild(tiny_models(9)[0], source[0], [state])


def test_piggyback_task_rebuilt_after_later_tasks_is_identical(source, tmp_path):
    states, after = [], []
    for t in range(3):
        G, D, state = train_task(make_method("piggyback"), source, t, states)
        after.append(images(G))
        states.append(roundtrip(state, tmp_path, f"pb{t}"))
        if t > 0:  # the bank holds the earlier tasks' free filters unchanged
            a = dict(G.named_modules())["convs.1.conv.adapter"]
            banked = torch.cat([s["filters"]["convs.1.conv"]["free"] for s in states[:t]])
            assert torch.equal(a.banked, banked)
    for t in range(3):
        G = make_method("piggyback").rebuild(tiny_models(9)[0], source[0], states[: t + 1])
        assert torch.equal(images(G), after[t])
        assert count_tensors(states[t]) == piggyback_param_count(G, t, 0.25, fc=False)
    # init "previous": task 3 starts exactly where task 2 ended (its W zero-padded for the new bank rows)
    G, D = tiny_models(9)
    make_method("piggyback", {"init": "previous"}).setup(G, D, TaskContext(3, "t3", *source, previous=states))
    torch.testing.assert_close(images(G), after[2], rtol=0, atol=1e-6)


def test_piggyback_starts_at_source_and_counts(source, G256):
    for fc in (False, True):
        G, D = tiny_models(6)
        m = make_method("piggyback", {"fc": fc})
        m.setup(G, D, TaskContext(0, "t", source[0], source[1]))
        ref, _ = tiny_models(6)
        ref.load_state_dict(source[0])
        assert_adapted_weights_equal(G, source[0])  # exactly the source; images through another path:
        torch.testing.assert_close(images(G), images(ref), rtol=0, atol=1e-6)
        trainable = sum(p.numel() for p in m.generator_parameters(G))
        assert trainable == count_tensors(m.task_state(G, D)) == piggyback_param_count(G, 0, 0.25, fc)
    # the per-layer formula by hand: a 3x3 conv 32->32 at task t=2, n_u = 8, n_p = 24, bank 32 + 2*8
    assert n_free(32, 0.25) == 8 and n_free(3, 0.25) == 1
    conv = dict(G.named_modules())["convs.1.conv"]
    assert conv.weight.shape == (1, 32, 32, 3, 3)
    # StyleGAN2-256 conv filters only, bank = source (methods.md §3.3: ≈ 7.76 M per task, + biases)
    biases = sum(p.numel() for k, p in G256.named_parameters() if k.endswith("bias"))
    assert piggyback_param_count(G256, 0, 0.25, fc=False) - biases == pytest.approx(7.76e6, rel=2e-3)


# --- fine-tuning and EWC -----------------------------------------------------------------------
def test_finetune_chains_from_previous_task(source):
    G, D, s0 = train_task(make_method("finetune"), source, 0, [])
    assert set(s0) == {"g"} and count_tensors(s0) == sum(p.numel() for p in G.state_dict().values())
    G1, D1 = tiny_models(7)
    make_method("finetune").setup(G1, D1, TaskContext(1, "t1", source[0], source[1], previous=[s0]))
    assert all(torch.equal(G1.state_dict()[k], v) for k, v in s0["g"].items())
    assert all(torch.equal(D1.state_dict()[k], v) for k, v in source[1].items())


@pytest.fixture(scope="module")
def fisher(source):
    G, D = tiny_models(0)
    G.load_state_dict(source[0])
    D.load_state_dict(source[1])
    return fisher_diagonal(G, D, n_samples=8, batch_size=2, seed=0, progress=False)


def test_ewc_penalty_zero_at_source_and_quadratic(source, fisher):
    G, _ = tiny_models(0)
    G.load_state_dict(source[0])
    src = {k: v.clone() for k, v in source[0].items()}
    assert ewc_penalty(G, fisher, src, 5e8).item() == 0.0
    delta = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 1e-2 for k, p in G.named_parameters()}
    values = []
    for alpha in (1.0, 2.0, 4.0):
        with torch.no_grad():
            for k, p in G.named_parameters():
                p.copy_(src[k] + alpha * delta[k])
        values.append(ewc_penalty(G, fisher, src, 1.0).item())
    assert values[0] > 0
    assert values[1] / values[0] == pytest.approx(4.0, rel=1e-3) and values[2] / values[0] == pytest.approx(16.0, rel=1e-3)


def test_ewc_larger_lambda_stays_closer_to_source(source, fisher):
    with pytest.raises(KeyError, match="fisher"):
        train_task(make_method("ewc"), source, 0, [])
    weighted, plain = {}, {}
    for lam in (0.0, 1e7, 1e9):
        G, _, _ = train_task(make_method("ewc", {"lambda": lam}), source, 0, [], steps=6, extras={"fisher": fisher})
        weighted[lam] = ewc_penalty(G, fisher, source[0], 1.0).item()  # Σ F (θ − θ_S)²
        plain[lam] = sum((p - source[0][k]).pow(2).sum().item() for k, p in G.named_parameters())
    assert weighted[1e9] < 0.1 * weighted[0.0] and weighted[1e7] < 0.1 * weighted[0.0]
    assert plain[1e9] < plain[1e7] < plain[0.0]
