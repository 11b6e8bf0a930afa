"""`lfsgan sample`: N images of task s from a method's generator after task t (rule `sample`: one set, or
every set of a method run in one process with ``evaluation.jobs: per_method``), or of the source
generator itself (rule `sample_source`).

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


def run(cfg: dict, source: str, out: str | list[str], method: str | None = None, after: str | list[str] | None = None,
        task: str | list[str] | None = None, states: list[str] = ()) -> None:
    """Sample task ``task[i]`` of ``method`` after task ``after[i]`` into ``out[i]``, for every i (``states``:
    the method's task.pt files up to the last ``after``; each set rebuilds its generator from the first
    t + 1 of them), or, with no method, the source into ``out``. Every (after, task) pair is checked
    before anything is written."""
    out, after, task = ([] if x is None else [x] if isinstance(x, str) else list(x) for x in (out, after, task))
    device = setup_torch(cfg)
    if method is None:
        if after or task or states:
            raise ValueError("--after, --task and --states name a method's task generator: give --method too, "
                             "or none of them to sample the source")
        if len(out) != 1:
            raise ValueError(f"lfsgan sample: the source is sampled into one --out folder, got {len(out)}")
        G = _source_generator(cfg, source).to(device)
        _sample_set(cfg, G, out[0], {"method": None, "after_task": None, "task": None,
                                    "generator": "source (g_ema when kept, else g)"}, device)
        return
    if not len(after) == len(task) == len(out) or not out:
        raise ValueError(f"lfsgan sample: --after ({len(after)}), --task ({len(task)}) and --out ({len(out)}) must name "
                         "the same number of sample sets, in the same order")
    if len(set(out)) != len(out):
        raise ValueError(f"lfsgan sample: an --out folder is named twice ({out})")
    positions = _positions(cfg, after, task, states)
    for (t, s), a, k, o in zip(positions, after, task, out):
        G = rebuild_task_generator(cfg, method, source, list(states)[: t + 1], task_position=s).to(device)
        _sample_set(cfg, G, o, {"method": method, "after_task": a, "task": k}, device)


def _sample_set(cfg: dict, G: torch.nn.Module, out: str, what: dict, device: torch.device) -> None:
    """The evaluation's ``n_samples`` images of ``G`` into ``out`` (samples.pt, samples.json, grid.png)."""
    ev = cfg["evaluation"]
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
    log.info("%d samples of %s -> %s", len(images), "the source" if what["method"] is None
             else f"{what['task']} after {what['after_task']} ({what['method']})", out)


def check_same_latents(files: list[tuple[str, dict]], what: str) -> str:
    """The ``z_sha256`` shared by sample files ``[(path, meta), ...]``; a ValueError naming ``what`` and
    the files when they were drawn from different latents (or a file predates the record)."""
    hashes = {meta.get("z_sha256") for _, meta in files}
    if len(hashes) != 1 or None in hashes:
        raise ValueError(f"{what}: the sample files were not drawn from the same latents "
                         f"({', '.join(str(path) for path, _ in files)}); regenerate them with one evaluation.seed")
    return hashes.pop()


def _positions(cfg: dict, after: list[str], task: list[str], states: list[str]) -> list[tuple[int, int]]:
    """(t, s) of every pair: positions of ``after[i]`` and ``task[i]`` in the config's tasks, checked
    against ``states`` (the task.pt files of tasks 1..T, T the last ``after``)."""
    tasks = cfg["tasks"]
    out = []
    for a, k in zip(after, task):
        for name in (a, k):
            if name not in tasks:
                raise ConfigError(f"task '{name}' is not in the config's tasks list {tasks}")
        t, s = tasks.index(a), tasks.index(k)
        if s > t:
            raise ValueError(f"task '{k}' comes after '{a}': sample only tasks already learnt (s <= t)")
        out.append((t, s))
    last = max(t for t, _ in out)
    if len(states) != last + 1:
        raise ValueError(f"after task '{tasks[last]}' the method has {last + 1} task states; got {len(states)} --states")
    return out
