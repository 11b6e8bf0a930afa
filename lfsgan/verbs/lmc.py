"""`lfsgan lmc`: the metric along naive, weight-matched and mixture paths between two sources (rule `lmc_curve`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from torch import nn  # noqa: E402

from lfsgan.data import load_prepared  # noqa: E402
from lfsgan.io import atomic_path, load_checkpoint, write_json  # noqa: E402
from lfsgan.metrics import fid_kid  # noqa: E402
from lfsgan.permute import barrier, generator_spec, lmc_curve, mixture_curve  # noqa: E402
from lfsgan.train import build_models  # noqa: E402
from lfsgan.verbs._common import setup_torch, versions  # noqa: E402
from lfsgan.verbs._models import load_source, model_config  # noqa: E402
from lfsgan.verbs.evaluate import fid_settings  # noqa: E402
from lfsgan.verbs.sample import generate  # noqa: E402

log = logging.getLogger("lfsgan")


def fid_metric(cfg: dict, dataset, data: str, cache: str, extractor: str | None, device) -> Callable[[nn.Module], dict]:
    """``score(G) -> fid_kid result`` on ``permutation.n_samples`` fixed latents (``permutation.seed``,
    no truncation) against the full prepared source set: the one protocol of every weight-matching
    comparison (LMC curves, merges)."""
    pc = cfg["permutation"]

    def score(G: nn.Module) -> dict:
        images = generate(G.to(device), pc["n_samples"], seed=pc["seed"], batch_size=cfg["evaluation"]["batch_size"],
                          truncation=1.0, device=device)
        return fid_kid(images, dataset.images, real_sha256=dataset.manifest["images_sha256"], cache_dir=cache,
                       reference={"set": f"full prepared source set '{Path(data).name}'"},
                       kid_subset_size=min(cfg["evaluation"]["fid"]["kid_subset_size"], pc["n_samples"], len(dataset.images)),
                       seed=pc["seed"], device=device.type, **fid_settings(cfg, extractor))

    return score


def run(cfg: dict, a: str, b: str, permuted: str, data: str, cache: str, out: str, extractor: str | None = None) -> None:
    device = setup_torch(cfg)
    pc = cfg["permutation"]
    g_a, _, _ = load_source(a, model_config(cfg))
    g_b, _, _ = load_source(b, model_config(cfg))
    g_pb = load_checkpoint(permuted)[0]["g_ema"]
    dataset = load_prepared(data)
    lambdas = np.linspace(0.0, 1.0, pc["lambdas"]).tolist()
    spec = generator_spec(g_a, lr_mlp=cfg["model"]["lr_mlp"])
    kid: list[float] = []  # in evaluation order, aligned with the records below
    protocol: dict = {}
    score = fid_metric(cfg, dataset, data, cache, extractor, device)

    def metric(G) -> float:
        res = score(G)
        protocol.update(res["protocol"])
        kid.append(res["kid_mean"])
        return res["fid"]

    def factory():
        return build_models(model_config(cfg))[0].to(device)

    records = lmc_curve(factory, g_a, g_b, lambdas, metric, spec=spec, path="naive")
    records += lmc_curve(factory, g_a, g_pb, lambdas, metric, spec=spec, path="matched")
    records += mixture_curve(factory, g_a, g_b, lambdas, metric)
    df = pd.DataFrame(records)
    df["kid_mean"] = kid
    df = df.rename(columns={"value": "fid"})
    summary = {"lambdas": lambdas, "n_samples": pc["n_samples"], "seed": pc["seed"], "a": str(a), "b": str(b),
               "metric_protocol": protocol, "versions": versions(),
               "note": "mean latent recomputed from each interpolated mapping network (never interpolated); fixed latents and noise at every λ"}
    for path, g in df.groupby("path", sort=False):
        g = g.sort_values("lambda")
        for metric_name in ("fid", "kid_mean"):
            for k, v in barrier(g[metric_name].tolist(), g["lambda"].tolist()).items():
                summary[f"{path}_{metric_name}_{k}"] = v
    out = Path(out)
    with atomic_path(out / "lmc.csv") as tmp:
        df.to_csv(tmp, index=False)
    write_json(out / "lmc.json", summary)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric_name in zip(axes, ("fid", "kid_mean")):
        for path, g in df.groupby("path", sort=False):
            g = g.sort_values("lambda")
            ax.plot(g["lambda"], g[metric_name], marker="o", label=path)
        ax.set_xlabel("λ  (0 = A, 1 = B or π(B))")
        ax.set_title(metric_name + (" (non-standard features)" if protocol.get("comparable_to_published") is False else ""), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend()
    with atomic_path(out / "lmc.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    log.info("LMC: %s", {k: v for k, v in summary.items() if "barrier_max" in k})
