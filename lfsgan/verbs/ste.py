"""`lfsgan ste`: straight-through-estimator permutation search of N sources onto the first (rule `ste_search`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lfsgan.io import save_checkpoint, write_json
from lfsgan.permute import generator_loss, generator_spec, ste_search
from lfsgan.train import build_models
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._models import load_source, model_config, source_discriminators

log = logging.getLogger("lfsgan")


def run(cfg: dict, sources: list[str], out: str, no_resume: bool = False) -> None:
    device = setup_torch(cfg)
    pc, sc = cfg["permutation"], cfg["permutation"]["ste"]
    loaded = [load_source(s) for s in sources]
    states = [g for g, _, _ in loaded]
    spec = generator_spec(states[0], lr_mlp=cfg["model"]["lr_mlp"])
    G, _ = build_models(model_config(cfg))
    G = G.to(device).eval().requires_grad_(False)
    discriminators = source_discriminators(cfg, sources, device)
    out = Path(out)
    ckpt = out / "ste_checkpoint.pt"
    if no_resume and ckpt.is_file():
        ckpt.unlink()
    t0 = time.perf_counter()
    res = ste_search(states, spec, generator_loss(G, discriminators), latent_dim=G.style_dim, anchor=0,
                     steps=sc["steps"], batch=sc["batch"], init=sc["init"], optimizer=sc["optimizer"], lr=sc["lr"],
                     momentum=sc["momentum"], lr_scale=sc["lr_scale"], select=sc["select"], seed=pc["seed"],
                     eval_latents=sc["eval_latents"], eval_every=sc["eval_every"], wm_max_iter=pc["max_iter"],
                     checkpoint=ckpt, checkpoint_every=sc["checkpoint_every"], device=device)
    seconds = time.perf_counter() - t0
    save_checkpoint(out / "ste.pt", {"perms": {str(i): p for i, p in enumerate(res.perms)}},
                    {"workflow": {"stage": "ste", "sources": [str(s) for s in sources], "anchor": 0}})
    write_json(out / "ste.json", {
        "sources": [str(s) for s in sources], "anchor": str(sources[0]), **sc, "seed": pc["seed"],
        "loss": "mean over the endpoints' discriminators of softplus(-D(G_merged(z))), constant noise",
        "start_loss": res.start_loss, "selected_loss": res.selected_loss, "selected_step": res.selected_step,
        "criterion_loss": res.criterion_loss, "eval_history": res.eval_history, "train_history": res.train_history,
        "changes": res.changes, "steps_run": res.steps,
        "seconds_this_run": seconds, "seconds": res.timings, "seconds_per_100_steps":
            100 * sum(res.timings.values()) / max(res.steps, 1), "device": str(device), "versions": versions(),
    })
    ckpt.unlink(missing_ok=True)  # the search is complete; its outputs are ste.pt and ste.json
    log.info("STE over %d sources: loss %.4g (step 0) -> %.4g (%s, step %d) in %.1f s",
             len(sources), res.start_loss, res.selected_loss, res.select, res.selected_step, seconds)
