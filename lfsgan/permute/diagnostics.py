"""Singular-value diagnostics of weight matching (Ito, Yamada & Kumagai 2024/25, §4).

Each weight tensor is read as an effective matrix ``W [out, in·k·k]`` (equalised-lr gain applied;
``ModulatedConv2d``'s leading singleton axis dropped). Permutations act as ``π(W) = P W Qᵀ``
(``Q`` permutes ``in`` blockwise over the kernel taps), hence ``π(W) = (P U) Σ (Q V)ᵀ``: the
singular values are unchanged and only the singular vectors move. With ``W_A = Σ_i σ_i^A u_i^A
v_i^Aᵀ`` the matching objective is (their Thm. 4.1)

    <W_A, π(W_B)>_F = Σ_{i,j} σ_i^A σ_j^B (u_i^A · P u_j^B)(v_i^A · Q v_j^B),

so maximising it mainly aligns singular vectors with large σ. Per layer we report

* the spectra of A, B and π(B) (``sv_perm_max_rel``: max |σ(π(B)) - σ(B)| / σ_1(B), ~1e-15);
* ``spectrum_rel_diff = ||σ^A - σ^B||_2 / ||σ^A||_2``;
* ``l2_before = ||W_A - W_B||_F``, ``l2_after = ||W_A - π(W_B)||_F``, ``l2_reduction = 1 - after/before``;
* the alignment ``a_i = (u_i^A · u_i^B)(v_i^A · v_i^B)`` of the i-th singular pair, **signed**
  (the product is invariant to the joint sign flip ``(u_i, v_i) → (-u_i, -v_i)`` of an SVD, so
  the sign is meaningful: -1 would be an anti-aligned pair), averaged over the top ``k`` pairs
  (``align_top_*``) and over the tail ``i >= tail_from`` (``align_tail_*``), before and after
  matching. This per-index score misreads singular values that are nearly equal and swap
  order between A and π(B); :func:`r_gamma` is the version that sums over all pairs.

**R(γ)** (Ito, Yamada & Kumagai, arXiv 2402.04051, §4, the quantity of their Fig. 2;
``docs/permutation.md`` §5.1 writes it out with what the accessible text fixes). With
``I_ℓ = {i : σ_i^A >= γ σ_1^A}`` and ``J_ℓ = {j : σ_j^B >= γ σ_1^B}`` (γ relative to the
largest singular value; γ = 0 keeps all singular values above the numerical rank threshold),

    R(γ) = Σ_ℓ Σ_{i∈I_ℓ, j∈J_ℓ} (u_i^A · u_j^{π(B)})(v_i^A · v_j^{π(B)}) / Σ_ℓ n_ℓ(γ),
    n_ℓ(γ) = |I_ℓ|   (normalise="paper": the number of A's singular values past the threshold)

signed, summed over *all pairs* (i, j) and without σ weights (the permutation is inside
``u^{π(B)} = P u^B``, ``v^{π(B)} = Q v^B``). Per layer, ``R_ℓ = Σ_{I_ℓ×J_ℓ} / n_ℓ``.
``normalise="min"`` (the earlier default) divides by ``min(|I_ℓ|, |J_ℓ|)`` instead. The numerator
is ``<U_Iᴬᵀ U_J, V_Iᴬᵀ V_J>_F`` ≤ ``||U_Iᴬᵀ U_J||_F ||V_Iᴬᵀ V_J||_F`` ≤ ``min(|I|, |J|)``
(Cauchy–Schwarz; both factors have orthonormal rows or columns), so ``|R| <= 1`` under either
normalisation, with 1 when π(B) = A up to rotations inside equal-σ subspaces — a swap of
near-equal singular values costs nothing, unlike the per-index score. The two differ only where
the spectra give ``|J_ℓ| < |I_ℓ|``.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lfsgan.io import atomic_path
from lfsgan.permute.apply import apply_permutation
from lfsgan.permute.spec import PermutationSpec


def layer_matrices(state: Mapping[str, torch.Tensor], spec: PermutationSpec) -> dict[str, torch.Tensor]:
    """Effective float64 weight matrices ``[out, in·k·k]`` of every in-cost ``*weight`` tensor (>= 2-D)."""
    out = {}
    for key, ts in spec.tensors.items():
        w = state[key]
        if not ts.in_cost or not key.endswith("weight") or w.ndim < 2:
            continue
        w = w.detach().to("cpu", torch.float64) * ts.gain
        if w.ndim >= 3 and w.shape[0] == 1:  # ModulatedConv2d [1, out, in, k, k]
            w = w[0]
        out[key] = w.reshape(w.shape[0], -1)
    return out


def _alignment(svd_a, svd_b) -> np.ndarray:
    """``a_i = (u_i^A · u_i^B)(v_i^A · v_i^B)`` for every i, ``[n_sv]``."""
    (ua, _, vha), (ub, _, vhb) = svd_a, svd_b
    return ((ua * ub).sum(0) * (vha * vhb).sum(1)).numpy()


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def singular_diagnostics(
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    perms: Mapping[str, torch.Tensor],
    *,
    k: int = 8,
    tail_from: int | None = None,
) -> pd.DataFrame:
    """One row per weight matrix (see the module docstring); ``tail_from`` defaults to
    ``max(k, n_sv // 2)`` per layer. Spectra and per-index alignments are kept as arrays in the
    columns ``sv_a``, ``sv_b``, ``align_before``, ``align_after`` for plotting."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mats_a = layer_matrices(sd_a, spec)
    mats_b = layer_matrices(sd_b, spec)
    mats_p = layer_matrices(apply_permutation(sd_b, spec, perms), spec)
    rows = []
    for key, wa in mats_a.items():
        wb, wp = mats_b[key], mats_p[key]
        svd_a, svd_b, svd_p = (torch.linalg.svd(w, full_matrices=False) for w in (wa, wb, wp))
        sa, sb, sp = svd_a[1].numpy(), svd_b[1].numpy(), svd_p[1].numpy()
        n = sa.size
        top = min(k, n)
        tail = max(k, n // 2) if tail_from is None else tail_from
        al_before, al_after = _alignment(svd_a, svd_b), _alignment(svd_a, svd_p)
        l2_before = float(torch.linalg.norm(wa - wb))
        l2_after = float(torch.linalg.norm(wa - wp))
        rows.append(
            {
                "layer": key,
                "out": wa.shape[0],
                "in": wa.shape[1],
                "n_sv": n,
                "sigma1_a": float(sa[0]),
                "sigma1_b": float(sb[0]),
                "spectrum_rel_diff": float(np.linalg.norm(sa - sb) / max(np.linalg.norm(sa), 1e-300)),
                "sv_perm_max_rel": float(np.abs(sp - sb).max() / max(sb[0], 1e-300)),
                "l2_before": l2_before,
                "l2_after": l2_after,
                "l2_reduction": 1.0 - l2_after / l2_before if l2_before > 0 else float("nan"),
                "align_top_before": _mean(al_before[:top]),
                "align_top_after": _mean(al_after[:top]),
                "align_tail_before": _mean(al_before[tail:]),
                "align_tail_after": _mean(al_after[tail:]),
                "top_k": top,
                "tail_from": tail,
                "sv_a": sa,
                "sv_b": sb,
                "align_before": al_before,
                "align_after": al_after,
            }
        )
    return pd.DataFrame(rows)


def _above(s: torch.Tensor, gamma: float, dim: int) -> int:
    """Number of singular values ``>= γ σ_1`` and above the numerical rank threshold
    ``dim · eps · σ_1`` (the singular vectors of zero singular values are arbitrary)."""
    if not s.numel() or s[0] <= 0:
        return 0
    floor = max(gamma, dim * torch.finfo(s.dtype).eps)
    return int((s >= floor * s[0]).sum())


#: how R(γ) is normalised (module docstring): Ito et al.'s count of A's singular values, or the
#: smaller of the two counts
R_NORMALISATIONS = ("paper", "min")


def alignment_sum(svd_a, svd_b, gamma: float) -> tuple[float, int, int]:
    """``(Σ_{i∈I, j∈J} (u_i^A·u_j^B)(v_i^A·v_j^B), |I|, |J|)`` for one layer and γ, from the
    ``torch.linalg.svd(W, full_matrices=False)`` results of A and (aligned) B."""
    (ua, sa, vha), (ub, sb, vhb) = svd_a, svd_b
    i, j = (_above(s, gamma, max(u.shape[0], vh.shape[1])) for s, u, vh in ((sa, ua, vha), (sb, ub, vhb)))
    gu = ua[:, :i].T @ ub[:, :j]  # [|I|, |J|]  u_i^A · u_j^B
    gv = vha[:i] @ vhb[:j].T  # [|I|, |J|]  v_i^A · v_j^B
    return float((gu * gv).sum()), i, j


def r_normaliser(n_a: int, n_b: int, normalise: str = "paper") -> int:
    """``n_ℓ`` of R(γ): ``|I_ℓ|`` (``"paper"``) or ``min(|I_ℓ|, |J_ℓ|)`` (``"min"``)."""
    if normalise not in R_NORMALISATIONS:
        raise ValueError(f"R(γ) normalise must be one of {list(R_NORMALISATIONS)}, got {normalise!r}")
    return n_a if normalise == "paper" else min(n_a, n_b)


def r_gamma(
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    gammas: Sequence[float],
    *,
    normalise: str = "paper",
) -> pd.DataFrame:
    """Ito et al.'s alignment R(γ) (module docstring) of A and an *already aligned* B (pass π(B);
    pass B itself for "before matching"). Long table: one row per (layer, γ) with ``r``, ``n``
    (= n_ℓ), ``n_a`` = |I|, ``n_b`` = |J| and the raw ``sum``, plus rows ``layer == "ALL"`` with the
    network value ``Σ_ℓ sum_ℓ / Σ_ℓ n_ℓ``."""
    if any(not 0.0 <= g <= 1.0 for g in gammas):
        raise ValueError(f"gammas must lie in [0, 1], got {list(gammas)}")
    r_normaliser(1, 1, normalise)  # checks the name
    mats_a, mats_b = layer_matrices(sd_a, spec), layer_matrices(sd_b, spec)
    rows = []
    for key, wa in mats_a.items():
        svd_a = torch.linalg.svd(wa, full_matrices=False)
        svd_b = torch.linalg.svd(mats_b[key], full_matrices=False)
        for g in gammas:
            total, n_a, n_b = alignment_sum(svd_a, svd_b, float(g))
            n = r_normaliser(n_a, n_b, normalise)
            rows.append({"layer": key, "gamma": float(g), "sum": total, "n": n, "n_a": n_a, "n_b": n_b,
                         "r": total / n if n else float("nan")})
    df = pd.DataFrame(rows, columns=["layer", "gamma", "sum", "n", "n_a", "n_b", "r"])
    tot = df.groupby("gamma", as_index=False)[["sum", "n", "n_a", "n_b"]].sum()
    tot["r"] = tot["sum"] / tot["n"].where(tot["n"] > 0)
    tot["layer"] = "ALL"
    return pd.concat([df, tot[df.columns]], ignore_index=True)


def l2_totals(df: pd.DataFrame) -> dict[str, float]:
    """Whole-network L2 over the diagnosed matrices: ``{"l2_before", "l2_after", "l2_reduction"}``."""
    before = float(np.sqrt((df["l2_before"] ** 2).sum()))
    after = float(np.sqrt((df["l2_after"] ** 2).sum()))
    return {"l2_before": before, "l2_after": after, "l2_reduction": 1.0 - after / before if before > 0 else float("nan")}


def plot_singular_diagnostics(
    df: pd.DataFrame, path: str | os.PathLike, layers: Sequence[str] | None = None, *, max_layers: int = 8
) -> None:
    """PNG: per layer, the spectra of A and B (log scale) and the per-index alignment ``a_i``
    before and after matching. ``layers`` defaults to the ``max_layers`` largest matrices."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    if layers is None:
        layers = list(df.sort_values("n_sv", ascending=False, kind="stable")["layer"][:max_layers])
    rows = df.set_index("layer").loc[list(layers)]
    fig = Figure(figsize=(10, 2.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (name, r), (ax_s, ax_a) in zip(rows.iterrows(), axes):
        idx = np.arange(r["n_sv"])
        ax_s.semilogy(idx, r["sv_a"], label="A")
        ax_s.semilogy(idx, r["sv_b"], "--", label="B = π(B)")
        ax_s.set_title(f"{name}: singular values", fontsize=8)
        ax_s.legend(fontsize=7)
        ax_a.plot(idx, r["align_before"], ".", ms=3, label=f"before (top-{r['top_k']} {r['align_top_before']:.2f})")
        ax_a.plot(idx, r["align_after"], ".", ms=3, label=f"after (top-{r['top_k']} {r['align_top_after']:.2f})")
        ax_a.axvline(r["top_k"] - 0.5, color="grey", lw=0.5)
        ax_a.axvline(r["tail_from"] - 0.5, color="grey", lw=0.5, ls=":")
        ax_a.set_ylim(-1.05, 1.05)
        ax_a.set_title(f"{name}: (u_i^A·u_i^B)(v_i^A·v_i^B)", fontsize=8)
        ax_a.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("singular index i")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
