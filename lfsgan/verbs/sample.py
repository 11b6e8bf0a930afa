"""`lfsgan sample`: N images of task s from a method's generator after task t (rule `sample`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lfsgan.config import ConfigError
from lfsgan.io import save_checkpoint, write_json
from lfsgan.train.logs import save_grid
from lfsgan.verbs._common import setup_torch, versions
from lfsgan.verbs._methods import rebuild_task_generator

log = logging.getLogger("lfsgan")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8, the rounding torchvision's save_image uses (what a PNG would hold)."""
    return images.clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, *, seed: int, batch_size: int, truncation: float, device: torch.device) -> torch.Tensor:
    """``n`` uint8 images ``[n, 3, H, W]``: latents and noise from ``seed`` (the same for every
    generator, so methods and tasks are compared on the same draws)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.style_dim, generator=gen)
    torch.manual_seed(seed)  # the generator's per-layer noise draws
    mean = G.mean_latent(4096, seed=seed) if truncation < 1 else None
    out = []
    for i in tqdm(range(0, n, batch_size), desc="sample", mininterval=5, disable=None):
        img = G(z[i : i + batch_size].to(device), noise_mode="random", truncation=truncation, truncation_latent=mean)
        out.append(to_uint8(img).cpu())
    return torch.cat(out)


def run(cfg: dict, method: str, after: str, task: str, source: str, states: list[str], out: str) -> None:
    tasks = cfg["tasks"]
    for name in (after, task):
        if name not in tasks:
            raise ConfigError(f"task '{name}' is not in the config's tasks list {tasks}")
    t, s = tasks.index(after), tasks.index(task)
    if s > t:
        raise ValueError(f"task '{task}' comes after '{after}': sample only tasks already learnt (s <= t)")
    if len(states) != t + 1:
        raise ValueError(f"after task '{after}' the method has {t + 1} task states; got {len(states)} --states")
    device = setup_torch(cfg)
    ev = cfg["evaluation"]
    G = rebuild_task_generator(cfg, method, source, list(states), task_position=s).to(device)
    images = generate(G, ev["n_samples"], seed=ev["seed"], batch_size=ev["batch_size"], truncation=ev["truncation"], device=device)
    out = Path(out)
    protocol = {
        "method": method,
        "after_task": after,
        "task": task,
        "n_samples": ev["n_samples"],
        "seed": ev["seed"],
        "latents": "z ~ N(0, I) from torch.Generator(seed); noise: random, torch.manual_seed(seed)",
        "truncation": ev["truncation"],
        "format": "uint8 [N, 3, H, W], rounding as torchvision.save_image (PNG-equivalent, lossless)",
        "versions": versions(),
    }
    save_checkpoint(out / "samples.pt", {"images": images}, protocol)
    write_json(out / "samples.json", protocol)
    save_grid(images[: ev["grid"]].float().div(127.5).sub(1), out / "grid.png")
    log.info("%d samples of %s after %s (%s) -> %s", len(images), task, after, method, out)
