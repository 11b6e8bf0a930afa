"""`lfsgan fisher`: diagonal empirical Fisher of the source generator (rule `fisher`)."""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.fisher import fisher_diagonal, fisher_summary, plot_fisher
from lfsgan.io import atomic_path, save_checkpoint
from lfsgan.train import build_models
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._models import load_source, model_config

log = logging.getLogger("lfsgan")


def run(cfg: dict, source: str, out: str) -> None:
    device = setup_torch(cfg)
    g, d, _ = load_source(source, model_config(cfg))
    G, D = build_models(model_config(cfg))
    G.load_state_dict(g)
    D.load_state_dict(d)
    fc = cfg["fisher"]
    F = fisher_diagonal(G.to(device), D.to(device), fc["n_samples"], batch_size=fc["batch_size"], seed=fc["seed"])
    out = Path(out)
    protocol = {
        "estimator": "mean over samples of (d/dθ softplus(-D(G(z))))², source G (EMA) and D in eval mode",
        "n_samples": fc["n_samples"], "batch_size": fc["batch_size"], "seed": fc["seed"], "source": str(source),
        "versions": versions(),
    }
    save_checkpoint(out / "fisher.pt", {"fisher": {k: v.cpu() for k, v in F.items()}}, protocol)
    table = fisher_summary(F, G)
    with atomic_path(out / "layers.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_fisher(table, out / "layers.png")
    log.info("Fisher of %d tensors from %d samples -> %s", len(F), fc["n_samples"], out)
