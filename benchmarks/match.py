"""Benchmark: one full weight-matching run (``lfsgan.permute.match``) for StyleGAN2 G and D.

Two models of the same architecture — independently initialised with different seeds, or loaded
from checkpoints — are matched on CPU; the script reports sweeps to convergence, the time split
between cost-matrix construction, the LAP solver and the exact objective checks, and the L2
distance before/after.

    python benchmarks/match.py                       # 256 px, channel multiplier 2, random init
    python benchmarks/match.py --size 64 --threads 2 --json out.json
    python benchmarks/match.py --g-a a.pt --g-b b.pt --key g_ema   # trained generators
    python benchmarks/match.py --nets G --many 3     # + MergeMany of 3 generators, ratio to 2-model WM
    python benchmarks/match.py --nets --many-sources data/sources/seed{0,1,2}.pt --threads 1   # the shipped sources
    python benchmarks/match.py --nets G --ste-steps 20   # + STE search: seconds per 100 steps

``--many N`` times MergeMany (``match_many``) of N independently initialised generators,
``--many-sources A.pt B.pt ...`` of trained source checkpoints (their ``g_ema``; the architecture is
read from the files, e.g. the demo's shipped ``data/sources/seed{0,1,2}.pt``). Each stopping setting (:data:`SETTINGS`: the references' fixed point with every
step run to convergence, the fixed point with one sweep per step, and the looser 1e-3 distance stop)
prints its rounds, whether it reached a fixed point, the units each round moved, the summed
pairwise distance relative to the unmatched start, and its CPU time over the two-model WM of the
first two models measured in the same run, plus the split between the anchored start
(N - 1 plain WM runs) and the rounds, and the LAPs the rounds solved. ``--ste-steps K`` runs K steps of the
STE search (two generators, the non-saturating loss against two random discriminators, batch
``--ste-batch``) and reports seconds per 100 steps, split into projection (WM) and forward/backward,
beside the WM time of the same pair measured in this run (at 256 px a few steps, extrapolated).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lfsgan.io import load_checkpoint, write_json  # noqa: E402
from lfsgan.models import Discriminator, Generator  # noqa: E402
from lfsgan.permute import discriminator_spec, generator_loss, generator_spec, match, match_many, ste_search  # noqa: E402


def _state(path: str | None, key: str | None, build, seed: int) -> dict[str, torch.Tensor]:
    if path is None:
        torch.manual_seed(seed)
        return build().state_dict()
    tensors, _ = load_checkpoint(path)
    if key is not None:
        if key not in tensors:
            raise SystemExit(f"{path}: no entry {key!r}; top-level entries: {sorted(tensors)}")
        tensors = tensors[key]
    return tensors


def run(name: str, sd_a, sd_b, spec, args) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    res = match(sd_a, sd_b, spec, max_iter=args.max_iter, seed=args.seed, progress=None)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {
        "net": name,
        "params": int(sum(v.numel() for k, v in sd_a.items() if spec[k].in_cost)),
        "perms": len(res.perms),
        "sweeps": res.sweeps,
        "converged": res.converged,
        "lap_steps": len(res.objective_history) - 1,
        "total_s": round(total, 3),
        "cpu_s": round(cpu, 3),  # CPU seconds of this process (all threads): wall ≈ cpu_s / threads on idle cores
        "cost_s": round(res.timings["cost"], 3),
        "lap_s": round(res.timings["lap"], 3),
        "objective_s": round(res.timings["objective"], 3),
        "l2_before": res.l2_history[0],
        "l2_after": res.l2_history[-1],
        "l2_reduction": 1 - res.l2_history[-1] / res.l2_history[0],
    }
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return row


#: MergeMany settings compared: (label, match_many keywords)
SETTINGS = (
    ("fixed point, steps to convergence (default)", {}),
    ("fixed point, 1 sweep per step", {"round_max_iter": 1}),
    ("distance stop 1e-3 (loose), 1 sweep per step", {"stop": "distance_rtol_loose", "round_rtol": 1e-3, "round_max_iter": 1}),
)


def merge_many_rows(args, build_g) -> list[dict]:
    """MergeMany of ``--many`` random or ``--many-sources`` trained generators under every
    :data:`SETTINGS` entry, against the two-model WM of the first two (CPU seconds)."""
    if args.many_sources:
        states = [_state(path, "g_ema", None, 0) for path in args.many_sources]
        what = "trained " + ",".join(Path(path).stem for path in args.many_sources)
    else:
        states = [_state(None, None, build_g, s) for s in range(args.many)]
        what = f"random x{args.many}"
    spec = generator_spec(states[0])
    c0 = time.process_time()
    match(states[0], states[1], spec, max_iter=args.max_iter, seed=args.seed)
    wm_cpu = time.process_time() - c0
    rows = []
    for label, kw in SETTINGS:
        c0 = time.process_time()
        res = match_many(states, spec, max_iter=args.max_iter, seed=args.seed, **kw)
        cpu = time.process_time() - c0
        row = {"net": f"G MergeMany {what}", "setting": label, "rounds": res.rounds, "converged": res.converged,
               "changes": res.changes, "distance_rel_start": round(res.distance_history[-1] / res.distance_history[0], 6),
               "cpu_s": round(cpu, 3), "wm_cpu_s": round(wm_cpu, 3), "ratio_cpu": round(cpu / wm_cpu, 2),
               "init_s": round(res.timings["init"], 3), "rounds_s": round(res.timings["rounds"], 3),
               "rounds_lap_steps": res.timings["lap_steps"]}
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--channel-multiplier", type=int, default=2)
    ap.add_argument("--channel-max", type=int, default=512)
    ap.add_argument("--style-dim", type=int, default=512)
    ap.add_argument("--n-mlp", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs=2, default=(0, 1), help="init seeds of A and B")
    ap.add_argument("--seed", type=int, default=0, help="matching seed (visiting order)")
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nets", nargs="*", choices=("G", "D"), default=("G", "D"))
    ap.add_argument("--g-a"), ap.add_argument("--g-b"), ap.add_argument("--d-a"), ap.add_argument("--d-b")
    ap.add_argument("--key", help="entry of the checkpoints holding the state_dict (e.g. g_ema)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--many", type=int, default=0, help="also time MergeMany of this many generators (>= 3)")
    ap.add_argument("--many-sources", nargs="+", help="MergeMany of these trained source checkpoints (their g_ema)")
    ap.add_argument("--ste-steps", type=int, default=0, help="also time this many STE search steps")
    ap.add_argument("--ste-batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    arch = dict(size=args.size, channel_multiplier=args.channel_multiplier, channel_max=args.channel_max)
    build_g = lambda: Generator(style_dim=args.style_dim, n_mlp=args.n_mlp, **arch)  # noqa: E731
    build_d = lambda: Discriminator(**arch)  # noqa: E731
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arch}", flush=True)
    rows = []
    if "G" in args.nets:
        sd_a = _state(args.g_a, args.key, build_g, args.seeds[0])
        sd_b = _state(args.g_b, args.key, build_g, args.seeds[1])
        rows.append(run("G", sd_a, sd_b, generator_spec(sd_a), args))
    if "D" in args.nets:
        sd_a = _state(args.d_a, args.key, build_d, args.seeds[0])
        sd_b = _state(args.d_b, args.key, build_d, args.seeds[1])
        rows.append(run("D", sd_a, sd_b, discriminator_spec(sd_a), args))
    if args.many or args.many_sources:
        rows += merge_many_rows(args, build_g)
    if args.ste_steps:
        sd_a, sd_b = _state(None, None, build_g, args.seeds[0]), _state(None, None, build_g, args.seeds[1])
        G = build_g().eval().requires_grad_(False)
        Ds = [build_d() for _ in range(2)]
        res = ste_search([sd_a, sd_b], generator_spec(sd_a), generator_loss(G, Ds), latent_dim=args.style_dim,
                         steps=args.ste_steps, batch=args.ste_batch, eval_latents=args.ste_batch, eval_every=args.ste_steps,
                         wm_max_iter=args.max_iter, seed=args.seed)
        per100 = {k: round(100 * v / args.ste_steps, 2) for k, v in res.timings.items()}
        row = {"net": "G STE", "steps": args.ste_steps, "batch": args.ste_batch, "s_per_100_steps": round(sum(per100.values()), 2),
               **{f"{k}_s_per_100": v for k, v in per100.items()}}
        base = next((r for r in rows if r["net"] == "G"), None)
        if base and args.g_a is None:  # the same pair (init seeds --seeds) as the WM row of this run
            row.update(wm_s=base["total_s"], per_100_steps_over_wm=round(row["s_per_100_steps"] / base["total_s"], 1))
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
    if args.json:
        write_json(args.json, {"args": vars(args), "threads": torch.get_num_threads(), "results": rows})


if __name__ == "__main__":
    main()
