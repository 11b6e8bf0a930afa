"""Weight matching (Ainsworth et al. 2023, "Git Re-Basin", §3.2 and Alg. 1) and MergeMany (App. A.10).

Objective (SOBLAP, on effective = equalised-lr-scaled tensors, every tensor with ``in_cost``)::

    J(π) = Σ_t <A_t, π(B)_t>_F        and   ||A - π(B)||² = ||A||² + ||B||² - 2 J(π)

so maximising J minimises the L2 distance. Coordinate ascent: with every permutation but ``p``
fixed, the terms linear in ``p`` form a linear assignment problem with cost

    C_p = Σ_{(t, axis) using p} A_t(axis) · B̃_t(axis)ᵀ        (float64, [n, n])

where ``X(axis)`` moves ``axis`` to the front and flattens the rest, and ``B̃_t`` is ``B_t`` with
all its *other* axes permuted by their current permutations. The LAP is solved by
``scipy.optimize.linear_sum_assignment(C, maximize=True)``; permutations are visited in a fresh
random order every sweep; the loop stops after a full sweep without improvement.

A tensor can carry the same permutation on two axes (StyleGAN2's same-resolution convs
``[1, C_r, C_r, 3, 3]``). Then J is quadratic in ``p`` and ``C_p`` is only its linearisation
around the current ``p``, so the LAP solution can lower J. We therefore evaluate J exactly for
the candidate and accept it only if it raises J by more than ``rtol * ||A|| * ||B||`` (the bound
on |J|); otherwise the current permutation is kept. This makes ``objective_history``
non-decreasing at every LAP step and guarantees termination; for tensors that use ``p`` once the
test is the plain ``newL > oldL`` of Git Re-Basin, with a relative instead of an absolute
tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from lfsgan.permute.apply import apply_permutation, permute_viewed, viewed
from lfsgan.permute.spec import PermutationSpec, check_perms, identity_perms

#: default relative tolerance: an LAP step counts as an improvement only if it raises J by more
#: than ``rtol * ||A|| * ||B||`` (float64 rounding of the objective is ~1e-13 of that scale)
RTOL = 1e-10
#: :func:`match_many`'s stopping rules
STOPS = ("fixed_point", "distance_rtol_loose")


@dataclass
class MatchResult:
    """Outcome of :func:`match`: ``apply_permutation(B, spec, perms)`` is B aligned to A."""

    perms: dict[str, torch.Tensor]
    #: J after each LAP step; entry 0 is J at the initial permutations
    objective_history: list[float]
    #: ||A - π(B)|| (effective, in-cost tensors) after each LAP step, aligned with ``objective_history``
    l2_history: list[float]
    #: sweeps run, the last (no-improvement) sweep included
    sweeps: int
    converged: bool
    #: wall-clock seconds: "cost" (building C_p), "lap" (the solver), "objective" (exact J checks)
    timings: dict[str, float] = field(default_factory=dict)


class _Layout:
    """What the spec says about J: per permutation its in-cost ``(key, axis)`` entries, split into
    tensors carrying it once (J linear in it) and twice (quadratic), and what ``C_p`` depends on."""

    def __init__(self, spec: PermutationSpec):
        self.spec = spec
        self.perm_to_axes = {
            p: [(k, ax) for k, ax in entries if spec[k].in_cost] for p, entries in spec.perm_to_axes.items()
        }
        # per perm: (key, axis) entries of tensors carrying p once (J exactly linear in p) and
        # keys carrying p on two axes (StyleGAN2's [1, C_r, C_r, 3, 3]: J quadratic in p)
        self.linear: dict[str, list[tuple[str, int]]] = {}
        self.quadratic: dict[str, list[tuple[str, int]]] = {}
        for p, entries in self.perm_to_axes.items():
            count = {k: sum(1 for kk, _ in entries if kk == k) for k, _ in entries}
            self.linear[p] = [(k, ax) for k, ax in entries if count[k] == 1]
            self.quadratic[p] = [(k, ax) for k, ax in entries if count[k] > 1]
        self.quad_keys = {k for entries in self.quadratic.values() for k, _ in entries}
        # perms B̃'s side of C_p depends on: those on the *other* axes of p's tensors (p itself if quadratic)
        self.deps = {
            p: sorted({q for k, axis in entries for ax, q in enumerate(spec[k].axes) if q is not None and ax != axis})
            for p, entries in self.perm_to_axes.items()
        }
        # perms A's side of C_p depends on when A is itself a permuted model (MergeMany's target):
        # every perm on any axis of p's tensors
        self.inputs = {
            p: sorted({q for k, _ in entries for q in spec[k].axes if q is not None}) for p, entries in self.perm_to_axes.items()
        }
        self.active = [p for p in spec.perm_names if self.perm_to_axes[p]]  # perms that enter J


def _effective(state: Mapping[str, torch.Tensor], spec: PermutationSpec, device) -> dict[str, torch.Tensor]:
    """Every in-cost tensor viewed per spec, as float64 and scaled by its gain (the effective weight)."""
    return {
        key: viewed(state[key], ts).to(device=device, dtype=torch.float64) * ts.gain
        for key, ts in spec.tensors.items()
        if ts.in_cost
    }


class _Problem:
    """Effective float64 tensors of A and B (:func:`_effective`) and the cached per-tensor terms of J."""

    def __init__(
        self,
        layout: _Layout,
        a: Mapping[str, torch.Tensor],
        b: Mapping[str, torch.Tensor],
        sizes: dict[str, int],
        device,
        terms: dict | None = None,
        a_version: Mapping[str, tuple] | None = None,
    ):
        self.layout, self.spec, self.sizes, self.device = layout, layout.spec, sizes, device
        # per (p, key, axis): (state of its inputs, A_key(axis) · B̃_key(axis)ᵀ), see :meth:`cost`;
        # may be shared by successive problems of the same B whose A differs only in some tensors,
        # ``a_version[key]`` identifying the values of A's tensor ``key``
        self.terms = {} if terms is None else terms
        self.a_version = {} if a_version is None else a_version
        self.a: dict[str, torch.Tensor] = {}
        self.b: dict[str, torch.Tensor] = {}
        self.constant = 0.0  # J terms of in-cost tensors without a permuted axis
        norm_a = norm_b = 0.0
        for key, ta in a.items():
            tb = b[key]
            norm_a += float(ta.square().sum())
            norm_b += float(tb.square().sum())
            if self.spec[key].permuted:
                self.a[key], self.b[key] = ta, tb
            else:
                self.constant += float((ta * tb).sum())
        self.norm2 = norm_a + norm_b
        self.scale = max(np.sqrt(norm_a * norm_b), np.finfo(float).tiny)
        self.perm_to_axes, self.linear, self.quadratic = layout.perm_to_axes, layout.linear, layout.quadratic
        self.quad_keys, self.deps = layout.quad_keys, layout.deps
        self._a_mats: dict[tuple[str, int], torch.Tensor] = {}  # A_key(axis), built once per problem

    def term(self, key: str, perms: Mapping[str, torch.Tensor]) -> float:
        """``<A_key, π(B)_key>`` at ``perms``."""
        ts = self.spec[key]
        return float(torch.dot(self.a[key].reshape(-1), permute_viewed(self.b[key], ts, perms).reshape(-1)))

    def a_mat(self, key: str, axis: int, n: int) -> torch.Tensor:
        """``A_key(axis)``: ``axis`` moved to the front (first ``n`` entries), the rest flattened → ``[n, rest]``."""
        return self.a[key].movedim(axis, 0)[:n].reshape(n, -1)

    def b_mat(self, key: str, axis: int, n: int, perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``B̃_key(axis)``: like :meth:`a_mat`, with every other axis permuted by its current perm."""
        ts = self.spec[key]
        x = self.b[key].movedim(axis, 0)  # a view; index_select below writes the moved layout
        for ax, q in enumerate(ts.axes):
            if q is None or ax == axis:
                continue
            index = perms[q]
            m = ts.partial_len(ax)
            if m is not None:
                index = torch.cat([index, torch.arange(m, x.shape[ax + (ax < axis)])])
            x = x.index_select(ax + (ax < axis), index.to(x.device))
        return x[:n].reshape(n, -1)

    def term_matrix(self, p: str, key: str, axis: int, perms: Mapping[str, torch.Tensor], version: Mapping[str, int]) -> torch.Tensor:
        """``A_key(axis) · B̃_key(axis)ᵀ`` ``[n, n]``, p's share from one tensor axis; reused while
        A's tensor and B's permutations on the other axes (their ``version``) are unchanged."""
        n = self.sizes[p]
        ts = self.spec[key]
        state = (self.a_version.get(key, ()), tuple(version[q] for ax, q in enumerate(ts.axes) if q is not None and ax != axis))
        hit = self.terms.get((p, key, axis))
        if hit is not None and hit[0] == state:
            return hit[1]
        if (key, axis) not in self._a_mats:
            self._a_mats[key, axis] = self.a_mat(key, axis, n)
        value = self._a_mats[key, axis] @ self.b_mat(key, axis, n, perms).T
        self.terms[p, key, axis] = (state, value)
        return value

    def cost(self, p: str, perms: Mapping[str, torch.Tensor], version: Mapping[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C_p, L_p)``, both ``[n, n]``: ``C_p[i, j]`` = similarity of unit i of A and unit j of
        B̃ over all of p's tensors; ``L_p`` the part from tensors carrying p once, for which
        ``Σ_i L_p[i, perm[i]]`` is exactly their share of J. Built as the sum of the per-tensor
        terms (:meth:`term_matrix`), of which only those whose inputs moved are recomputed."""
        n = self.sizes[p]
        lin = torch.zeros(n, n, dtype=torch.float64, device=self.device)
        for key, axis in self.linear[p]:
            lin += self.term_matrix(p, key, axis, perms, version)
        total = lin.clone()
        for key, axis in self.quadratic[p]:
            total += self.term_matrix(p, key, axis, perms, version)
        return total, lin

    def l2(self, objective: float) -> float:
        return float(np.sqrt(max(self.norm2 - 2.0 * objective, 0.0)))


def match(
    params_a: Mapping[str, torch.Tensor],
    params_b: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    *,
    max_iter: int = 100,
    seed: int = 0,
    init: Mapping[str, torch.Tensor] | None = None,
    rtol: float = RTOL,
    device: torch.device | str | None = None,
    progress: bool | None = False,
    skip_unchanged: bool = True,
) -> MatchResult:
    """Find permutations ``π`` maximising ``J(π) = Σ_t <A_t, π(B)_t>`` (Git Re-Basin, eq. 3).

    ``params_a``/``params_b`` are state dicts with the spec's keys (stored weights; the spec's
    gains turn them into effective weights for the cost). ``init`` warm-starts from given
    permutations (identity otherwise). ``seed`` fixes the visiting order of every sweep.
    ``device`` is where cost matrices are built (default: params_a's device); the LAP runs on CPU.
    ``skip_unchanged`` skips a permutation whose cost matrix cannot have changed since it was last
    solved (none of the permutations it depends on moved): the LAP would return the same answer,
    so results are identical and late sweeps are much cheaper. Skipped visits add no history entry.
    A solved ``C_p`` is summed from per-tensor terms, each recomputed only when a permutation on
    its tensor's other axes moved (:meth:`_Problem.term_matrix`).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if device is None:
        device = next(iter(params_a.values())).device
    spec.check_state(params_a, "params_a")
    spec.check_state(params_b, "params_b")
    sizes = spec.perm_sizes(params_a)
    if spec.perm_sizes(params_b) != sizes:
        raise ValueError(f"{spec.name}: params_a and params_b have different permutation sizes")
    for key, ts in spec.tensors.items():
        if ts.in_cost and params_a[key].shape != params_b[key].shape:
            raise ValueError(f"{spec.name}: {key!r} has shape {tuple(params_a[key].shape)} in A, {tuple(params_b[key].shape)} in B")
    prob = _Problem(_Layout(spec), _effective(params_a, spec, device), _effective(params_b, spec, device), sizes, device)
    perms = identity_perms(sizes) if init is None else check_perms(init, sizes, "init")
    return _ascent(prob, perms, max_iter=max_iter, seed=seed, rtol=rtol, progress=progress, skip_unchanged=skip_unchanged)


def _ascent(
    prob: _Problem,
    perms: dict[str, torch.Tensor],
    *,
    max_iter: int,
    seed: int,
    rtol: float,
    progress: bool | None = False,
    skip_unchanged: bool = True,
    version: dict[str, int] | None = None,
    seen: dict[str, tuple] | None = None,
    target_version: Mapping[str, tuple] | None = None,
) -> MatchResult:
    """The coordinate ascent of :func:`match` on a built problem, from ``perms``.

    ``version`` (bumped whenever a permutation of B changes) and ``seen`` (per perm: the state of
    its inputs when ``C_p`` was last solved, and the acceptance threshold if that LAP's answer was
    rejected) may be carried over from an earlier ascent of the same B; ``target_version[p]``
    identifies the values of A's tensors that enter ``C_p``. A permutation is skipped when its
    inputs and A's are unchanged since it was last solved and its answer then is the current
    permutation (or was rejected under the same threshold): the LAP would return the same answer.
    """
    timings = {"cost": 0.0, "lap": 0.0, "objective": 0.0}
    version = {p: 0 for p in prob.layout.active} if version is None else version
    seen = {} if seen is None else seen
    target_version = {} if target_version is None else target_version
    threshold = rtol * prob.scale

    t0 = time.perf_counter()
    terms = {key: prob.term(key, perms) for key in prob.a}
    objective = prob.constant + sum(terms.values())
    quad_terms = {key: terms[key] for key in prob.quad_keys}  # kept exact; the rest is tracked in `objective`
    timings["objective"] += time.perf_counter() - t0
    obj_hist, l2_hist = [objective], [prob.l2(objective)]

    rng = np.random.default_rng(seed)
    active = prob.layout.active
    converged, sweeps = False, 0
    bar = tqdm(range(max_iter), desc="weight matching", unit="sweep", disable=None if progress is None else not progress)
    for _ in bar:
        sweeps += 1
        improved = False
        for idx in rng.permutation(len(active)):
            p = active[idx]
            state = (target_version.get(p, ()), tuple(version[q] for q in prob.deps[p]))
            if skip_unchanged and seen.get(p) in ((state, None), (state, threshold)):
                continue  # C_p is unchanged since p was last solved: the LAP would give the same answer
            t0 = time.perf_counter()
            cost, lin = prob.cost(p, perms, version)
            t1 = time.perf_counter()
            _, cols = linear_sum_assignment(cost.cpu().numpy(), maximize=True)
            t2 = time.perf_counter()
            timings["cost"] += t1 - t0
            timings["lap"] += t2 - t1
            candidate = torch.from_numpy(cols).long()
            seen[p] = (state, None)
            if not torch.equal(candidate, perms[p]):
                trial = {**perms, p: candidate}
                rows = torch.arange(len(cols), device=lin.device)
                delta = float(lin[rows, candidate.to(lin.device)].sum() - lin[rows, perms[p].to(lin.device)].sum())
                touched = {key: prob.term(key, trial) for key, _ in prob.perm_to_axes[p] if key in prob.quad_keys}
                delta += sum(touched[key] - quad_terms[key] for key in {k for k, _ in prob.quadratic[p]})
                if delta > threshold:
                    perms, improved = trial, True
                    version[p] += 1
                    quad_terms.update(touched)
                    objective += delta
                else:
                    seen[p] = (state, threshold)
                timings["objective"] += time.perf_counter() - t2
            obj_hist.append(objective)
            l2_hist.append(prob.l2(objective))
        bar.set_postfix(l2=f"{l2_hist[-1]:.4g}")
        if not improved:
            converged = True
            break
    bar.close()
    return MatchResult(perms, obj_hist, l2_hist, sweeps, converged, timings)


# --- many models ------------------------------------------------------------------------------
@dataclass
class MatchManyResult:
    """Outcome of :func:`match_many`: ``apply_permutation(states[i], spec, perms[i])`` for every i
    puts all models in one common basis (the anchor's, in anchor mode)."""

    perms: list[dict[str, torch.Tensor]]
    #: Σ_{i<j} ||π_i(θ_i) - π_j(θ_j)||² (effective, in-cost tensors); entry 0 before matching,
    #: then one entry per round
    distance_history: list[float]
    rounds: int
    #: True only at a fixed point: the last round changed no model's assignment (so one more round
    #: would return the same permutations); False when a round cap or the looser distance stop ended it
    converged: bool
    anchor: int | None
    #: seconds: "init" (the anchored start), "rounds"; and the work of the rounds' coordinate
    #: ascents: "cost", "lap", "objective" seconds and "lap_steps" (LAPs solved; skipped ones excluded)
    timings: dict[str, float] = field(default_factory=dict)
    #: per round: units, over every model and permutation, whose assignment the round changed
    changes: list[int] = field(default_factory=list)


def effective_sq_distance(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], spec: PermutationSpec
) -> float:
    """``||A - B||²`` over in-cost tensors, on effective (gain-scaled) weights."""
    total = 0.0
    for key, ts in spec.tensors.items():
        if ts.in_cost:
            total += ts.gain**2 * float((state_a[key].double() - state_b[key].double()).square().sum())
    return total


def pairwise_sq_distances(
    states: Sequence[Mapping[str, torch.Tensor]],
    spec: PermutationSpec,
    perms: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> np.ndarray:
    """``D[i, j] = ||π_i(θ_i) - π_j(θ_j)||²`` (effective), ``[N, N]``; identity perms if None."""
    aligned = list(states) if perms is None else [apply_permutation(s, spec, p) for s, p in zip(states, perms)]
    n = len(aligned)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = effective_sq_distance(aligned[i], aligned[j], spec)
    return dist


def match_many(
    states: Sequence[Mapping[str, torch.Tensor]],
    spec: PermutationSpec,
    anchor: int | None = None,
    *,
    init: str = "anchor",
    stop: str = "fixed_point",
    max_rounds: int = 50,
    max_iter: int = 100,
    round_max_iter: int | None = None,
    seed: int = 0,
    rtol: float = RTOL,
    round_rtol: float = 1e-3,
    device: torch.device | str | None = None,
    progress: bool | None = False,
) -> MatchManyResult:
    """Align N >= 2 models to a common basis.

    ``anchor=None`` — MergeMany (Git Re-Basin App. A.10): in each round, visit the models in a
    random order and match model i (warm-started from its current permutation) to the mean of
    the others, already permuted. Each such step lowers ``Σ_{j≠i} ||π_i θ_i - π_j θ_j||²`` (it
    equals ``(N-1) ||π_i θ_i - mean_{-i}||²`` + const), so the summed pairwise distance is
    non-increasing over rounds.

    ``stop`` — when the rounds end:

    * ``"fixed_point"`` (default; the references' rule): after a round in which no model's
      assignment changed, i.e. no step improved its model's distance to the mean of the others
      (Git Re-Basin's ``src/mnist_mlp_wm_many.py`` stops when no model's L2 drops by more than
      1e-12; a step here changes an assignment only when it raises the matching objective by more
      than ``rtol`` of its scale). The permutations are then a fixed point of one more round and
      ``converged`` is True;
    * ``"distance_rtol_loose"``: also after a round that lowers the summed distance by no more
      than ``round_rtol`` relative (1e-3 by default: faster, not a fixed point). ``converged``
      still says whether the last round changed nothing.

    Reaching ``max_rounds`` first leaves ``converged`` False. ``round_max_iter`` caps the
    coordinate-ascent sweeps of each step inside the rounds (``None``: ``max_iter``, each step run
    to its own convergence, as the references do); a round that changes nothing is a fixed point
    either way, since a step's sweep that changes nothing is that step's convergence. The
    anchored start always runs to convergence.
    ``init="identity"`` starts the rounds from the identity, as Git Re-Basin does;
    ``init="anchor"`` (default) first matches every model to model 0 (N - 1 plain WM runs), so the
    rounds start warm and converge in fewer of them; ``distance_history[1]`` is then the distance
    after that start, and the rounds follow.

    ``anchor=k`` — every other model is matched to model k once (Ito et al.'s three-model setting);
    model k keeps the identity.
    """
    n = len(states)
    if n < 2:
        raise ValueError(f"match_many needs at least 2 models, got {n}")
    if init not in ("anchor", "identity"):
        raise ValueError(f"match_many: init must be 'anchor' or 'identity', got {init!r}")
    if stop not in STOPS:
        raise ValueError(f"match_many: stop must be one of {list(STOPS)}, got {stop!r}")
    if max_rounds < 1:
        raise ValueError(f"match_many: max_rounds must be >= 1, got {max_rounds}")
    sizes = spec.perm_sizes(states[0])
    perms = [identity_perms(sizes) for _ in range(n)]
    history = [float(np.triu(pairwise_sq_distances(states, spec)).sum())]
    kwargs = dict(max_iter=max_iter, rtol=rtol, device=device, progress=progress)

    def anchored(k: int) -> tuple[list[dict[str, torch.Tensor]], bool]:
        """Every model matched to model k: the permutations, and whether every match converged."""
        runs = {i: match(states[k], states[i], spec, seed=seed + i, **kwargs) for i in range(n) if i != k}
        return [runs[i].perms if i in runs else identity_perms(sizes) for i in range(n)], all(r.converged for r in runs.values())

    if anchor is not None:
        if not -n <= anchor < n:
            raise IndexError(f"anchor {anchor} out of range for {n} models")
        anchor %= n
        perms, converged = anchored(anchor)
        history.append(float(np.triu(pairwise_sq_distances(states, spec, perms)).sum()))
        return MatchManyResult(perms, history, 1, converged, anchor)

    t0 = time.perf_counter()
    if init == "anchor":
        perms, _ = anchored(0)
        history.append(float(np.triu(pairwise_sq_distances(states, spec, perms)).sum()))
    timings = {"init": time.perf_counter() - t0, "rounds": 0.0, "cost": 0.0, "lap": 0.0, "objective": 0.0, "lap_steps": 0}
    t0 = time.perf_counter()
    changes: list[int] = []
    rounds, converged = _merge_many_rounds(states, spec, perms, history, changes, timings, max_rounds=max_rounds,
                                           max_iter=max_iter if round_max_iter is None else round_max_iter,
                                           seed=seed, rtol=rtol, round_rtol=round_rtol if stop == "distance_rtol_loose" else None,
                                           device=device, progress=progress)
    timings["rounds"] = time.perf_counter() - t0
    return MatchManyResult(perms, history, rounds, converged, None, timings, changes)


def _merge_many_rounds(
    states: Sequence[Mapping[str, torch.Tensor]],
    spec: PermutationSpec,
    perms: list[dict[str, torch.Tensor]],
    history: list[float],
    changes: list[int],
    timings: dict[str, float],
    *,
    max_rounds: int,
    max_iter: int,
    seed: int,
    rtol: float,
    round_rtol: float | None,
    device,
    progress: bool | None,
) -> tuple[int, bool]:
    """MergeMany's rounds (Git Re-Basin App. A.10), updating ``perms``, ``history`` and ``changes``
    in place; ``(rounds run, fixed point reached)``. They stop at a round that changes no
    assignment, or (``round_rtol`` given) one that lowers the summed distance by at most that
    fraction, or after ``max_rounds``.

    Each step is :func:`match` of model i, warm-started from ``perms[i]``, onto the mean of the
    others ``θ̄_{-i} = 1/(N-1) Σ_{j≠i} π_j(θ_j)``; what is kept between steps makes it cheaper,
    not different:

    * every model's effective float64 tensors (:func:`_effective`) and aligned copies
      ``π_j(θ_j)`` are built once and updated only in the tensors whose permutations moved, so a
      step's target is a sum of cached tensors instead of a re-averaged, re-converted state dict;
    * model i keeps its permutations' versions and the state of every ``C_p`` it last solved
      across rounds; ``C_p`` depends on model i's perms on the other axes of p's tensors and on the
      target's values in p's tensors, i.e. on the other models' perms on any axis of them
      (``_Layout.inputs``). When none of these moved since model i last solved p, the LAP would
      return the same answer, so it is skipped — as :func:`match`'s ``skip_unchanged`` does within
      one run (a model none of whose inputs moved solves no LAP at all);
    * model i keeps its per-tensor cost terms ``θ̄_{-i,t}(axis) · π̃_i(θ_i)_t(axis)ᵀ``
      (:meth:`_Problem.term_matrix`) across rounds: a term is recomputed only when the target's
      tensor t (the other models' perms on t's axes) or model i's perms on t's other axes moved,
      so a ``C_p`` whose neighbours moved recomputes only their tensors' share.

    The summed distance of ``history`` is computed from the cached effective tensors.
    """
    n = len(states)
    device = next(iter(states[0].values())).device if device is None else device
    layout = _Layout(spec)
    sizes = spec.perm_sizes(states[0])
    eff = [_effective(s, spec, device) for s in states]

    def aligned_key(i: int, key: str) -> torch.Tensor:
        ts = spec[key]
        return permute_viewed(eff[i][key], ts, perms[i]) if ts.permuted else eff[i][key]

    aligned = [{key: aligned_key(i, key) for key in eff[i]} for i in range(n)]
    versions = [{p: 0 for p in layout.active} for _ in range(n)]
    seen: list[dict[str, tuple]] = [{} for _ in range(n)]
    terms: list[dict] = [{} for _ in range(n)]  # per model: its cost terms (_Problem.term_matrix)
    keys_of = {p: {k for k, _ in layout.perm_to_axes[p]} for p in layout.active}

    def distance() -> float:
        return sum(float((aligned[i][k] - aligned[j][k]).square().sum()) for i in range(n) for j in range(i + 1, n) for k in eff[i])

    rng = np.random.default_rng(seed)
    for r in range(max_rounds):
        changed = 0
        for i in rng.permutation(n):
            i = int(i)
            others = [j for j in range(n) if j != i]
            target = {k: sum(aligned[j][k] for j in others) / (n - 1) for k in eff[i]}
            target_version = {p: tuple(versions[j][q] for j in others for q in layout.inputs[p]) for p in layout.active}
            key_version = {k: tuple(versions[j][q] for j in others for q in spec[k].axes if q is not None) for k in target}
            prob = _Problem(layout, target, eff[i], sizes, device, terms=terms[i], a_version=key_version)
            before = dict(versions[i])
            res = _ascent(prob, dict(perms[i]), max_iter=max_iter, seed=seed + 1000 * r + i, rtol=rtol, progress=progress,
                          version=versions[i], seen=seen[i], target_version=target_version)
            for key in ("cost", "lap", "objective"):
                timings[key] += res.timings[key]
            timings["lap_steps"] += len(res.objective_history) - 1
            moved = [p for p in layout.active if versions[i][p] != before[p]]
            changed += sum(int((res.perms[p] != perms[i][p]).sum()) for p in moved)
            perms[i] = res.perms
            for key in set().union(*(keys_of[p] for p in moved)) if moved else ():
                aligned[i][key] = aligned_key(i, key)
        history.append(distance())
        changes.append(changed)
        if changed == 0:
            return r + 1, True
        if round_rtol is not None and history[-2] - history[-1] <= round_rtol * max(history[-2], np.finfo(float).tiny):
            return r + 1, False
    return max_rounds, False
