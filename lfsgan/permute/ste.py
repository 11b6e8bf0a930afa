"""Straight-through-estimator (STE) permutation search (Ainsworth et al. 2023, "Git Re-Basin",
§3.3 and Alg. 2), for N >= 2 models against an anchor (Ito et al.'s multi-model setting).

For every non-anchor model i we optimise a free copy ``θ̃_i`` of the weights. Its projection onto
the permutation orbit of ``θ_i`` is weight matching of ``θ_i`` onto ``θ̃_i``::

    proj_i(θ̃_i) = π_i(θ_i),   π_i = argmax_π <θ̃_i, π(θ_i)>           (WM, warm-started)

and the merged model is the mean ``θ_M = (θ_anchor + Σ_i proj_i) / N`` (for N = 2 the midpoint
``½(θ_A + proj(θ̃_B))`` of Alg. 2). The forward pass uses the projected weights, the backward
pass the identity: ``proj_i + (θ̃_i - sg(θ̃_i))`` (``sg`` = stop-gradient), so
``∂L/∂θ̃_i = ∂L/∂θ_M / N``. ``L`` is a data-dependent loss of the merged model, ``loss_fn``.

**Defaults = the references.** Both reference codes (Git Re-Basin's ``src/mnist_mlp_ste2.py``;
Ito et al.'s ``srcs/search/mult/ste.py`` in e5-a/STE-MM) start every ``θ̃_i`` at the anchor's
weights (``init="anchor"``), so the projection of step 0 *is* weight matching's solution; they
warm-start each projection from the previous permutations and take the loss at the (N-model)
midpoint. They differ in the optimiser and in which permutation they return:

=====================  ================================  ================================
                       Git Re-Basin (the default here)   STE-MM (Ito et al.)
=====================  ================================  ================================
optimiser, lr          SGD, 1e-2, momentum 0.9           Adam, 1e-3 (betas 0.9, 0.999)
returned permutation   lowest training-minibatch loss    the last projection
                       (``select="best_batch"``)         (``select="last"``)
=====================  ================================  ================================

**Parametrisation.** The references' layers hold plain weights; ours store equalised-lr weights
(effective = ``gain · stored``, :class:`lfsgan.permute.spec.TensorSpec`). The optimiser acts as it
would on the *effective* weights: SGD's step for tensor k is ``lr / gain_k²``, Adam's
``lr / gain_k`` in stored units (SGD moves an effective weight by ``lr · ∂L/∂w_eff``, Adam by about
``lr``, as on a plain layer). θ̃ itself is kept in stored units, so ``θ̃ = θ_anchor`` holds bit for
bit and step 0 returns exactly :func:`lfsgan.permute.match`'s permutations.

**Loss used by the workflow** (:func:`generator_loss`): the merged generator's own objective,
the non-saturating loss ``E_z softplus(-D_k(G_M(z)))`` averaged over the *endpoints'*
discriminators ``D_k`` (each trained on the source data against its own G, so together they
measure how far ``G_M``'s samples are from the source data as the endpoints saw it). It is
biased — ``D_k`` was calibrated against ``G_k``, not against ``G_M`` — but it is the loss the
generators were trained with and needs no extra network; Ito et al. use the task loss the same
way. Noise is the generator's constant noise, so the loss depends on θ_M and z only.

**Other settings** (the search before issue 23, kept reachable): ``init="identity"`` sets
``θ̃_i = θ_i`` (projection = identity: the search starts from the naive average);
``lr_scale="rms"`` makes each tensor's step ``lr · rms(θ̃_k at the start)`` in stored units (meant
for Adam with lr ≈ 1); ``select="best_eval"`` keeps the permutations with the lowest loss on
``eval_latents`` fixed latents, evaluated every ``eval_every`` steps. Whatever ``select``, that
evaluation runs (``eval_history``: the convergence record), and ``changes`` counts, per
projection, the units whose assignment moved — 0 over the last steps means the search has
settled.

**Resume.** With ``checkpoint``, the full state (θ̃, optimiser moments, current and best
permutations, histories, the latent RNG, timings) is written every ``checkpoint_every`` steps
with :func:`lfsgan.io.save_checkpoint`; a rerun with the same arguments continues from it and
ends with the same permutations as an uninterrupted run (on the CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from lfsgan.io import load_checkpoint, save_checkpoint
from lfsgan.permute.apply import apply_permutation
from lfsgan.permute.matching import match
from lfsgan.permute.spec import PermutationSpec, identity_perms
from lfsgan.train.losses import g_nonsaturating_loss
from lfsgan.train.state import pack, unpack
from lfsgan.train.step import derived_seed

#: ``loss_fn(merged_state, z [B, style_dim]) -> scalar``; must be differentiable in the state
LossFn = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]
CHECKPOINT_KIND = "lfsgan-ste-search"

INITS = ("anchor", "identity")
OPTIMIZERS = ("sgd", "adam")
LR_SCALES = ("effective", "rms")
SELECTS = ("best_batch", "best_eval", "last")
#: Git Re-Basin's STE (``src/mnist_mlp_ste2.py``): the defaults of :func:`ste_search`
GIT_RE_BASIN = {"init": "anchor", "optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "lr_scale": "effective", "select": "best_batch"}
#: Ito et al.'s STE-MM (``srcs/search/mult/ste.py``, ``configs/rebasin/method/ste.yaml``)
STE_MM = {"init": "anchor", "optimizer": "adam", "lr": 1e-3, "lr_scale": "effective", "select": "last"}


@dataclass
class SteResult:
    """Outcome of :func:`ste_search`: ``perms[i]`` aligns model i to the anchor (identity for it)."""

    perms: list[dict[str, torch.Tensor]]
    #: evaluation loss (``eval_latents``) of the merged model at step 0's projection
    start_loss: float
    #: evaluation loss of the merged model at the returned permutations
    selected_loss: float
    #: the step whose projection was returned (``steps`` = the projection after the last update)
    selected_step: int
    #: ``select``'s criterion at the returned permutations (the minibatch loss for best_batch)
    criterion_loss: float
    select: str
    #: (step, evaluation loss at the permutations projected at that step)
    eval_history: list[tuple[int, float]]
    #: training minibatch loss per step (at that step's projection)
    train_history: list[float]
    #: per projection (steps + 1 of them): units, over every model and permutation, whose
    #: assignment differs from the previous projection's (entry 0: from the identity)
    changes: list[int]
    steps: int
    #: wall-clock seconds: "projection" (WM per step), "forward_backward", "eval"
    timings: dict[str, float] = field(default_factory=dict)


def generator_loss(G: nn.Module, discriminators: Sequence[nn.Module]) -> LossFn:
    """The merged generator's non-saturating loss against the endpoints' discriminators (module
    docstring): ``mean_k E_z softplus(-D_k(G_θ(z)))``, G run with its constant noise."""
    if not discriminators:
        raise ValueError("generator_loss needs at least one discriminator")
    for D in discriminators:
        D.eval().requires_grad_(False)

    def loss(state: Mapping[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        img = functional_call(G, dict(state), (z,), {"noise_mode": "const"})  # [B, 3, H, W]
        return torch.stack([g_nonsaturating_loss(D(img)) for D in discriminators]).mean()

    return loss


def _merge(anchor: Mapping[str, torch.Tensor], members: Sequence[Mapping[str, torch.Tensor]], spec: PermutationSpec) -> dict[str, torch.Tensor]:
    """``θ_M = (θ_anchor + Σ members) / N`` key by key; keys with ``interpolate=False`` and
    non-float tensors from the anchor (as :func:`lfsgan.permute.average_states`), differentiable."""
    n = 1 + len(members)
    out = {}
    for k, a in anchor.items():
        if not spec[k].interpolate or not a.is_floating_point():
            out[k] = a
        else:
            out[k] = (a + sum(m[k] for m in members)) / n
    return out


def _free_keys(spec: PermutationSpec, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys θ̃ carries: float tensors that are permuted, enter the WM cost and are interpolated."""
    return [k for k, ts in spec.tensors.items() if ts.permuted and ts.in_cost and ts.interpolate and state[k].is_floating_point()]


def tensor_lr(lr: float, gain: float, start: torch.Tensor, optimizer: str, lr_scale: str) -> float:
    """The stored-unit step size of one tensor (module docstring, *Parametrisation*): ``lr / gain²``
    (SGD) or ``lr / gain`` (Adam) with ``lr_scale="effective"``, ``lr · rms(start)`` with ``"rms"``."""
    if lr_scale == "rms":
        return lr * max(float(start.detach().square().mean().sqrt()), 1e-8)
    return lr / gain**2 if optimizer == "sgd" else lr / gain


def _check_choices(**settings: tuple[str, Sequence[str]]) -> None:
    for name, (value, allowed) in settings.items():
        if value not in allowed:
            raise ValueError(f"ste_search: {name} must be one of {list(allowed)}, got {value!r}")


def ste_search(
    states: Sequence[Mapping[str, torch.Tensor]],
    spec: PermutationSpec,
    loss_fn: LossFn,
    *,
    latent_dim: int,
    anchor: int = 0,
    steps: int = 500,
    batch: int = 8,
    init: str = GIT_RE_BASIN["init"],
    optimizer: str = GIT_RE_BASIN["optimizer"],
    lr: float = GIT_RE_BASIN["lr"],
    momentum: float = GIT_RE_BASIN["momentum"],
    lr_scale: str = GIT_RE_BASIN["lr_scale"],
    select: str = GIT_RE_BASIN["select"],
    seed: int = 0,
    eval_latents: int = 64,
    eval_every: int = 10,
    wm_max_iter: int = 100,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    stop_after: int | None = None,
    device: torch.device | str = "cpu",
) -> SteResult:
    """STE search (module docstring) of permutations of ``states[i]`` (i ≠ ``anchor``) onto the
    anchor, minimising ``loss_fn`` of the merged model; latents ``[B, latent_dim]`` from a
    generator seeded by ``seed``. ``momentum`` is SGD's (unused by Adam). ``stop_after``
    checkpoints and returns after that step (a pause)."""
    n = len(states)
    if n < 2:
        raise ValueError(f"ste_search needs at least 2 models, got {n}")
    _check_choices(init=(init, INITS), optimizer=(optimizer, OPTIMIZERS), lr_scale=(lr_scale, LR_SCALES), select=(select, SELECTS))
    if steps < 1 or batch < 1 or eval_every < 1 or checkpoint_every < 1:
        raise ValueError("ste_search: steps, batch, eval_every and checkpoint_every must be >= 1")
    if not (lr > 0 and 0 <= momentum < 1):
        raise ValueError(f"ste_search: lr must be > 0 and momentum in [0, 1), got lr={lr}, momentum={momentum}")
    anchor %= n
    others = [i for i in range(n) if i != anchor]
    states = [{k: v.to(device) for k, v in s.items()} for s in states]
    sizes = spec.perm_sizes(states[anchor])
    keys = _free_keys(spec, states[anchor])
    free = [{k: (states[anchor] if init == "anchor" else states[i])[k].detach().clone().requires_grad_(True) for k in keys} for i in others]
    groups = [{"params": [t[k]], "lr": tensor_lr(lr, spec[k].gain, t[k], optimizer, lr_scale)} for t in free for k in keys]
    opt = (torch.optim.SGD(groups, lr=lr, momentum=momentum) if optimizer == "sgd"
           else torch.optim.Adam(groups, betas=(0.9, 0.999)))
    perms = [identity_perms(sizes) for _ in others]
    latent_gen = torch.Generator().manual_seed(derived_seed(seed, "ste-latents"))
    z_eval = torch.randn(eval_latents, latent_dim, generator=torch.Generator().manual_seed(derived_seed(seed, "ste-eval"))).to(device)
    timings = {"projection": 0.0, "forward_backward": 0.0, "eval": 0.0}
    eval_hist: list[tuple[int, float]] = []
    train_hist: list[float] = []
    changes: list[int] = []
    best: dict = {"loss": float("inf"), "step": -1, "perms": perms}
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    run_id = {"n": n, "anchor": anchor, "seed": seed, "batch": batch, "init": init, "optimizer": optimizer, "lr": lr,
              "momentum": momentum, "lr_scale": lr_scale, "select": select, "keys": keys, "eval_latents": eval_latents,
              "eval_every": eval_every, "wm_max_iter": wm_max_iter}

    if ckpt is not None and ckpt.is_file():
        tensors, meta = load_checkpoint(ckpt)
        if meta.get("kind") != CHECKPOINT_KIND or meta.get("run") != run_id:
            raise ValueError(f"{ckpt}: an STE checkpoint of a different search (other models or settings); delete it to start afresh")
        with torch.no_grad():
            for i, t in enumerate(free):
                for k in keys:
                    t[k].copy_(tensors["free"][str(i)][k])
        opt.load_state_dict(unpack(tensors.get("opt", {}), meta["opt"]))
        perms = [dict(tensors["perms"][str(i)]) for i in range(len(others))]
        best = {"loss": meta["best_loss"], "step": meta["best_step"], "perms": [dict(tensors["best"][str(i)]) for i in range(len(others))]}
        latent_gen.set_state(tensors["rng"]["latents"])
        eval_hist = [tuple(x) for x in meta["eval_history"]]
        train_hist, changes = list(meta["train_history"]), list(meta["changes"])
        timings, start = dict(meta["timings"]), int(meta["step"])

    def save(step: int) -> None:
        opt_t, opt_skel = pack(opt.state_dict())
        tensors = {
            "free": {str(i): {k: t[k].detach() for k in keys} for i, t in enumerate(free)},
            "opt": opt_t,
            "perms": {str(i): p for i, p in enumerate(perms)},
            "best": {str(i): p for i, p in enumerate(best["perms"])},
            "rng": {"latents": latent_gen.get_state()},
        }
        save_checkpoint(ckpt, tensors, {"kind": CHECKPOINT_KIND, "run": run_id, "opt": opt_skel, "step": step,
                                        "best_loss": best["loss"], "best_step": best["step"], "eval_history": eval_hist,
                                        "train_history": train_hist, "changes": changes, "timings": timings})

    def project(step: int) -> None:
        """WM of each θ_i onto θ̃_i, warm-started from its current permutations."""
        t0 = time.perf_counter()
        moved = 0
        for j, i in enumerate(others):
            target = {**states[i], **{k: v.detach() for k, v in free[j].items()}}
            new = match(target, states[i], spec, max_iter=wm_max_iter, seed=seed + step, init=perms[j]).perms
            moved += sum(int((new[p] != perms[j][p]).sum()) for p in new)
            perms[j] = new
        changes.append(moved)
        timings["projection"] += time.perf_counter() - t0

    def members(straight_through: bool) -> list[dict[str, torch.Tensor]]:
        out = []
        for j, i in enumerate(others):
            m = apply_permutation(states[i], spec, perms[j])
            if straight_through:
                m.update({k: m[k] + (free[j][k] - free[j][k].detach()) for k in keys})
            out.append(m)
        return out

    def candidate(step: int, value: float) -> None:
        if value < best["loss"]:
            best.update(loss=value, step=step, perms=[dict(p) for p in perms])

    def evaluate(step: int) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            value = float(loss_fn(_merge(states[anchor], members(False), spec), z_eval))
        eval_hist.append((step, value))
        if select == "best_eval":
            candidate(step, value)
        timings["eval"] += time.perf_counter() - t0
        return value

    for step in range(start, steps):
        project(step)
        if step % eval_every == 0:
            evaluate(step)
        t0 = time.perf_counter()
        z = torch.randn(batch, latent_dim, generator=latent_gen).to(device)
        loss = loss_fn(_merge(states[anchor], members(True), spec), z)
        train_hist.append(float(loss.detach()))
        if select == "best_batch":  # Git Re-Basin: the minibatch loss at this step's projection
            candidate(step, train_hist[-1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        timings["forward_backward"] += time.perf_counter() - t0
        done = step + 1
        if done == steps:
            project(done)
            final_loss = evaluate(done)
            if select == "last":
                best.update(loss=final_loss, step=done, perms=[dict(p) for p in perms])
        if ckpt is not None and (done % checkpoint_every == 0 or done == steps or done == stop_after):
            save(done)
        if stop_after is not None and done >= stop_after and done < steps:
            break

    out_perms = [identity_perms(sizes) for _ in range(n)]
    for j, i in enumerate(others):
        out_perms[i] = {p: v.cpu() for p, v in best["perms"][j].items()}
    selected = loss_at(loss_fn, states, spec, [{p: v.to(device) for p, v in q.items()} for q in out_perms], z_eval, anchor)
    start_loss = eval_hist[0][1] if eval_hist else float("nan")
    return SteResult(out_perms, start_loss, selected, best["step"], best["loss"], select, eval_hist, train_hist, changes,
                     len(train_hist), timings)


def loss_at(loss_fn: LossFn, states: Sequence[Mapping[str, torch.Tensor]], spec: PermutationSpec,
            perms: Sequence[Mapping[str, torch.Tensor]], z: torch.Tensor, anchor: int = 0) -> float:
    """``loss_fn`` of the merged model ``mean_i π_i(θ_i)`` at latents ``z`` (no gradient)."""
    aligned = [apply_permutation(s, spec, p) for s, p in zip(states, perms)]
    with torch.no_grad():
        return float(loss_fn(_merge(aligned[anchor], [a for i, a in enumerate(aligned) if i != anchor], spec), z))
