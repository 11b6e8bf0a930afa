"""`lfsgan match`: permute source B's generator and discriminator onto source A's (rule `match_permutation`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from lfsgan.io import atomic_path, load_checkpoint, save_checkpoint, write_json
from lfsgan.permute import (
    apply_permutation,
    discriminator_spec,
    generator_spec,
    l2_totals,
    match,
    plot_singular_diagnostics,
    r_gamma,
    singular_diagnostics,
)
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._models import load_source, model_config

log = logging.getLogger("lfsgan")


def _summary(result, name: str, n_params: int) -> dict:
    j, l2 = result.objective_history, result.l2_history
    return {
        f"{name}_sweeps": result.sweeps,
        f"{name}_converged": result.converged,
        f"{name}_objective_start": j[0],
        f"{name}_objective_end": j[-1],
        f"{name}_l2_before": l2[0],
        f"{name}_l2_after": l2[-1],
        f"{name}_l2_reduction": 1 - l2[-1] / l2[0] if l2[0] > 0 else 0.0,
        f"{name}_params": n_params,
        **{f"{name}_seconds_{k}": v for k, v in result.timings.items()},
    }


def run(cfg: dict, a: str, b: str, out: str) -> None:
    setup_torch(cfg)
    pc = cfg["permutation"]
    g_a, d_a, meta_a = load_source(a, model_config(cfg))
    g_b, d_b, _ = load_source(b, model_config(cfg))
    out = Path(out)
    record = {"a": str(a), "b": str(b), "max_iter": pc["max_iter"], "seed": pc["seed"], "top_k": pc["top_k"], "gammas": pc["gammas"],
              "cost": "effective (equalised-lr scaled) weights, float64", "versions": versions()}
    g_spec = generator_spec(g_a, lr_mlp=cfg["model"]["lr_mlp"])
    g_match = match(g_a, g_b, g_spec, max_iter=pc["max_iter"], seed=pc["seed"], progress=None)
    record.update(_summary(g_match, "g", sum(v.numel() for v in g_a.values())))
    d_spec = discriminator_spec(d_a)
    d_match = match(d_a, d_b, d_spec, max_iter=pc["max_iter"], seed=pc["seed"], progress=None)
    record.update(_summary(d_match, "d", sum(v.numel() for v in d_a.values())))

    g_perm = apply_permutation(g_b, g_spec, g_match.perms)
    d_perm = apply_permutation(d_b, d_spec, d_match.perms)
    _, meta_b = load_checkpoint(b)
    save_checkpoint(
        out / "permuted.pt",
        {"g_ema": g_perm, "d": d_perm, "perms_g": g_match.perms, "perms_d": d_match.perms},
        {**meta_b, "workflow": {"stage": "permutation", "permuted_onto": str(a), "from": str(b)}},
    )
    diag = singular_diagnostics(g_a, g_b, g_spec, g_match.perms, k=pc["top_k"])
    record.update({f"g_{k}": v for k, v in l2_totals(diag).items()})
    table = diag[[c for c in diag.columns if diag[c].map(lambda v: not hasattr(v, "__len__") or isinstance(v, str)).all()]]
    with atomic_path(out / "svd.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_singular_diagnostics(diag, out / "svd.png")
    r_before = r_gamma(g_a, g_b, g_spec, pc["gammas"]).assign(matched=False)
    r_after = r_gamma(g_a, g_perm, g_spec, pc["gammas"]).assign(matched=True)
    r_table = pd.concat([r_before, r_after], ignore_index=True)
    with atomic_path(out / "r_gamma.csv") as tmp:
        r_table.to_csv(tmp, index=False)
    for row in r_table[r_table["layer"] == "ALL"].itertuples():
        record[f"g_r_gamma_{row.gamma:g}_{'after' if row.matched else 'before'}"] = float(row.r)
    write_json(out / "match.json", record)
    log.info("matched %s onto %s: G L2 %.4g -> %.4g (%d sweeps); D L2 %.4g -> %.4g",
             b, a, record["g_l2_before"], record["g_l2_after"], record["g_sweeps"], record["d_l2_before"], record["d_l2_after"])
