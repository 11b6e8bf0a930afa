"""Diagonal empirical Fisher information of the generator at the source (Li et al. 2020, EWC few-shot GAN).

``docs/methods.md`` §2.1/§2.4: with the pretrained source ``G_S``, ``D_S``::

    F_i = E_z [ (∂/∂θ_i log σ(D_S(G_S(z))))² ] = E_z [ (∂/∂θ_i softplus(−D_S(G_S(z))))² ]

estimated by Monte Carlo over ``n_samples`` latents, once, before adaptation. The EWC penalty
(:mod:`lfsgan.methods.ewc`) is ``λ Σ_i F_i (θ_i − θ_S,i)²``. :func:`fisher_summary` and
:func:`plot_fisher` give the per-layer view of the EWC paper's Fig. 2 (higher-resolution synthesis
layers carry larger Fisher values).
"""

from __future__ import annotations

import os
import re

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lfsgan.io import key_mismatch


def fisher_diagonal(
    G: nn.Module,
    D: nn.Module,
    n_samples: int,
    batch_size: int = 1,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: F}`` for every parameter of ``G`` (same names and shapes as ``G.named_parameters()``).

    Latents ``z ~ N(0, I)`` come from a ``torch.Generator`` seeded with ``seed``; the noise inputs
    are drawn from the global RNG inside a forked, seeded RNG scope, so the result depends only on
    ``seed`` and the global RNG is left untouched.

    ``batch_size = 1`` gives true per-sample squared gradients (an unbiased estimate of the diagonal
    Fisher). With ``batch_size = b > 1`` each batch contributes ``(Σ_k g_k)² / b``: its expectation is
    ``E[g²] + (b−1)·E[g]²``, i.e. biased *upwards* by the squared mean gradient (much cheaper, and
    close when per-sample gradients vary much more than their mean). ``n_samples`` is rounded up to
    whole batches. ``progress=None`` shows a bar only on a terminal.
    """
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"fisher_diagonal: n_samples and batch_size must be >= 1, got {n_samples}, {batch_size}")
    device = next(G.parameters()).device
    names, params = zip(*G.named_parameters())
    was_training = (G.training, D.training)
    saved_flags = [p.requires_grad for p in params]
    G.eval()
    D.eval()
    for p in params:
        p.requires_grad_(True)
    fisher = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    n_batches = -(-n_samples // batch_size)
    z_gen = torch.Generator().manual_seed(seed)
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _ in tqdm(range(n_batches), desc="fisher", disable=None if progress is None else not progress):
                z = torch.randn(batch_size, G.style_dim, generator=z_gen).to(device)
                loss = F.softplus(-D(G(z))).sum()  # Σ_k −log σ(D(G(z_k)))
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for f, g in zip(fisher, grads):
                    if g is not None:
                        f.add_(g.double().pow(2), alpha=1.0 / batch_size)
    finally:
        for p, flag in zip(params, saved_flags):
            p.requires_grad_(flag)
        G.train(was_training[0])
        D.train(was_training[1])
    return {n: (f / n_batches).float() for n, f in zip(names, fisher)}


_STYLE = re.compile(r"^style\.(\d+)\.")
_CONVS = re.compile(r"^convs\.(\d+)\.")
_TO_RGBS = re.compile(r"^to_rgbs\.(\d+)\.")


def layer_of(name: str) -> tuple[str, str, int, tuple]:
    """``(layer, stage, resolution, sort key)`` of a rosinality generator parameter name.

    Layers: ``style.k`` (mapping), ``input``, ``conv1``, ``to_rgb1``, ``convs.i`` (resolution
    ``2^(3 + i//2)``), ``to_rgbs.i`` (``2^(3 + i)``). Order: mapping by index, then synthesis by
    resolution (const, convs, ToRGB within one resolution). Unknown names sort last.
    """
    if m := _STYLE.match(name):
        k = int(m.group(1))
        return f"style.{k}", "mapping", 0, (0, k, 0, 0)
    if name.startswith("input."):
        return "input", "synthesis", 4, (1, 4, 0, 0)
    if name.startswith("conv1."):
        return "conv1", "synthesis", 4, (1, 4, 1, 0)
    if name.startswith("to_rgb1."):
        return "to_rgb1", "synthesis", 4, (1, 4, 2, 0)
    if m := _CONVS.match(name):
        i = int(m.group(1))
        res = 2 ** (3 + i // 2)
        return f"convs.{i}", "synthesis", res, (1, res, 1, i)
    if m := _TO_RGBS.match(name):
        i = int(m.group(1))
        res = 2 ** (3 + i)
        return f"to_rgbs.{i}", "synthesis", res, (1, res, 2, i)
    layer = name.rsplit(".", 1)[0]
    return layer, "other", 0, (2, 0, 0, 0)


def fisher_summary(fisher: dict[str, torch.Tensor], G: nn.Module) -> pd.DataFrame:
    """One row per generator layer, mapping first, then synthesis by resolution.

    Columns: ``layer``, ``stage``, ``resolution`` (0 for mapping), ``n_params``, ``fisher_mean``
    (mean over every parameter of the layer), ``fisher_mean_weight`` (over its main weight only:
    ``weight`` of a mapping layer, ``conv.weight`` of a synthesis layer, the constant for ``input``),
    ``fisher_max``.
    """
    expected = dict(G.named_parameters())
    if mismatch := key_mismatch(expected, fisher):
        raise KeyError(
            f"fisher_summary: Fisher keys do not match the generator's parameters ({mismatch}); "
            "was it computed for another model config?"
        )
    rows: dict[str, dict] = {}
    for name in expected:
        layer, stage, res, key = layer_of(name)
        f = fisher[name].detach().double()
        row = rows.setdefault(layer, dict(layer=layer, stage=stage, resolution=res, key=key,
                                          n_params=0, _sum=0.0, _wsum=0.0, _wn=0, fisher_max=0.0))
        row["n_params"] += f.numel()
        row["_sum"] += float(f.sum())
        row["fisher_max"] = max(row["fisher_max"], float(f.max()))
        if name.endswith(("conv.weight", "input.input")) or (stage == "mapping" and name.endswith(".weight")):
            row["_wsum"] += float(f.sum())
            row["_wn"] += f.numel()
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: r["key"]))
    df["fisher_mean"] = df["_sum"] / df["n_params"]
    df["fisher_mean_weight"] = df["_wsum"] / df["_wn"].where(df["_wn"] > 0)
    return df[["layer", "stage", "resolution", "n_params", "fisher_mean", "fisher_mean_weight", "fisher_max"]]


def plot_fisher(df: pd.DataFrame, path: str | os.PathLike, column: str = "fisher_mean") -> None:
    """Bar plot (log scale) of ``df[column]`` per layer, mapping → synthesis, written atomically as PNG."""
    from matplotlib.figure import Figure  # object-oriented: no pyplot global state, no GUI backend

    from lfsgan.io import atomic_path

    if column not in df:
        raise KeyError(f"plot_fisher: column '{column}' not in the summary (has {list(df.columns)})")
    colors = {"mapping": "tab:gray", "synthesis": "tab:blue", "other": "tab:orange"}
    fig = Figure(figsize=(max(6.0, 0.28 * len(df)), 3.6))
    ax = fig.subplots()
    ax.bar(range(len(df)), df[column].clip(lower=1e-30), color=[colors.get(s, "tab:orange") for s in df["stage"]])
    ax.set_yscale("log")
    labels = [f"{l} ({r})" if r else l for l, r in zip(df["layer"], df["resolution"])]
    ax.set_xticks(range(len(df)), labels, rotation=90, fontsize=7)
    ax.set_ylabel(f"{column.replace('_', ' ')} (log)")
    ax.set_title("Diagonal Fisher of G at the source, per layer (mapping → synthesis by resolution)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
