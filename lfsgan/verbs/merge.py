"""`lfsgan merge`: merge N sources into one generator — naive average, MergeMany weight matching,
and the STE search's permutations when given — and score each merge (rule `merge_sources`).

Per merge method: FID/KID of the merged generator (the weight-matching protocol of
:func:`lfsgan.verbs.lmc.fid_metric`) beside every endpoint's, the merge barrier
``FID(merged) - mean_k FID(endpoint k)`` (for two models: the barrier at λ = ½), the STE objective
(:func:`lfsgan.permute.generator_loss`) on held-out latents, the summed pairwise L2 distance and
its reduction, and Ito et al.'s R(γ) averaged over all pairs of aligned members.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lfsgan.data import load_prepared
from lfsgan.io import atomic_path, load_checkpoint, save_checkpoint, write_json
from lfsgan.permute import (
    apply_permutation,
    average_states,
    generator_loss,
    generator_spec,
    identity_perms,
    loss_at,
    match_many,
    pairwise_sq_distances,
    r_gamma,
)
from lfsgan.report.figures import plot_r_gamma
from lfsgan.train import build_models
from lfsgan.train.step import derived_seed
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._models import load_source, model_config, source_discriminators
from lfsgan.verbs.lmc import fid_metric

log = logging.getLogger("lfsgan")


def run(cfg: dict, sources: list[str], data: str, cache: str, out: str, extractor: str | None = None, ste: str | None = None) -> None:
    device = setup_torch(cfg)
    pc = cfg["permutation"]
    loaded = [load_source(s) for s in sources]
    states = [g for g, _, _ in loaded]
    spec = generator_spec(states[0], lr_mlp=cfg["model"]["lr_mlp"])
    sizes = spec.perm_sizes(states[0])
    perms = {"naive": [identity_perms(sizes) for _ in states]}
    if ste:
        ste_perms = load_checkpoint(ste)[0].get("perms")
        if not isinstance(ste_perms, dict) or len(ste_perms) != len(states):
            raise ValueError(f"{ste}: not the STE permutations of these {len(states)} sources; rerun `lfsgan ste` on them")
        ste_perms = [ste_perms[str(i)] for i in range(len(states))]
    wm = match_many(states, spec, max_iter=pc["max_iter"], seed=pc["seed"])
    perms["wm"] = wm.perms
    if ste:
        perms["ste"] = ste_perms

    dataset = load_prepared(data)
    score = fid_metric(cfg, dataset, data, cache, extractor, device)
    G, _ = build_models(model_config(cfg))
    G = G.to(device).eval().requires_grad_(False)
    discriminators = source_discriminators(cfg, sources, device)
    loss_fn = generator_loss(G, discriminators)
    z_loss = torch.randn(256, G.style_dim, generator=torch.Generator().manual_seed(derived_seed(pc["seed"], "merge-loss"))).to(device)

    def fid_of(state) -> dict:
        G.load_state_dict(state, strict=True)
        return score(G)

    record: dict = {"sources": [str(s) for s in sources], "n_models": len(sources), "n_samples": pc["n_samples"], "seed": pc["seed"],
                    "gammas": pc["gammas"], "wm_rounds": wm.rounds, "wm_converged": wm.converged,
                    "loss": "STE objective: mean over endpoint discriminators of softplus(-D(G(z))), 256 held-out latents, constant noise",
                    "versions": versions()}
    endpoint_fid = []
    for i, s in enumerate(states):
        res = fid_of(s)
        endpoint_fid.append(res["fid"])
        record[f"endpoint{i}_fid"], record[f"endpoint{i}_kid_mean"] = res["fid"], res["kid_mean"]
        record["metric_protocol"] = res["protocol"]
    record["endpoints_fid_mean"] = float(np.mean(endpoint_fid))
    d_naive = float(np.triu(pairwise_sq_distances(states, spec)).sum())
    merged, r_tables = {}, []
    for method, ps in perms.items():
        aligned = [apply_permutation(s, spec, p) for s, p in zip(states, ps)]
        merged[method] = average_states(aligned, spec=spec)
        res = fid_of(merged[method])
        d = float(np.triu(pairwise_sq_distances(aligned, spec)).sum())
        record.update({
            f"{method}_fid": res["fid"], f"{method}_kid_mean": res["kid_mean"],
            f"{method}_merge_barrier_fid": res["fid"] - record["endpoints_fid_mean"],
            f"{method}_merge_barrier_relative": (res["fid"] - record["endpoints_fid_mean"]) / record["endpoints_fid_mean"],
            f"{method}_loss": loss_at(loss_fn, states, spec, ps, z_loss),
            f"{method}_l2": float(np.sqrt(d)), f"{method}_l2_reduction": 1.0 - float(np.sqrt(d / d_naive)) if d_naive > 0 else 0.0,
        })
        for i in range(len(aligned)):
            for j in range(i + 1, len(aligned)):
                t = r_gamma(aligned[i], aligned[j], spec, pc["gammas"])
                t.insert(0, "pair", f"{i}-{j}")
                t.insert(0, "method", method)
                r_tables.append(t)
    table = pd.concat(r_tables, ignore_index=True)
    total = table[table["layer"] == "ALL"].groupby(["method", "gamma"])["r"].mean()
    for (method, gamma), r in total.items():
        record[f"{method}_r_gamma_{gamma:g}"] = float(r)
    out = Path(out)
    with atomic_path(out / "r_gamma.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_r_gamma(table, out / "r_gamma.png", title=f"{len(sources)} models")
    save_checkpoint(out / "merged.pt", {f"g_ema_{m}": s for m, s in merged.items()},
                    {"workflow": {"stage": "merge", "sources": [str(s) for s in sources], "methods": list(merged)}})
    write_json(out / "merge.json", record)
    log.info("merged %d sources: FID endpoints %.4g, %s", len(sources), record["endpoints_fid_mean"],
             {m: round(record[f"{m}_fid"], 4) for m in merged})
