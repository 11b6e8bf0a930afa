"""Tests for lfsgan.permute: spec coverage, functional equivalence, exact recovery, matching
invariants, MergeMany, interpolation/mixture, barriers, singular-value diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lfsgan.models import Discriminator, Generator
from lfsgan.permute import (
    DEFAULT_LAMBDAS,
    alignment_sum,
    MixtureGenerator,
    apply_permutation,
    barrier,
    discriminator_spec,
    effective_sq_distance,
    generator_spec,
    interpolate,
    l2_totals,
    layer_matrices,
    lmc_curve,
    match,
    match_many,
    mixture_curve,
    mixture_images,
    pairwise_sq_distances,
    plot_singular_diagnostics,
    random_perms,
    r_gamma,
    recompute_mean_latent,
    singular_diagnostics,
    ste_search,
)

SMALL_G = dict(size=16, style_dim=32, n_mlp=2, channel_max=16)
SMALL_D = dict(size=16, channel_max=16)


def _jitter(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give biases and noise strengths non-trivial values, so a forgotten one would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or name.endswith("noise.weight"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def make_g(seed: int, **kw) -> Generator:
    torch.manual_seed(seed)
    return _jitter(Generator(**{**SMALL_G, **kw}), seed)


def make_d(seed: int, **kw) -> Discriminator:
    torch.manual_seed(seed)
    return _jitter(Discriminator(**{**SMALL_D, **kw}), seed)


def _max_abs_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# --- (e) spec coverage -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 32, 256])
def test_spec_covers_every_key(size):
    kw = dict(style_dim=32, n_mlp=3, channel_max=16) if size < 256 else {}
    with torch.device("meta"):  # 256 with default widths: shapes only, no memory
        G, D = Generator(size, **kw), Discriminator(size, **({"channel_max": 16} if size < 256 else {}))
    for net, spec in ((G, generator_spec(G)), (D, discriminator_spec(D))):
        state = net.state_dict()
        assert list(spec.tensors) == list(state)  # every parameter and buffer, same order
        spec.check_state(state)
        sizes = spec.perm_sizes(state)
        assert all(n > 0 for n in sizes.values())
        # the effective-scale gains are the modules' own equalised-lr constants
        for name, m in net.named_modules():
            if hasattr(m, "scale") and f"{name}.weight" in spec:
                assert math.isclose(spec[f"{name}.weight"].gain, m.scale, rel_tol=1e-12), name
                if hasattr(m, "lr_mul") and f"{name}.bias" in spec:
                    assert math.isclose(spec[f"{name}.bias"].gain, m.lr_mul, rel_tol=1e-12), name
    g_spec = generator_spec(G)
    n_res = int(math.log2(size)) - 2
    n_mlp = kw.get("n_mlp", 8)
    assert set(g_spec.perm_names) == {f"P_map{i}" for i in range(1, n_mlp)} | {"P_w"} | {
        f"P_{2 ** r}" for r in range(2, n_res + 3)
    }
    # every modulation (ToRGBs included) reads W space; noise maps, FIR kernels, RGB bias unpermuted
    mods = [k for k in g_spec.tensors if k.endswith("modulation.weight")]
    assert len(mods) == 3 * n_res + 2 and all(g_spec[k].axes[1] == "P_w" for k in mods)
    unpermuted = g_spec.unpermuted()
    assert {k for k in unpermuted if k.startswith("noises.")} == {f"noises.noise_{i}" for i in range(2 * n_res + 1)}
    assert all(k in unpermuted for k in g_spec.tensors if k.endswith(("noise.weight", "kernel", "to_rgb1.bias")))
    assert all(unpermuted.values())  # each carries its reason
    d_spec = discriminator_spec(D)
    assert d_spec["final_conv.0.weight"].partial == ((1, D.state_dict()["final_conv.0.weight"].shape[1] - 1),)
    assert d_spec["final_linear.0.weight"].axes == ("Q_final_linear", "Q_final_conv", None)


def test_unknown_or_missing_key_is_an_error():
    G = make_g(0)
    state = G.state_dict()
    spec = generator_spec(state)
    extra = {**state, "convs.0.conv.adapter.u": torch.zeros(3)}
    with pytest.raises(KeyError, match="adapter"):
        generator_spec(extra)
    with pytest.raises(KeyError, match="does not know"):
        spec.check_state(extra)
    with pytest.raises(KeyError):
        apply_permutation(extra, spec, random_perms(spec.perm_sizes(state), 0))
    missing = {k: v for k, v in state.items() if k != "conv1.activate.bias"}
    with pytest.raises(KeyError):
        generator_spec(missing)
    with pytest.raises(KeyError):
        match(state, missing, spec)
    with pytest.raises(ValueError, match="not a permutation"):
        apply_permutation(state, spec, {**random_perms(spec.perm_sizes(state), 0), "P_4": torch.zeros(16, dtype=torch.long)})


# --- (a) functional equivalence ------------------------------------------------------------------
def test_permuted_generator_is_the_same_function():
    G = make_g(1)
    spec = generator_spec(G)
    perms = random_perms(spec.perm_sizes(G.state_dict()), seed=7)
    assert all(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    G2 = Generator(**SMALL_G).eval()
    G2.load_state_dict(apply_permutation(G.state_dict(), spec, perms))
    z = torch.randn(4, SMALL_G["style_dim"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for psi in (1.0, 0.7):
            x1 = G(z, noise_mode="const", truncation=psi, truncation_latent=recompute_mean_latent(G, 256, 0))
            x2 = G2(z, noise_mode="const", truncation=psi, truncation_latent=recompute_mean_latent(G2, 256, 0))
            assert float((x1 - x2).abs().max()) < 1e-5 * max(1.0, float(x1.abs().max()))
        # and the weights really moved
        assert _max_abs_diff(G.state_dict(), G2.state_dict()) > 0.1


def test_permuted_discriminator_is_the_same_function():
    D = make_d(2)
    spec = discriminator_spec(D)
    perms = random_perms(spec.perm_sizes(D.state_dict()), seed=8)
    D2 = Discriminator(**SMALL_D).eval()
    D2.load_state_dict(apply_permutation(D.state_dict(), spec, perms))
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        l1, l2 = D(x), D2(x)
    assert l1.shape == (8, 1)
    assert float((l1 - l2).abs().max()) < 1e-5 * max(1.0, float(l1.abs().max()))
    # the minibatch-stddev input channel stays last, only its output axis moves
    w, w2 = D.state_dict()["final_conv.0.weight"], D2.state_dict()["final_conv.0.weight"]
    assert torch.equal(w2[:, -1], w[perms["Q_final_conv"], -1])


# --- (b) exact recovery, (c) identity -------------------------------------------------------------
@pytest.mark.parametrize("net", ["G", "D"])
def test_matching_recovers_a_random_permutation_exactly(net):
    model = make_g(3) if net == "G" else make_d(3)
    spec = generator_spec(model) if net == "G" else discriminator_spec(model)
    a = model.state_dict()
    b = apply_permutation(a, spec, random_perms(spec.perm_sizes(a), seed=11))
    res = match(a, b, spec, seed=0)
    assert res.converged and res.sweeps <= 5
    assert _max_abs_diff(apply_permutation(b, spec, res.perms), a) == 0.0
    assert res.l2_history[0] > 1.0 and res.l2_history[-1] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("net", ["G", "D"])
def test_matching_a_model_to_itself_is_the_identity(net):
    model = make_g(4) if net == "G" else make_d(4)
    spec = generator_spec(model) if net == "G" else discriminator_spec(model)
    res = match(model.state_dict(), model.state_dict(), spec)
    assert res.sweeps == 1 and res.converged
    assert all(torch.equal(p, torch.arange(len(p))) for p in res.perms.values())


# --- (d) objective monotone, bookkeeping exact ------------------------------------------------
@pytest.mark.parametrize("net", ["G", "D"])
def test_objective_never_decreases_for_independent_models(net):
    kw = dict(channel_max=32, size=32)
    a, b = ((make_g(s, **kw) if net == "G" else make_d(s, **kw)).state_dict() for s in (5, 6))
    spec = generator_spec(a) if net == "G" else discriminator_spec(a)
    res = match(a, b, spec, seed=1)
    obj = np.asarray(res.objective_history)
    assert res.converged and len(obj) > len(res.perms)
    assert np.all(np.diff(obj) >= 0) and obj[-1] > obj[0]
    # the incrementally tracked objective equals a from-scratch evaluation
    exact = math.sqrt(effective_sq_distance(a, apply_permutation(b, spec, res.perms), spec))
    assert res.l2_history[-1] == pytest.approx(exact, rel=1e-9)
    assert res.l2_history[-1] < res.l2_history[0]
    # skipping LAPs whose cost matrix cannot have changed gives the same answer
    full = match(a, b, spec, seed=1, skip_unchanged=False)
    assert all(torch.equal(full.perms[p], res.perms[p]) for p in res.perms)
    # a warm start from the answer stops after one sweep
    assert match(a, b, spec, seed=2, init=res.perms).sweeps == 1


def test_cost_uses_effective_weights():
    """The mapping net's stored weights are 1/lr_mlp = 100x its effective ones; the spec's gain
    must undo that, so scaling lr_mlp in the spec alone changes nothing but the objective scale."""
    state = make_g(0).state_dict()
    spec = generator_spec(state)
    assert spec["style.1.weight"].gain == pytest.approx(0.01 / math.sqrt(SMALL_G["style_dim"]))
    assert spec["style.2.bias"].gain == pytest.approx(0.01)
    assert spec["conv1.conv.weight"].gain == pytest.approx(1 / math.sqrt(16 * 9))


# --- MergeMany / anchor ---------------------------------------------------------------------
def test_match_many_converges_and_lowers_summed_distance():
    states = [make_g(s, channel_max=16).state_dict() for s in (10, 11, 12)]
    spec = generator_spec(states[0])
    before = np.triu(pairwise_sq_distances(states, spec)).sum()
    res = match_many(states, spec, seed=0)
    assert res.converged and res.anchor is None
    hist = np.asarray(res.distance_history)
    assert hist[0] == pytest.approx(before)
    assert np.all(np.diff(hist) <= 1e-9 * hist[0]) and hist[-1] < 0.97 * hist[0]
    assert np.triu(pairwise_sq_distances(states, spec, res.perms)).sum() == pytest.approx(hist[-1], rel=1e-9)

    anchored = match_many(states, spec, anchor=1)
    assert all(torch.equal(p, torch.arange(len(p))) for p in anchored.perms[1].values())
    assert anchored.distance_history[-1] < anchored.distance_history[0]


@pytest.mark.parametrize("net", ["G", "D"])
def test_match_many_aligns_permuted_copies_exactly(net):
    a = (make_g(13) if net == "G" else make_d(13)).state_dict()
    spec = (generator_spec if net == "G" else discriminator_spec)(a)
    sizes = spec.perm_sizes(a)
    states = [a] + [apply_permutation(a, spec, random_perms(sizes, s)) for s in (1, 2)]
    for anchor in (None, 0):
        res = match_many(states, spec, anchor=anchor)
        aligned = [apply_permutation(s, spec, p) for s, p in zip(states, res.perms)]
        assert _max_abs_diff(aligned[1], aligned[0]) == 0.0 and _max_abs_diff(aligned[2], aligned[0]) == 0.0
        hist = np.asarray(res.distance_history)  # Σ_{i<j} ||π_i θ_i - π_j θ_j||²: monotone down to 0
        assert res.converged and np.all(np.diff(hist) <= 0) and hist[0] > 0 and hist[-1] < 1e-9 * hist[0]


def _is_merge_many_fixed_point(states, spec, perms) -> bool:
    """One more MergeMany round changes nothing: WM of every model onto the mean of the others
    (float64, already permuted), warm-started from its permutations, returns them unchanged."""
    from lfsgan.permute import average_states

    aligned = [{k: v.double() if v.is_floating_point() else v for k, v in apply_permutation(s, spec, p).items()}
               for s, p in zip(states, perms)]
    for i, (state, p) in enumerate(zip(states, perms)):
        mean = average_states([a for j, a in enumerate(aligned) if j != i], spec=spec)
        again = match(mean, state, spec, init=p, seed=7 + i).perms
        if any(not torch.equal(again[q], p[q]) for q in p):
            return False
    return True


def _shipped_sources() -> list[dict]:
    from lfsgan.verbs._models import load_source

    return [load_source(f"data/sources/seed{s}.pt")[0] for s in (0, 1, 2)]


@pytest.mark.parametrize("models", ["planted", "trained"])
def test_match_many_converged_means_a_fixed_point(models):
    """The references' stop: converged only after a round that changed no assignment; the
    permutations are then a fixed point of one more round (planted permuted copies of one G, and
    the three shipped trained sources)."""
    if models == "planted":
        a = make_g(14).state_dict()
        spec = generator_spec(a)
        states = [a] + [apply_permutation(a, spec, random_perms(spec.perm_sizes(a), s)) for s in (5, 6)]
    else:
        states = _shipped_sources()
        spec = generator_spec(states[0])
    for init in ("anchor", "identity"):
        res = match_many(states, spec, init=init, seed=1)
        assert res.converged and res.changes[-1] == 0 and len(res.changes) == res.rounds
        assert _is_merge_many_fixed_point(states, spec, res.perms)
    if models == "trained":  # the rounds had work to do: the anchored start is not a fixed point
        assert res.changes[0] > 0
        assert not _is_merge_many_fixed_point(states, spec, match_many(states, spec, anchor=0).perms)


def test_match_many_round_cap_or_loose_stop_is_not_converged():
    states = _shipped_sources()
    spec = generator_spec(states[0])
    capped = match_many(states, spec, max_rounds=1, seed=1)
    assert capped.rounds == 1 and capped.changes[0] > 0 and not capped.converged
    loose = match_many(states, spec, stop="distance_rtol_loose", round_rtol=0.5, round_max_iter=1, seed=1)
    assert loose.rounds == 1 and not loose.converged  # stopped on the distance with assignments still moving
    with pytest.raises(ValueError, match="stop must be one of"):
        match_many(states, spec, stop="distance")


# --- interpolation, LMC curve, mixture ---------------------------------------------------------
def test_interpolate_endpoints_and_fixed_buffers():
    a, b = make_g(20).state_dict(), make_g(21).state_dict()
    spec = generator_spec(a)
    assert _max_abs_diff(interpolate(a, b, 0.0, spec=spec), a) == 0.0
    end = interpolate(a, b, 1.0, spec=spec)
    mid = interpolate(a, b, 0.5, spec=spec)
    for k in a:
        if spec[k].interpolate:
            assert torch.equal(end[k], b[k]), k
            err = (mid[k] - 0.5 * (a[k] + b[k])).abs()
            assert bool((err <= 1e-6 * (a[k].abs() + b[k].abs() + 1)).all()), k
        else:  # noise maps and FIR kernels come from A at every λ
            assert torch.equal(end[k], a[k]) and torch.equal(mid[k], a[k]), k
    assert not torch.equal(a["noises.noise_0"], b["noises.noise_0"])


def test_lmc_curve_and_mixture():
    G_a, G_b = make_g(30), make_g(31)
    spec = generator_spec(G_a)
    b_perm = apply_permutation(G_b.state_dict(), spec, match(G_a.state_dict(), G_b.state_dict(), spec).perms)
    z = torch.randn(6, SMALL_G["style_dim"], generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def metric(G):  # any function of G at fixed latents and noise
        w_bar = recompute_mean_latent(G, 128, 0) if not isinstance(G, MixtureGenerator) else None
        return float(G(z, noise_mode="const", truncation=0.5, truncation_latent=w_bar).std())

    factory = lambda: Generator(**SMALL_G)  # noqa: E731
    recs = lmc_curve(factory, G_a.state_dict(), b_perm, None, metric, spec=spec, progress=False)
    assert [r["lambda"] for r in recs] == list(DEFAULT_LAMBDAS) and len(recs) == 11
    assert recs[0]["value"] == pytest.approx(metric(G_a), rel=1e-6)
    b = barrier([r["value"] for r in recs], [r["lambda"] for r in recs])
    assert np.isfinite(b["barrier_max"]) and b["barrier_linear"] >= 0

    mix = mixture_curve(factory, G_a.state_dict(), G_b.state_dict(), [0.0, 0.5, 1.0], metric, mean_latent_n=128, progress=False)
    assert mix[0]["value"] == pytest.approx(metric(G_a), rel=1e-6)
    assert mix[-1]["value"] == pytest.approx(metric(G_b), rel=1e-6)

    with torch.no_grad():
        imgs = mixture_images(G_a, G_b, z, 0.5, batch_size=4, noise_mode="const")
        assert imgs.shape == (6, 3, 16, 16)
        assert torch.allclose(imgs[:3], G_a(z[:3], noise_mode="const"), atol=1e-6)
        assert torch.allclose(imgs[3:], G_b(z[3:], noise_mode="const"), atol=1e-6)
        trunc = mixture_images(G_a, G_b, z, 0.5, truncation=0.5, mean_latent_n=128)
        ref = G_b(z[3:], noise_mode="const", truncation=0.5, truncation_latent=G_b.mean_latent(128, 0))
        assert torch.allclose(trunc[3:], ref, atol=1e-6)


# --- barriers -------------------------------------------------------------------------------
def test_barrier_hand_example():
    lam = [0.0, 1 / 3, 2 / 3, 1.0]
    b = barrier([1.0, 2.5, 3.0, 3.0], lam)
    # Git Re-Basin: max - mean of endpoints = 3 - 2
    assert b["barrier_max"] == pytest.approx(1.0) and b["relative_max"] == pytest.approx(0.5)
    # Entezari: max over λ of M(λ) - lerp(endpoints) = 2.5 - (1 + 2/3) at λ = 1/3
    assert b["barrier_linear"] == pytest.approx(2.5 - 5 / 3) and b["lambda_linear"] == pytest.approx(1 / 3)
    assert b["relative_linear"] == pytest.approx((2.5 - 5 / 3) / 2)
    # accuracy-like metric: a dip below the endpoints is the barrier
    acc = barrier([0.9, 0.6, 0.8], [0.0, 0.5, 1.0], lower_is_better=False)
    assert acc["barrier_max"] == pytest.approx(0.25) and acc["barrier_linear"] == pytest.approx(0.25)
    assert acc["relative_max"] == pytest.approx(0.25 / 0.85)
    # a flat path has no barrier; endpoints are required
    assert barrier([2.0] * 11)["barrier_linear"] == 0.0
    with pytest.raises(ValueError):
        barrier([1.0, 2.0, 3.0], [0.1, 0.5, 1.0])


# --- Ito et al. diagnostics ------------------------------------------------------------------
def test_singular_diagnostics(tmp_path):
    a = make_g(40).state_dict()
    spec = generator_spec(a)
    perms = random_perms(spec.perm_sizes(a), seed=5)
    b = apply_permutation(a, spec, perms)
    # singular values are permutation invariant: π(B) has B's spectrum
    mats_b, mats_pb = layer_matrices(b, spec), layer_matrices(apply_permutation(b, spec, random_perms(spec.perm_sizes(a), 6)), spec)
    for k in mats_b:
        s, sp = torch.linalg.svdvals(mats_b[k]), torch.linalg.svdvals(mats_pb[k])
        assert float((s - sp).abs().max()) <= 1e-5 * float(s[0]), k
    res = match(a, b, spec)
    df = singular_diagnostics(a, b, spec, res.perms, k=4)
    assert len(df) == len(mats_b) and (df["sv_perm_max_rel"] < 1e-5).all()
    assert (df["spectrum_rel_diff"] < 1e-6).all()  # B is a permuted copy of A
    assert np.allclose(df["l2_after"], 0.0) and np.allclose(df["align_top_after"], 1.0)
    assert np.allclose(df["l2_reduction"], 1.0)
    assert df.loc[df["layer"] == "convs.1.conv.weight", "align_top_before"].abs().item() < 0.9
    tot = l2_totals(df)
    assert tot["l2_before"] > 0 and tot["l2_after"] == pytest.approx(0.0, abs=1e-9)

    independent = singular_diagnostics(a, make_g(41).state_dict(), spec, res.perms, k=4)
    assert (independent["spectrum_rel_diff"] > 0).all()
    png = tmp_path / "svd.png"
    plot_singular_diagnostics(independent, png, max_layers=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- R(γ) (Ito et al.) -------------------------------------------------------------------------
GAMMAS = (0.0, 0.1, 0.3, 0.5, 0.9)


def test_r_gamma_is_one_after_matching_a_permuted_copy():
    a = make_g(40).state_dict()
    spec = generator_spec(a)
    b = apply_permutation(a, spec, random_perms(spec.perm_sizes(a), 3))
    res = match(a, b, spec, seed=0)
    after = r_gamma(a, apply_permutation(b, spec, res.perms), spec, GAMMAS)
    assert set(after["gamma"]) == set(GAMMAS) and (after["layer"] == "ALL").sum() == len(GAMMAS)
    assert np.allclose(after["r"], 1.0, atol=1e-9), after[~np.isclose(after["r"], 1.0)]
    before = r_gamma(a, b, spec, GAMMAS)
    assert (before.loc[before["layer"] == "ALL", "r"] < 0.9).all()


def _with_spectrum(s: np.ndarray, shape: tuple[int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], len(s), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.as_tensor(s, dtype=torch.float64)) @ v.T


def test_r_gamma_known_spectra_independent_below_one_and_swap_robust():
    s = np.array([10.0, 6.0, 6.0 - 1e-9, 3.5, 1.2, 0.6, 0.2, 0.15])  # σ_2 ≈ σ_3: their order is arbitrary
    wa = _with_spectrum(s, (12, 20), 0)
    svd = lambda w: torch.linalg.svd(w, full_matrices=False)  # noqa: E731
    # independent singular vectors, same spectrum: R well below 1 at every γ
    wb = _with_spectrum(s, (12, 20), 1)
    for g in GAMMAS:
        total, n, n_b = alignment_sum(svd(wa), svd(wb), g)
        assert n == n_b == int((s >= g * s[0]).sum())  # rank 8: the 4 zero singular values never count
        assert abs(total / n) < 0.6
    # a permutation P W Qᵀ plus a rotation inside the σ_2 = σ_3 pair: per-index alignment of
    # pairs 2, 3 drops, R(γ) stays 1 (it sums over all pairs)
    p, q = torch.randperm(12, generator=torch.Generator().manual_seed(2)), torch.randperm(20, generator=torch.Generator().manual_seed(3))
    wp = wa[p][:, q]
    ua, sa, vha = svd(wa)
    c, sn = math.cos(0.7), math.sin(0.7)
    rot = torch.eye(len(sa), dtype=torch.float64)
    rot[1:3, 1:3] = torch.tensor([[c, -sn], [sn, c]], dtype=torch.float64)
    w_rot = (ua @ rot) @ torch.diag(sa) @ (vha.T @ rot).T  # same matrix up to 1e-9, other SVD basis
    svd_rot = (ua @ rot, sa, (vha.T @ rot).T)
    assert float((w_rot - wa).abs().max()) < 1e-8
    per_index = ((ua * svd_rot[0]).sum(0) * (vha * svd_rot[2]).sum(1))[1:3]
    assert (per_index < 0.7).all()
    for g in GAMMAS:
        total, n, _ = alignment_sum((ua, sa, vha), svd_rot, g)
        assert total / n == pytest.approx(1.0, abs=1e-9)
        # unmatched permuted copy: below 1
        total_p, n_p, _ = alignment_sum(svd(wa), svd(wp), g)
        assert total_p / n_p < 0.9


def _rotation(theta: float) -> torch.Tensor:
    """3×3 rotation by θ in the plane of the first two axes."""
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize("normalise", ["paper", "min"])
def test_r_gamma_hand_computed_on_known_svds(normalise):
    """W_A = diag(3, 2, 1) (U = V = I), W_B = R(θ) diag(3, 1.5, 0.5) R(φ)ᵀ. The pair terms are
    (u_i^A·u_j^B)(v_i^A·v_j^B) = R(θ)[i, j] R(φ)[i, j], so by hand:
    γ = 0.5: I = J = {1, 2}: Σ = 2 cos(θ-φ), n = 2 either way → R = cos(θ-φ);
    γ = 0.6: I = {1, 2} (2 >= 1.8), J = {1} (1.5 < 1.8): Σ = cos θ cos φ + sin θ sin φ = cos(θ-φ),
    n = |I| = 2 (Ito et al.) → cos(θ-φ)/2, or min(|I|, |J|) = 1 → cos(θ-φ);
    γ = 0.1: all three (σ >= 0.3): Σ = 2 cos(θ-φ) + 1, n = 3."""
    from lfsgan.permute import r_normaliser

    theta, phi = 0.4, 1.1
    wa = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    wb = _rotation(theta) @ torch.diag(torch.tensor([3.0, 1.5, 0.5], dtype=torch.float64)) @ _rotation(phi).T
    svd = lambda w: torch.linalg.svd(w, full_matrices=False)  # noqa: E731
    cos = math.cos(theta - phi)
    expected = {0.5: (2 * cos, 2, 2), 0.6: (cos, 2, 1), 0.1: (2 * cos + 1, 3, 3)}
    for g, (total, n_a, n_b) in expected.items():
        got = alignment_sum(svd(wa), svd(wb), g)
        assert got[0] == pytest.approx(total, abs=1e-12) and got[1:] == (n_a, n_b)
    r06 = expected[0.6][0] / r_normaliser(2, 1, normalise)
    assert r06 == pytest.approx(cos / 2 if normalise == "paper" else cos)
    # the same through r_gamma on a one-layer "network" (a spec of one 3×3 linear weight)
    from lfsgan.permute import PermutationSpec, TensorSpec

    spec = PermutationSpec({"fc.weight": TensorSpec(("P", None))}, name="hand")
    table = r_gamma({"fc.weight": wa}, {"fc.weight": wb}, spec, [0.5, 0.6], normalise=normalise).set_index(["layer", "gamma"])
    assert table.loc[("ALL", 0.5), "r"] == pytest.approx(cos, abs=1e-12)
    assert table.loc[("ALL", 0.6), "r"] == pytest.approx(r06, abs=1e-12)


# --- STE (Git Re-Basin §3.3) -------------------------------------------------------------------
def _planted_pair():
    a = make_g(50).state_dict()
    spec = generator_spec(a)
    b = apply_permutation(a, spec, random_perms(spec.perm_sizes(a), 4))
    keys = [k for k, ts in spec.tensors.items() if ts.in_cost and ts.permuted]

    def loss(state, z):  # effective L2 of the merged model to A: its minimiser is the planted π⁻¹
        return sum(spec[k].gain ** 2 * (state[k] - a[k]).square().sum() for k in keys)

    return a, b, spec, loss


def test_ste_step0_from_the_anchor_is_weight_matching():
    """θ̃ starts at θ_A (the references), so the first projection is WM of B onto A: on a planted
    permuted copy it is the planted inverse (merged loss 0); on an independent pair, exactly
    :func:`match`'s answer."""
    a, b, spec, loss = _planted_pair()
    res = ste_search([a, b], spec, loss, latent_dim=SMALL_G["style_dim"], steps=1, seed=0)
    assert all(torch.equal(p, torch.arange(len(p))) for p in res.perms[0].values())  # the anchor
    assert res.selected_step == 0 and res.start_loss == 0.0 and res.criterion_loss == 0.0
    assert _max_abs_diff(apply_permutation(b, spec, res.perms[1]), a) == 0.0
    c = make_g(51).state_dict()
    res = ste_search([a, c], spec, loss, latent_dim=SMALL_G["style_dim"], steps=1, seed=3, wm_max_iter=50)
    wm = match(a, c, spec, seed=3, max_iter=50).perms
    assert res.selected_step == 0 and res.changes[0] > 0
    assert all(torch.equal(res.perms[1][p], wm[p]) for p in wm)


def test_ste_defaults_are_the_references():
    """Defaults = Git Re-Basin's STE (src/mnist_mlp_ste2.py: start at θ_A, SGD lr 1e-2 momentum 0.9,
    best minibatch loss); STE-MM's Adam lr 1e-3 / last is one option set away; the schema agrees."""
    import inspect

    from lfsgan.config import load_config
    from lfsgan.permute.ste import GIT_RE_BASIN, STE_MM

    assert GIT_RE_BASIN == {"init": "anchor", "optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "lr_scale": "effective", "select": "best_batch"}
    assert STE_MM == {"init": "anchor", "optimizer": "adam", "lr": 1e-3, "lr_scale": "effective", "select": "last"}
    defaults = {k: v.default for k, v in inspect.signature(ste_search).parameters.items()}
    assert {k: defaults[k] for k in GIT_RE_BASIN} == GIT_RE_BASIN
    schema = load_config("config/test.yaml")["permutation"]["ste"]  # test.yaml sets none of these keys
    assert {k: schema[k] for k in GIT_RE_BASIN} == GIT_RE_BASIN


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ste_steps_act_on_effective_weights(optimizer):
    """One step on a stored tensor with :func:`tensor_lr` moves the effective tensor ``gain · w``
    as the same optimiser at ``lr`` moves a plain tensor (the references' layers)."""
    from lfsgan.permute.ste import tensor_lr

    gain, lr = 0.01, 1e-2
    g = torch.Generator().manual_seed(0)
    w_eff0, target = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)

    def run(w0: torch.Tensor, scale: float, step_lr: float) -> torch.Tensor:
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.SGD([w], lr=step_lr, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam([w], lr=step_lr, eps=1e-30)
        for _ in range(3):
            opt.zero_grad()
            ((scale * w - target) ** 3).sum().backward()
            opt.step()
        return scale * w.detach()

    plain = run(w_eff0, 1.0, lr)
    stored = run(w_eff0 / gain, gain, tensor_lr(lr, gain, w_eff0 / gain, optimizer, "effective"))
    assert torch.allclose(stored, plain, rtol=1e-9, atol=1e-12) and not torch.allclose(plain, w_eff0)


def test_ste_earlier_settings_recover_a_planted_permutation_from_identity():
    """The earlier search (identity start, Adam at lr × RMS, best on fixed latents) stays reachable."""
    a, b, spec, loss = _planted_pair()
    res = ste_search([a, b], spec, loss, latent_dim=SMALL_G["style_dim"], steps=30, init="identity", optimizer="adam",
                     lr=0.1, lr_scale="rms", select="best_eval", eval_every=5, seed=0)
    assert res.start_loss > 0 and res.eval_history[0] == (0, res.start_loss)  # identity start = naive average
    assert _max_abs_diff(apply_permutation(b, spec, res.perms[1]), a) == 0.0 and res.selected_loss == 0.0
    assert res.timings["projection"] > 0 and len(res.train_history) == 30 and len(res.changes) == 31


@pytest.mark.parametrize("settings", [{}, {"optimizer": "adam", "lr": 1e-3, "select": "last"}])
def test_ste_resumes_to_the_same_permutations(tmp_path, settings):
    a, b, spec, loss = _planted_pair()
    c = make_g(52).state_dict()  # not a permuted copy: the search has somewhere to go
    kw = dict(latent_dim=SMALL_G["style_dim"], steps=20, eval_every=5, seed=1, checkpoint_every=5, init="identity", **settings)
    whole = ste_search([a, c], spec, loss, **kw)
    ckpt = tmp_path / "ste_checkpoint.pt"
    ste_search([a, c], spec, loss, checkpoint=ckpt, stop_after=10, **kw)
    resumed = ste_search([a, c], spec, loss, checkpoint=ckpt, **kw)
    assert resumed.eval_history == whole.eval_history and resumed.train_history == whole.train_history
    assert resumed.changes == whole.changes and resumed.selected_step == whole.selected_step
    assert all(torch.equal(resumed.perms[1][p], whole.perms[1][p]) for p in whole.perms[1])
    with pytest.raises(ValueError, match="different search"):
        ste_search([a, c], spec, loss, checkpoint=ckpt, **{**kw, "lr": 0.5})


# --- workflow: merge and STE rules --------------------------------------------------------------
def _set_permutation(project, **changes) -> None:
    import yaml

    config = yaml.safe_load(project.read_config())
    config["permutation"].update(changes)
    project.write_config(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.integration
def test_dag_plans_merge_and_ste_only_when_asked(fresh_project):
    rules = lambda: {j.rule: j for j in fresh_project.dry_run()}  # noqa: E731
    planned = rules()
    assert planned["merge_sources"].wildcards == {"seeds": "0_1"} and planned["ste_search"].wildcards == {"seeds": "0_1"}
    _set_permutation(fresh_project, ste={"enabled": False})
    planned = rules()
    assert "merge_sources" in planned and "ste_search" not in planned
    _set_permutation(fresh_project, merge=False, ste={"enabled": True})
    planned = rules()
    assert "merge_sources" not in planned and "ste_search" not in planned and "match_permutation" in planned


@pytest.mark.integration
def test_ste_merge_on_trained_sources_starts_at_weight_matching(completed_run):
    """The rule runs the references' search: from the anchor (step 0 = weight matching, so the
    first projection moves units and the merge is about as close as WM's), returning the
    permutation of the lowest minibatch loss. Its held-out loss need not beat the naive average:
    on the test config's barely trained sources weight matching's own merge does not."""
    import json

    merge = json.loads((completed_run.root / "results/merge/0_1/merge.json").read_text())
    ste = json.loads((completed_run.root / "results/ste/0_1/ste.json").read_text())
    assert ste["steps_run"] == ste["steps"] and ste["init"] == "anchor" and len(ste["changes"]) == ste["steps"] + 1
    assert ste["changes"][0] > 0 and ste["select"] == "best_batch"
    best = min(range(ste["steps"]), key=ste["train_history"].__getitem__)
    assert ste["selected_step"] == best and ste["criterion_loss"] == ste["train_history"][best]
    assert not (completed_run.root / "results/ste/0_1/ste_checkpoint.pt").exists()
    for m in ("naive", "wm", "ste"):
        assert all(f"{m}_r_gamma_{g:g}" in merge for g in merge["gammas"])
    assert merge["wm_l2"] < merge["naive_l2"] and merge["ste_l2"] < merge["naive_l2"]
    report = (completed_run.root / "results/report/summary.md").read_text()
    assert "**Claim 3" in report and "inconclusive" in report  # the test config merges 2 sources only


def test_permutation_seeds_pairs_and_merge_sets():
    import yaml

    from lfsgan.config import ConfigError, merge_sets, permutation_pairs, permutation_seeds, validate_config

    raw = yaml.safe_load(open("config/test.yaml"))
    raw["source"]["seeds"] = [0, 1, 2, 3]
    raw["permutation"]["seeds"] = [2, 0, 1]
    cfg = validate_config(raw)
    assert permutation_seeds(cfg) == [2, 0, 1]  # the first is the STE anchor
    assert permutation_pairs(cfg) == [(2, 0), (2, 1), (0, 1)]  # every pair
    assert merge_sets(cfg) == [(2, 0, 1), (2, 0), (2, 1), (0, 1)]  # N models, then every pair
    cfg["permutation"]["merge"] = False
    assert merge_sets(cfg) == [] and len(permutation_pairs(cfg)) == 3
    raw["permutation"]["seeds"] = [0, 9]
    with pytest.raises(ConfigError, match=r"permutation\.seeds\.1.*not in source\.seeds"):
        validate_config(raw)


def _merge_json(path, seeds, barriers, gammas=(0.0, 0.3)):
    import json

    rec = {"sources": [f"results/source/seed{s}/final.pt" for s in seeds], "n_models": len(seeds), "gammas": list(gammas),
           "endpoints_fid_mean": 10.0}
    for m, b in barriers.items():
        rec.update({f"{m}_fid": 10.0 + b, f"{m}_merge_barrier_fid": b, f"{m}_merge_barrier_relative": b / 10, f"{m}_loss": 1.0,
                    f"{m}_l2": 5.0, f"{m}_l2_reduction": 0.1, **{f"{m}_r_gamma_{g:g}": 0.5 for g in gammas}})
    path.write_text(json.dumps(rec))
    return path


@pytest.mark.parametrize(
    "many_gaps, verdict",
    [((3.0, 1.0), "supported"), ((-3.0, 0.0), "contradicted"), ((3.0, -1.0), "inconclusive"), ((), "inconclusive"),
     ((3.0,), "inconclusive (n = 1)")],
)
def test_claim3_verdict_from_merge_barriers(tmp_path, many_gaps, verdict):
    from lfsgan.report.merging import claim3_verdict, merge_comparison

    paths = [_merge_json(tmp_path / "m01.json", (0, 1), {"naive": 9.0, "wm": 2.0, "ste": 2.5})]
    for k, gap in enumerate(many_gaps):  # gap = barrier(STE) - barrier(WM) of a 3-model merge
        paths.append(_merge_json(tmp_path / f"m{k}.json", (0, 1, 2 + k), {"naive": 20.0, "wm": 5.0, "ste": 5.0 + gap}))
    table = merge_comparison(paths)
    assert len(table) == 3 * len(paths) and {"R(0)", "R(0.3)", "merge_barrier_fid", "l2_reduction"} <= set(table.columns)
    out = claim3_verdict(table)
    assert out["verdict"] == verdict and out["n_2"] == 1 and out["n_many"] == len(many_gaps)
    if verdict == "supported":
        assert out["mean_gap_many"] == pytest.approx(2.0) and "larger" in out["reason"]
    no_ste = claim3_verdict(table[table["method"] != "ste"])
    assert no_ste["verdict"] == "inconclusive" and "STE" in no_ste["reason"]
