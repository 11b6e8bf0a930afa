"""LFS-GAN (Seo, Kang, Park, ICCV 2023): LeFT modulators + cluster-wise mode-seeking loss, CDC-style D.

Per task (``docs/methods.md`` §1.3–§1.6), each task trained independently from the source
(issue KU-VGI/LFS-GAN#1, so "after task T, task s" = source + task s's LeFT tensors):

* **G**: the source generator, frozen; a LeFT modulator (:mod:`.left`) on every ``EqualLinear``
  (mapping layers and style affines) and every ``ModulatedConv2d`` base weight. Only the LeFT tensors
  train and only they are stored (``task_state() == {"left": {layer: {tensor: …}}}``). The released
  code keeps every bias frozen, so a task whose background differs from the source's (white for
  black) must make the background from the weights alone; ``train_biases`` (``rgb``: the ToRGB
  biases, 3 per ToRGB; ``all``: also the activation biases) lets those train too, stored as
  ``task_state()["biases"]`` (a deviation, off by default).
* **D**: fine-tuned from the source D every task, not stored. With ``patch_d`` (CDC's anchor / patch
  discriminator, §1.5): ``n_anchors`` fixed latents are drawn once per task from the seed; every
  ``anchor_every``-th step (``step % anchor_every == 0``) samples ``z = anchor + N(0, anchor_std²)``
  without mixing and is scored by the image-level D; every other step samples ``z ~ N(0, I)`` with
  style mixing and is scored by a patch logit map ``[B, 1, h, w]`` from a fresh 3×3 conv head
  (conv 3×3 C→1 + bias + scaled leaky ReLU, as CDC's ``Extra``; trained with D's optimiser) on an
  intermediate D feature.
  *Patch feature choice:* the ``D.convs`` block whose resolution is ``clamp(size/8, 8, 32)`` —
  the 32×32 (512-ch) map at 256 px as in the paper, 8×8 at 32–64 px — tapped as CDC does: the
  main branch (``conv2(conv1(x))``) before the residual add.
* **Loss**: non-saturating adversarial loss + ``ms_weight · L_ms`` every step (:mod:`.mode_seeking`),
  on ``ms_factor · B`` fresh latents (``w`` broadcast to all ``G.n_latent`` layers, random noise)
  clustered by LPIPS-VGG to the step's ``B`` real images (their LPIPS features are cached per image:
  a few-shot task's batches keep drawing the same shots).

Seeds (all from ``ctx.seed``): anchors, LeFT init, patch head and the mode-seeking latents each use
their own ``torch.Generator`` (salts 1–4), so nothing here consumes the global RNG except the noise
inputs of G and the patch head's initialisation inside a forked RNG scope.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from lfsgan.models.discriminator import ConvLayer, ResBlock
from lfsgan.models.layers import StyledConv, ToRGB

from .adapters import (adapter_parameters, adapter_state, attach_adapters, detach_adapters,
                       load_adapter_state)
from .base import ExtraSamples, Method, TaskContext, synthesize
from .left import left_for_layer
from .mode_seeking import RealFeatureCache, assign_clusters, mode_seeking_loss

SALT_ANCHORS, SALT_LEFT, SALT_HEAD, SALT_MS = 1, 2, 3, 4


def task_biases(G: nn.Module, which: str) -> dict[str, nn.Parameter]:
    """The biases ``train_biases=which`` trains: ``none`` → {}, ``rgb`` → every ``ToRGB.bias``
    (``[1, 3, 1, 1]``), ``all`` → those and every ``StyledConv.activate.bias`` (``[C]``); by state-dict name."""
    if which not in ("none", "rgb", "all"):
        raise ValueError(f"lfsgan: train_biases must be none, rgb or all, got {which!r}")
    out: dict[str, nn.Parameter] = {}
    for name, module in G.named_modules():
        if isinstance(module, ToRGB) and which != "none":
            out[f"{name}.bias"] = module.bias
        elif isinstance(module, StyledConv) and which == "all":
            out[f"{name}.activate.bias"] = module.activate.bias
    return out


def salted(seed: int, salt: int) -> int:
    """The seed for one purpose (``salt``) of one task seed."""
    return (int(seed) * 1_000_003 + salt) % 2**63


def seeded(seed: int, salt: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for one purpose (``salt``) of one task seed."""
    return torch.Generator().manual_seed(salted(seed, salt))


def patch_feature_index(size: int) -> int:
    """Index into ``D.convs`` of the block whose output resolution is ``clamp(size/8, 8, 32)``.

    ``D.convs[k]`` outputs ``size / 2^k`` (k = 0 is fromRGB). 256 → 3 (32×32), 32 → 2 (8×8).
    """
    target = min(32, max(8, size // 8))
    target = min(target, size)
    return (size // target).bit_length() - 1


def make_patch_head(channels: int) -> nn.Module:
    """CDC's patch head: 3×3 equalised conv ``C → 1`` followed by bias + scaled leaky ReLU."""
    return ConvLayer(channels, 1, 3)


class LFSGAN(Method):
    name = "lfsgan"
    #: task s = source + task s's own state
    isolates_tasks = True
    uses_ema = False

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)  # LeFT, mode-seeking and CDC options: $defs/options_lfsgan
        self.adapters: dict[str, nn.Module] = {}
        self.biases: dict[str, nn.Parameter] = {}  # the source biases this task trains (train_biases)
        self.patch_head: nn.Module | None = None
        self.patch_index: int | None = None
        self.anchors: torch.Tensor | None = None  # [n_anchors, style_dim]
        self.lpips_model: nn.Module | None = None  # set by the caller, or built lazily
        self.last_info: dict[str, float] = {}
        self._ms_gen: torch.Generator | None = None
        self._real_features = RealFeatureCache()  # LPIPS features of the task's few real shots

    # --- G with LeFT -----------------------------------------------------------------------------
    def attach_left(self, G: nn.Module, seed: int) -> None:
        """Frozen source weights + fresh LeFT modulators on every adaptable layer of ``G``."""
        o, gen = self.options, seeded(seed, SALT_LEFT)
        G.requires_grad_(False)
        self.adapters = attach_adapters(
            G, lambda name, layer: left_for_layer(layer, o["rank"], o["use_add"], o["use_act"], o["init"],
                                                  o["init_noise"], gen))
        self.biases = task_biases(G, o["train_biases"])
        for p in self.biases.values():
            p.requires_grad_(True)

    def setup(self, G: nn.Module, D: nn.Module, ctx: TaskContext) -> None:
        """Source G (frozen) + fresh LeFT; source D; fresh patch head and anchors (from ``ctx.seed``)."""
        detach_adapters(G)
        G.load_state_dict(ctx.source_g)
        D.load_state_dict(ctx.source_d)
        self.attach_left(G, ctx.seed)
        self.anchors = torch.randn(self.options["n_anchors"], G.style_dim, generator=seeded(ctx.seed, SALT_ANCHORS))
        self._ms_gen = seeded(ctx.seed, SALT_MS)
        self.patch_head, self.patch_index = None, None
        if self.options["patch_d"]:
            self.patch_index = patch_feature_index(D.size)
            device = next(D.parameters()).device
            with torch.no_grad():
                channels = self._d_features(D, torch.zeros(1, 3, D.size, D.size, device=device)).shape[1]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(salted(ctx.seed, SALT_HEAD))
                self.patch_head = make_patch_head(channels).to(device)

    def generator_parameters(self, G: nn.Module) -> Iterable[nn.Parameter]:
        if not self.adapters:
            raise RuntimeError("lfsgan: setup() must run before generator_parameters()")
        return [*adapter_parameters(self.adapters), *self.biases.values()]

    def extra_discriminator_modules(self) -> nn.Module | None:
        return self.patch_head

    # --- anchors / patch D -----------------------------------------------------------------------
    def is_anchor_step(self, step: int) -> bool:
        return self.options["patch_d"] and step % self.options["anchor_every"] == 0

    def sample_latents(self, step: int, batch: int, G: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
        """Anchor step: ``[z_a[idx] + anchor_std · ε]`` (one latent, no mixing); else the default."""
        if not self.is_anchor_step(step):
            return super().sample_latents(step, batch, G, generator)
        if self.anchors is None:
            raise RuntimeError("lfsgan: setup() must run before sample_latents()")
        idx = torch.randint(len(self.anchors), (batch,), generator=generator)
        eps = torch.randn(batch, G.style_dim, generator=generator)
        z = self.anchors[idx] + self.options["anchor_std"] * eps  # [B, style_dim]
        return [z.to(next(G.parameters()).device)]

    def _d_features(self, D: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """CDC's patch feature: the main branch ``conv2(conv1(x))`` of ``D.convs[patch_index]``,
        before its residual add (the fromRGB output when the index is 0), running only the blocks
        up to it."""
        blocks = list(D.convs)[: self.patch_index + 1]
        x = images
        for block in blocks[:-1]:
            x = block(x)
        tap = blocks[-1]
        if isinstance(tap, ResBlock):
            return tap.conv2(tap.conv1(x))  # [B, C, h, w]
        return tap(x)

    def discriminate(self, D: nn.Module, images: torch.Tensor, step: int) -> torch.Tensor:
        """Image logits ``[B, 1]`` on anchor steps (or without ``patch_d``), else patch logits ``[B, 1, h, w]``."""
        if not self.options["patch_d"] or self.is_anchor_step(step):
            return D(images)
        if self.patch_head is None:
            raise RuntimeError("lfsgan: setup() must run before discriminate()")
        return self.patch_head(self._d_features(D, images))

    # --- mode seeking ----------------------------------------------------------------------------
    def _lpips(self, device: torch.device) -> nn.Module:
        if self.lpips_model is None:
            from lfsgan.metrics import make_lpips

            self.lpips_model = make_lpips(
                net="vgg", backbone_weights=self.options["lpips_backbone_weights"],
                allow_random_backbone=self.options["lpips_allow_random_backbone"], device=str(device))
        return self.lpips_model.to(device)

    def _mode_seeking_on(self) -> bool:
        return self.options["mode_seeking"] != "off" and self.options["ms_weight"] != 0

    def _ms_latents(self, G: nn.Module, real: torch.Tensor) -> torch.Tensor:
        """The mode-seeking batch's ``z [ms_factor · B, style_dim]``, from the method's own stream (§1.6)."""
        if self._ms_gen is None:
            raise RuntimeError("lfsgan: setup() must run before generator_loss_terms()")
        n = self.options["ms_factor"] * real.shape[0]
        return torch.randn(n, G.style_dim, generator=self._ms_gen).to(real.device)  # [N, style_dim]

    def extra_latents(self, G: nn.Module, real: torch.Tensor, step: int) -> torch.Tensor | None:
        return self._ms_latents(G, real) if self._mode_seeking_on() else None

    def generator_loss_terms(self, G: nn.Module, D: nn.Module, real: torch.Tensor, step: int,
                             extra: ExtraSamples | None = None) -> dict[str, torch.Tensor]:
        """``{"mode_seeking": ms_weight · L_ms}`` on ``ms_factor · B`` fresh samples (§1.6): ``extra`` when
        the trainer drew them beside the adversarial fakes, else drawn here (``w`` broadcast to every
        layer, random noise)."""
        if not self._mode_seeking_on():
            return {}
        if extra is None:
            _, extra = synthesize(G, [], None, self._ms_latents(G, real))
        lpips_model = self._lpips(real.device)
        clusters = assign_clusters(extra.images, real, lpips_model,
                                   self._real_features.features(lpips_model, real))  # [N]
        # d(w_i, w_j) on w itself: the broadcast ws repeats it n_latent times, the same mean distance. The
        # distances in float32 also when the step runs under bfloat16 autocast (a no-op in float32)
        loss, self.last_info = mode_seeking_loss(extra.z, extra.w.float(), [f.float() for f in extra.feats],
                                                 extra.images.float(), clusters, real.shape[0], self.options["mode_seeking"])
        return {"mode_seeking": self.options["ms_weight"] * loss}

    # --- storage ---------------------------------------------------------------------------------
    def task_state(self, G: nn.Module, D: nn.Module) -> dict[str, Any]:
        state = {"left": adapter_state(self.adapters)}
        if self.biases:
            state["biases"] = {k: p.detach().cpu().clone() for k, p in self.biases.items()}
        return state

    def rebuild(self, G: nn.Module, source_g: dict[str, torch.Tensor], states: list[dict[str, Any]]) -> nn.Module:
        """Task ``len(states)-1`` = frozen source + that task's LeFT tensors (tasks are independent)."""
        detach_adapters(G)
        G.load_state_dict(source_g)
        if not states:
            return G
        if "left" not in states[-1]:
            raise KeyError(f"lfsgan: stored task state has keys {sorted(states[-1])}, expected 'left' "
                           "(was it written by another method?)")
        self.attach_left(G, seed=0)
        load_adapter_state(self.adapters, states[-1]["left"], where=f"lfsgan task {len(states) - 1} state")
        stored = states[-1].get("biases", {})
        if sorted(stored) != sorted(self.biases):
            raise KeyError(f"lfsgan task {len(states) - 1} state: stored biases {sorted(stored)} but train_biases="
                           f"{self.options['train_biases']!r} expects {sorted(self.biases)}")
        with torch.no_grad():
            for name, value in stored.items():
                self.biases[name].copy_(value)
        return G

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "patch_feature_index": self.patch_index}
