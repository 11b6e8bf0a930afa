"""Diagonal empirical Fisher of G at the source: shapes, sign, determinism, per-sample correctness,
the per-layer summary and its plot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lfsgan.fisher import fisher_diagonal, fisher_summary, plot_fisher
from lfsgan.models import Discriminator, Generator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return Generator(16, style_dim=32, n_mlp=2, channel_max=32), Discriminator(16, channel_max=32)


def test_shapes_sign_and_determinism(models):
    G, D = models
    rng_before = torch.random.get_rng_state()
    a = fisher_diagonal(G, D, n_samples=4, seed=3, progress=False)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    params = dict(G.named_parameters())
    assert list(a) == list(params)
    for k, f in a.items():
        assert f.shape == params[k].shape and f.dtype == torch.float32
        assert torch.isfinite(f).all() and (f >= 0).all()
    assert sum(f.sum() for f in a.values()) > 0
    b = fisher_diagonal(G, D, n_samples=4, seed=3, progress=False)
    c = fisher_diagonal(G, D, n_samples=4, seed=4, progress=False)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_per_sample_definition_and_batch_estimator(models):
    """batch 1: mean of per-sample squared gradients of softplus(-D(G(z))); batch b: (Σ_k g_k)² / b."""
    G, D = models
    G.requires_grad_(False)  # frozen flags must be restored afterwards
    got1 = fisher_diagonal(G, D, n_samples=2, batch_size=1, seed=5, progress=False)
    got2 = fisher_diagonal(G, D, n_samples=2, batch_size=2, seed=5, progress=False)
    assert not any(p.requires_grad for p in G.parameters())
    G.requires_grad_(True)
    params = list(G.parameters())
    names = [k for k, _ in G.named_parameters()]
    z = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(5))

    def grads(z_batch, noise_seed):
        torch.manual_seed(noise_seed)
        return torch.autograd.grad(F.softplus(-D(G(z_batch))).sum(), params)

    # batch 1: the two per-sample gradients use consecutive noise draws of the seeded RNG
    with torch.random.fork_rng():
        torch.manual_seed(5)
        g_a = torch.autograd.grad(F.softplus(-D(G(z[:1]))).sum(), params)
        g_b = torch.autograd.grad(F.softplus(-D(G(z[1:]))).sum(), params)
    with torch.random.fork_rng():
        g_ab = grads(z, 5)
    for k, ga, gb, gab in zip(names, g_a, g_b, g_ab):
        torch.testing.assert_close(got1[k], ((ga**2 + gb**2) / 2).float(), rtol=1e-4, atol=1e-12)
        torch.testing.assert_close(got2[k], (gab**2 / 2).float(), rtol=1e-4, atol=1e-12)


def test_summary_order_and_plot(models, tmp_path):
    G, D = models
    fisher = fisher_diagonal(G, D, n_samples=2, seed=0, progress=False)
    df = fisher_summary(fisher, G)
    assert df["n_params"].sum() == sum(p.numel() for p in G.parameters())
    assert list(df["layer"][:3]) == ["style.1", "style.2", "input"]  # mapping first
    synth = df[df["stage"] == "synthesis"]
    assert synth["resolution"].is_monotonic_increasing and list(synth["resolution"].unique()) == [4, 8, 16]
    assert (df["fisher_mean"] >= 0).all() and df["fisher_mean_weight"].notna().all()
    out = tmp_path / "fisher.png"
    plot_fisher(df, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError, match="do not match"):
        fisher_summary({k: v for k, v in list(fisher.items())[1:]}, G)
