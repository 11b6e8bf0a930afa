"""`lfsgan evaluate`: FID/KID, intra-cluster LPIPS and B-LPIPS of one sample set (rule `evaluate`)."""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.data import load_prepared, to_float
from lfsgan.io import load_checkpoint, write_json
from lfsgan.metrics import fid_kid, lpips_diversity, make_lpips
from lfsgan.verbs._common import setup_torch

log = logging.getLogger("lfsgan")


def fid_settings(cfg: dict, extractor_path: str | None) -> dict:
    """The keyword arguments of :func:`lfsgan.metrics.fid_kid` that come from the config."""
    fid = cfg["evaluation"]["fid"]
    if fid["extractor"] == "lfsgan-demo-cnn":
        if not extractor_path:
            raise ValueError("evaluation.fid.extractor is 'lfsgan-demo-cnn': pass --extractor (the output of `lfsgan train-extractor`)")
        weights = extractor_path
    else:
        weights = fid["weights"]
    return {"extractor": fid["extractor"], "weights_path": weights, "batch_size": cfg["evaluation"]["batch_size"]}


def run(cfg: dict, samples: str, data: str, cache: str, out: str, extractor: str | None = None) -> None:
    device = setup_torch(cfg)
    fake_t, meta = load_checkpoint(Path(samples) / "samples.pt")
    fake = fake_t["images"]  # uint8 [N, 3, H, W]
    dataset = load_prepared(data)
    ev = cfg["evaluation"]
    reference = {
        "set": f"full prepared set of '{Path(data).name}' ({len(dataset.images)} images, not only the shots)",
        "images_sha256": dataset.manifest["images_sha256"],
    }
    fid = fid_kid(
        fake,
        dataset.images,
        real_sha256=dataset.manifest["images_sha256"],
        cache_dir=cache,
        reference=reference,
        kid_subset_size=min(ev["fid"]["kid_subset_size"], len(fake), len(dataset.images)),
        seed=ev["seed"],
        device=device.type,
        **fid_settings(cfg, extractor),
    )
    lp = ev["lpips"]
    model = make_lpips(lp["net"], lp["backbone_weights"], lp["allow_random_backbone"], device=device.type)
    div = lpips_diversity(
        to_float(fake),
        to_float(dataset.shots()),
        lpips_model=model,
        n_fake=min(lp["n_fake"], len(fake)),
        cluster_size=lp["cluster_size"],
        seed=ev["seed"],
        batch_size=ev["batch_size"],
        reference={"centers": f"the {len(dataset.manifest['shots'])} training shots of '{Path(data).name}'"},
    )
    tasks = cfg["tasks"]
    record = {
        "method": meta["method"],
        "after_task": meta["after_task"],
        "task": meta["task"],
        "after_index": tasks.index(meta["after_task"]),
        "task_index": tasks.index(meta["task"]),
        "fid": fid["fid"],
        "kid_mean": fid["kid_mean"],
        "kid_std": fid["kid_std"],
        "intra_lpips": div["intra_lpips"],
        "b_lpips": div["b_lpips"],
        "entropy": div["entropy"],
        "cluster_sizes": div["cluster_sizes"],
        "protocol": {"fid_kid": fid["protocol"], "lpips": div["protocol"], "samples": {k: meta[k] for k in ("n_samples", "seed", "truncation", "latents")}},
    }
    write_json(out, record)
    log.info("%s after %s, task %s: FID %.3f KID %.4f intra-LPIPS %.4f B-LPIPS %.4f",
             record["method"], record["after_task"], record["task"], record["fid"], record["kid_mean"],
             record["intra_lpips"], record["b_lpips"])
