"""`lfsgan sample`: N images of task s from a method's generator after task t (rule `sample`), or of
the source generator itself (rule `sample_source`).

Every generator is sampled on the same draws: latents ``z`` from ``torch.Generator(seed)`` and the
per-layer noise from ``torch.manual_seed(seed)``. The protocol records ``z_sha256`` (the latents'
bytes), so a figure that puts the source's row beside a method's can check the draws are identical.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lfsgan.config import ConfigError
from lfsgan.io import save_checkpoint, write_json
from lfsgan.train.logs import save_grid
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.train import build_models
from lfsgan.verbs._methods import rebuild_task_generator
from lfsgan.verbs._models import load_source, model_config

log = logging.getLogger("lfsgan")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8, the rounding torchvision's save_image uses (what a PNG would hold)."""
    return images.clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)


def latent_codes(n: int, style_dim: int, seed: int) -> torch.Tensor:
    """The evaluation's latents ``z ~ N(0, I)``, float32 ``[n, style_dim]``, from ``torch.Generator(seed)``."""
    return torch.randn(n, style_dim, generator=torch.Generator().manual_seed(seed))


def latents_sha256(z: torch.Tensor) -> str:
    """sha256 of a latent tensor's float32 bytes (C order): equal hashes, identical draws."""
    return hashlib.sha256(z.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, *, seed: int, batch_size: int, truncation: float, device: torch.device) -> torch.Tensor:
    """``n`` uint8 images ``[n, 3, H, W]``: latents and noise from ``seed`` (the same for every
    generator, so methods and tasks are compared on the same draws)."""
    z = latent_codes(n, G.style_dim, seed)  # [n, style_dim]
    torch.manual_seed(seed)  # the generator's per-layer noise draws
    mean = G.mean_latent(4096, seed=seed) if truncation < 1 else None
    out = []
    for i in tqdm(range(0, n, batch_size), desc="sample", mininterval=5, disable=None):
        img = G(z[i : i + batch_size].to(device), noise_mode="random", truncation=truncation, truncation_latent=mean)
        out.append(to_uint8(img).cpu())
    return torch.cat(out)


def _source_generator(cfg: dict, source: str) -> torch.nn.Module:
    """The source generator every method adapts (``g_ema`` when the run kept one), ready to sample."""
    g, _d, _meta = load_source(source, model_config(cfg))
    G, _D = build_models(model_config(cfg))
    G.load_state_dict(g)
    return G.eval().requires_grad_(False)


def run(cfg: dict, source: str, out: str, method: str | None = None, after: str | None = None, task: str | None = None,
        states: list[str] = ()) -> None:
    """Sample task ``task`` of ``method`` after task ``after`` (from ``states``), or, with no method, the source."""
    device = setup_torch(cfg)
    ev = cfg["evaluation"]
    if method is None:
        if after or task or states:
            raise ValueError("--after, --task and --states name a method's task generator: give --method too, "
                             "or none of them to sample the source")
        G = _source_generator(cfg, source).to(device)
        what = {"method": None, "after_task": None, "task": None, "generator": "source (g_ema when kept, else g)"}
    else:
        t, s = _positions(cfg, after, task, states)
        G = rebuild_task_generator(cfg, method, source, list(states), task_position=s).to(device)
        what = {"method": method, "after_task": after, "task": task}
    images = generate(G, ev["n_samples"], seed=ev["seed"], batch_size=ev["batch_size"], truncation=ev["truncation"], device=device)
    out = Path(out)
    protocol = {
        **what,
        "n_samples": ev["n_samples"],
        "seed": ev["seed"],
        "latents": "z ~ N(0, I) from torch.Generator(seed); noise: random, torch.manual_seed(seed)",
        "z_sha256": latents_sha256(latent_codes(ev["n_samples"], G.style_dim, ev["seed"])),
        "truncation": ev["truncation"],
        "format": "uint8 [N, 3, H, W], rounding as torchvision.save_image (PNG-equivalent, lossless)",
        "versions": versions(),
    }
    save_checkpoint(out / "samples.pt", {"images": images}, protocol)
    write_json(out / "samples.json", protocol)
    save_grid(images[: ev["grid"]].float().div(127.5).sub(1), out / "grid.png")
    log.info("%d samples of %s -> %s", len(images), "the source" if method is None else f"{task} after {after} ({method})", out)


def check_same_latents(files: list[tuple[str, dict]], what: str) -> str:
    """The ``z_sha256`` shared by sample files ``[(path, meta), ...]``; a ValueError naming ``what`` and
    the files when they were drawn from different latents (or a file predates the record)."""
    hashes = {meta.get("z_sha256") for _, meta in files}
    if len(hashes) != 1 or None in hashes:
        raise ValueError(f"{what}: the sample files were not drawn from the same latents "
                         f"({', '.join(str(path) for path, _ in files)}); regenerate them with one evaluation.seed")
    return hashes.pop()


def _positions(cfg: dict, after: str | None, task: str | None, states: list[str]) -> tuple[int, int]:
    """(t, s): positions of ``after`` and ``task`` in the config's tasks, checked against ``states``."""
    tasks = cfg["tasks"]
    for name in (after, task):
        if name not in tasks:
            raise ConfigError(f"task '{name}' is not in the config's tasks list {tasks}")
    t, s = tasks.index(after), tasks.index(task)
    if s > t:
        raise ValueError(f"task '{task}' comes after '{after}': sample only tasks already learnt (s <= t)")
    if len(states) != t + 1:
        raise ValueError(f"after task '{after}' the method has {t + 1} task states; got {len(states)} --states")
    return t, s
