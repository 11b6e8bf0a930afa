"""`lfsgan evaluate`: FID/KID, intra-cluster LPIPS, B-LPIPS and, given the source's samples of the same
latents, the same-latent correspondence (:mod:`lfsgan.metrics.correspondence`) of sample sets (rule `evaluate`).

One process evaluates any number of sample sets, each with its own prepared task and output file:
the imports (torch, torchvision through lpips and torch-fidelity: ~3.5 s on one CPU core) and the LPIPS
network are paid once, not once per set (``evaluation.jobs: per_method``)."""

from __future__ import annotations

import logging
from pathlib import Path

from lfsgan.config import split_run
from lfsgan.data import load_prepared, to_float
from lfsgan.data.shots import run_shots
from lfsgan.io import load_checkpoint, write_json
from lfsgan.metrics import fid_kid, lpips_diversity, make_lpips
from lfsgan.metrics.correspondence import correspondence
from lfsgan.verbs._common import setup_torch
from lfsgan.verbs.sample import check_same_latents

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


def quality_block(cfg: dict, extractor_path: str | None, fake, dataset, domain: str, shots=None) -> dict:
    """The quality read-out (:mod:`lfsgan.metrics.quality`) of ``fake`` as domain ``domain`` (with
    ``shots``, uint8 [K, 3, H, W], the memorisation of those training shots), or ``{"skipped": why}``
    when the FID extractor is not the demo CNN or has no digit head."""
    from lfsgan.metrics.demo_extractor import load_demo_extractor
    from lfsgan.metrics.quality import quality_readout
    from lfsgan.metrics.weights import file_identity

    if cfg["evaluation"]["fid"]["extractor"] != "lfsgan-demo-cnn" or not extractor_path:
        return {"skipped": "the quality read-out needs the demo CNN's digit head; evaluation.fid.extractor is "
                           f"{cfg['evaluation']['fid']['extractor']!r}"}
    net, meta = load_demo_extractor(extractor_path)
    if not net.n_digits:
        return {"skipped": "the demo CNN has no digit head: its training data recorded no digit labels (not built-in domains)"}
    names = meta.get("label_names") or []
    if domain not in names:
        return {"skipped": f"domain '{domain}' is not one of the extractor's domains {names}"}
    q = cfg["evaluation"]["quality"]
    block = quality_readout(net, fake, dataset.images, names.index(domain), threshold=q["threshold"],
                            max_class_share=q["max_class_share"], min_confident=q["min_confident"],
                            min_spread_ratio=q["min_spread_ratio"], n_real=q["n_real"], seed=cfg["evaluation"]["seed"],
                            batch_size=cfg["evaluation"]["batch_size"], min_coverage_share=q["min_coverage_share"],
                            target_digits=None if dataset.labels is None else sorted(set(dataset.labels.tolist())),
                            shots=shots)
    block["protocol"]["extractor"] = {
        **file_identity(extractor_path),
        **{k: meta.get(k) for k in ("training_data", "label_names", "heldout", "heldout_accuracy", "digit_counts", "seed", "steps")},
    }
    return block


def run(cfg: dict, samples: str | list[str], data: str | list[str], cache: str, out: str | list[str],
        extractor: str | None = None, source_samples: str | None = None) -> None:
    """Evaluate ``samples[i]`` against the prepared task ``data[i]`` into ``out[i]``, for every i; with
    ``source_samples`` (the source's sample folder, same latents), each set's correspondence to it too."""
    samples, data, out = ([x] if isinstance(x, str) else list(x) for x in (samples, data, out))
    if not len(samples) == len(data) == len(out):
        raise ValueError(f"lfsgan evaluate: --samples ({len(samples)}), --data ({len(data)}) and --out ({len(out)}) "
                         "must name the same number of sample sets, in the same order")
    if len(set(out)) != len(out):
        raise ValueError(f"lfsgan evaluate: an --out file is named twice ({out})")
    device = setup_torch(cfg)
    lp = cfg["evaluation"]["lpips"]
    model = make_lpips(lp["net"], lp["backbone_weights"], lp["allow_random_backbone"], device=device.type)
    source = None
    if source_samples is not None:
        path = Path(source_samples) / "samples.pt"
        source = (path, *load_checkpoint(path))  # (path, {"images": uint8 [N, 3, H, W]}, meta)
    for s, d, o in zip(samples, data, out):
        evaluate_set(cfg, s, d, cache, o, extractor, device, model, source)


def evaluate_set(cfg: dict, samples: str, data: str, cache: str, out: str, extractor: str | None, device,
                 model, source: tuple[Path, dict, dict] | None = None) -> None:
    """The metrics JSON of one sample set (``model``: the LPIPS network from :func:`make_lpips`;
    ``source``: ``(path, tensors, meta)`` of the source's sample file, or None: no correspondence)."""
    fake_t, meta = load_checkpoint(Path(samples) / "samples.pt")
    fake = fake_t["images"]  # uint8 [N, 3, H, W]
    corr = None
    if source is not None:
        z = check_same_latents([(source[0], source[2]), (Path(samples) / "samples.pt", meta)], "same-latent correspondence")
        corr = correspondence(source[1]["images"], fake)
        corr["protocol"] = {"measure": corr["protocol"], "source_samples": str(source[0]), "z_sha256": z, "top1": corr["top1"]}
    dataset = load_prepared(data)
    shot_indices, shots, shot_rule = run_shots(dataset, cfg["data"], split_run(cfg, meta["method"])[1])
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
    div = lpips_diversity(
        to_float(fake),
        to_float(shots),
        lpips_model=model,
        n_fake=min(lp["n_fake"], len(fake)),
        cluster_size=lp["cluster_size"],
        seed=ev["seed"],
        batch_size=ev["batch_size"],
        reference={"centers": f"the {len(shots)} training shots of '{Path(data).name}' ({shot_rule})", "shots": shot_indices},
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
        "correspondence": None if corr is None else corr["correspondence"],
        "quality": quality_block(cfg, extractor, fake, dataset, Path(data).name, shots=shots),
        "protocol": {"fid_kid": fid["protocol"], "lpips": div["protocol"], "samples": {k: meta[k] for k in ("n_samples", "seed", "truncation", "latents")},
                     "correspondence": None if corr is None else corr["protocol"]},
    }
    write_json(out, record)
    log.info("%s after %s, task %s: FID %.3f KID %.4f intra-LPIPS %.4f B-LPIPS %.4f",
             record["method"], record["after_task"], record["task"], record["fid"], record["kid_mean"],
             record["intra_lpips"], record["b_lpips"])
    if record["quality"].get("collapsed"):
        log.warning("%s after %s, task %s: COLLAPSED — %s", record["method"], record["after_task"], record["task"],
                    "; ".join(record["quality"]["collapse_reasons"]))
