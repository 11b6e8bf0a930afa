"""One StyleGAN2 training iteration, in rosinality's order, for source pretraining and every method.

Iteration ``i`` (0-based):

1. D step: ``L_D = E softplus(-D(x)) + E softplus(D(G(z)))``.
2. Lazy R1 when ``i % r1_every == 0``: ``(gamma / 2) * r1_every * E ||grad_x D(x)||^2`` on the reals.
3. G step: ``L_G = E softplus(-D(G(z))) + sum(method.generator_loss_terms(...))`` (a method's extra
   samples, ``method.extra_latents``, come from the same G call as the fakes ``G(z)``), plus
   ``mode_seeking_weight * L_ms`` on the same fakes when that weight is set (MSGAN, see
   :func:`lfsgan.train.losses.mode_seeking_penalty`; used by the demo's source pretraining).
4. Lazy path-length regularisation when ``i % path_reg_every == 0``:
   ``path_reg_weight * path_reg_every * E (||J_w^T y|| - a)^2`` on ``batch // path_batch_shrink`` fakes.
5. EMA: ``theta_ema <- beta theta_ema + (1 - beta) theta`` (when kept).

Every random draw comes from a checkpointed source: latents, style-mixing cut points and the
path-length probe ``y`` from the trainer's own ``torch.Generator``s; a method's own draws from the
``torch.Generator`` attributes it keeps (see :meth:`Trainer.generators`); per-layer noise from torch's
global RNG (see :func:`lfsgan.train.state.global_rng_state`); real batches from the sampler.

Fast paths (:mod:`lfsgan.train.fastpath`, all off by default): steps 1 and 3 (with the method's own
generator terms) may run under bfloat16 autocast and through ``torch.compile``d G and D, in
channels-last memory order; R1 and the path-length term always run the eager modules in float32.

Data-parallel (a :class:`lfsgan.train.distributed.Shard` of several processes): ``real`` holds this
rank's rows of the batch; latents, the style-mixing cut and the path-length probe are drawn for the
whole batch and this rank keeps its rows; the loop averages gradients over the ranks before every
optimiser step (see :mod:`lfsgan.train.distributed`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from lfsgan.methods.base import ExtraSamples, Method, synthesize
from lfsgan.train import fastpath
from lfsgan.train.augment import diff_augment, parse_policy
from lfsgan.train.config import TrainConfig
from lfsgan.train.distributed import SINGLE, Shard
from lfsgan.train.ema import accumulate, make_ema
from lfsgan.train.losses import (
    d_logistic_loss,
    g_nonsaturating_loss,
    mode_seeking_penalty,
    path_length_penalty,
    r1_penalty,
)
from lfsgan.train.optim import lazy_adam


class NonFiniteError(FloatingPointError):
    """A loss or a parameter became NaN/inf; training stops before the bad state is saved."""


def derived_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for the named random ``stream`` of a run seeded with ``seed``."""
    digest = hashlib.sha256(f"lfsgan:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _set_requires_grad(params: list[nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def _check_finite(name: str, value: torch.Tensor, step: int) -> None:
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"loss '{name}' is {value.detach().float().cpu().tolist()} at step {step}")


class Trainer:
    """Holds G, D, the EMA generator, both optimisers and the random streams; :meth:`step` runs one iteration.

    ``method=None`` is source pretraining: all of G and D train, an EMA generator is kept, fakes use
    style mixing with probability ``cfg.style_mixing``. With a method, its hooks decide what trains,
    how latents are drawn and D is read, and which extra G terms are added; call ``method.setup``
    *before* building the trainer (optimisers are built from the parameters it then reports).
    """

    def __init__(self, G: nn.Module, D: nn.Module, cfg: TrainConfig, method: Method | None = None, shard: Shard = SINGLE):
        self.G, self.D, self.cfg, self.shard = G, D, cfg, shard
        self.default = Method({"style_mixing": cfg.style_mixing})  # source latents and path-reg latents
        self.method = method if method is not None else self.default
        self.extra = self.method.extra_discriminator_modules()
        device = next(G.parameters()).device
        self.fast = fastpath.resolve(cfg, device)  # float32 eager unless cfg asks for more
        fastpath.prepare_modules(self.fast, G, D, self.extra)
        self.G_step, self.D_step = fastpath.compiled(self.fast, G), fastpath.compiled(self.fast, D)  # the D/G steps' forwards
        self.g_params = [p for p in self.method.generator_parameters(G)]
        frozen = {id(p) for p in D.first_blocks_parameters(cfg.freeze_d)}  # FreezeD
        self.d_params = [p for p in self.method.discriminator_parameters(D) if id(p) not in frozen]
        if self.extra is not None:
            self.d_params += list(self.extra.parameters())
        self.g_optim = lazy_adam(self.g_params, cfg.lr_g, cfg.path_reg_every, cfg.path_reg_weight > 0, cfg.adam_impl)
        self.d_optim = lazy_adam(self.d_params, cfg.lr_d, cfg.r1_every, cfg.r1_gamma > 0, cfg.adam_impl)
        self.g_ema = make_ema(G) if (method is None or method.uses_ema) else None
        self.ema_decay = cfg.resolved_ema_decay()
        self.latent_gen = torch.Generator().manual_seed(derived_seed(cfg.seed, "latents"))
        self.path_gen = torch.Generator().manual_seed(derived_seed(cfg.seed, "path_noise"))
        self.augment = parse_policy(cfg.augment)  # DiffAugment on everything D reads; () = off
        self.augment_gen = torch.Generator().manual_seed(derived_seed(cfg.seed, "augment")) if self.augment else None
        self.mean_path_length = torch.zeros((), device=device)  # running mean a of Eq. 4

    # --- what a checkpoint holds -------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"g": self.G, "d": self.D}
        if self.g_ema is not None:
            mods["g_ema"] = self.g_ema
        if self.extra is not None:
            mods["extra"] = self.extra
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g_optim": self.g_optim, "d_optim": self.d_optim}

    def generators(self) -> dict[str, torch.Generator]:
        """Every random stream a checkpoint must hold: the trainer's own, and any ``torch.Generator``
        the method keeps as an attribute (e.g. for its extra loss terms), as ``method.<attr>``."""
        gens = {"latents": self.latent_gen, "path_noise": self.path_gen}
        if self.augment_gen is not None:
            gens["augment"] = self.augment_gen
        gens.update({f"method.{k}": v for k, v in sorted(vars(self.method).items()) if isinstance(v, torch.Generator)})
        return gens

    def sample_generator(self) -> nn.Module:
        """The generator that samples the run's output: the EMA one when kept."""
        return self.g_ema if self.g_ema is not None else self.G

    # --- one iteration -----------------------------------------------------------------------
    def _discriminate(self, D: nn.Module, images: torch.Tensor, step: int) -> torch.Tensor:
        """The method's logits of ``D`` (the module or its compiled forward) on ``images [B, 3, H, W]``,
        DiffAugment-ed first when ``cfg.augment`` is set."""
        if self.augment:
            images = diff_augment(images, self.augment, self.augment_gen, self.shard)
        return self.method.discriminate(D, images, step)

    def _fake(self, method: Method, step: int, batch: int, extra_z: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, list[torch.Tensor], ExtraSamples | None]:
        """Fakes ``[B, 3, H, W]``, the latents (1 or 2 tensors ``[B, style_dim]``) that made them (``B =
        batch``, this rank's rows of the whole batch's draw), and the method's extra samples of ``extra_z``
        (drawn in the same G pass, :func:`~lfsgan.methods.base.synthesize`) or None."""
        latents = [self.shard.rows(z) for z in method.sample_latents(step, batch * self.shard.size, self.G, self.latent_gen)]
        inject = int(torch.randint(1, self.G.n_latent, (), generator=self.latent_gen)) if len(latents) == 2 else None
        if extra_z is None:
            return self.G_step(latents, inject_index=inject), latents, None
        fake, extra = synthesize(self.G, latents, inject, extra_z, self.G_step)
        return fake, latents, extra

    def step(self, step: int, real: torch.Tensor) -> dict[str, Any]:
        """Run iteration ``step`` on the real batch ``real [B, 3, H, W]``; returns the losses (floats)."""
        cfg, G, m, fast = self.cfg, self.G, self.method, self.fast
        D = self.D_step  # the module itself unless compiled; R1 below differentiates twice, so it runs self.D
        real = fast.images(real)
        batch = real.shape[0]
        out: dict[str, Any] = {"step": step, "kimg": (step + 1) * batch * self.shard.size / 1000}

        # 1. discriminator
        _set_requires_grad(self.d_params, True)
        with torch.no_grad(), fast.autocast():
            fake, _, _ = self._fake(m, step, batch)
        with fast.autocast():
            fake_pred = self._discriminate(D, fake, step).float()  # [B, 1] or [B, 1, h, w]
            real_pred = self._discriminate(D, real, step).float()
        d_loss = d_logistic_loss(real_pred, fake_pred)
        _check_finite("d_loss", d_loss, step)
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        out.update(d_loss=d_loss.item(), real_score=real_pred.mean().item(), fake_score=fake_pred.mean().item())

        # 2. lazy R1 on reals
        if cfg.r1_gamma > 0 and step % cfg.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            r1 = r1_penalty(self._discriminate(self.D, real_r1, step), real_r1)
            _check_finite("r1", r1, step)
            self.d_optim.zero_grad(set_to_none=True)
            (cfg.r1_gamma / 2 * r1 * cfg.r1_every).backward()
            self.d_optim.step()
            out["r1"] = r1.item()

        # 3. generator
        _set_requires_grad(self.d_params, False)
        with fast.autocast():  # the fakes and, in the same G pass, a method's extra samples (LFS-GAN: 4·B more)
            fake, latents, extra = self._fake(m, step, batch, m.extra_latents(G, real, step))
            g_loss = g_nonsaturating_loss(self._discriminate(D, fake, step).float())
        _check_finite("g_loss", g_loss, step)
        with fast.autocast():  # a method's own terms (LFS-GAN: LPIPS and the mode-seeking loss on them) too
            terms = m.generator_loss_terms(G, self.D, real, step, extra)
        ms_weight = cfg.mode_seeking_weight_at(step)
        if ms_weight > 0:
            z = torch.cat(latents, 1)  # [B, L]
            ms = mode_seeking_penalty(fake.float(), z, cfg.mode_seeking_pool)  # float32 also after bf16 autocast
            terms = {**terms, "msgan": ms_weight * ms}
        for name, value in terms.items():
            _check_finite(name, value, step)
        g_total = g_loss + sum(terms.values()) if terms else g_loss
        self.g_optim.zero_grad(set_to_none=True)
        g_total.backward()
        self.g_optim.step()
        out.update(g_loss=g_loss.item(), g_extra=float(sum(v.item() for v in terms.values())))
        out.update({name: v.item() for name, v in terms.items()})

        # 4. lazy path-length regularisation
        if cfg.path_reg_weight > 0 and step % cfg.path_reg_every == 0:
            path = self._path_length(step, max(1, batch // cfg.path_batch_shrink))
            self.g_optim.zero_grad(set_to_none=True)
            (cfg.path_reg_weight * cfg.path_reg_every * path).backward()
            self.g_optim.step()
            out.update(path=path.item(), path_length=self.mean_path_length.item())
        _set_requires_grad(self.d_params, True)

        # 5. EMA
        if self.g_ema is not None:
            accumulate(self.g_ema, G, self.ema_decay)
        return out

    def _path_length(self, step: int, batch: int) -> torch.Tensor:
        G = self.G
        latents = [self.shard.rows(z) for z in self.default.sample_latents(step, batch * self.shard.size, G, self.latent_gen)]
        inject = int(torch.randint(1, G.n_latent, (), generator=self.latent_gen)) if len(latents) == 2 else None
        ws = G.make_ws([G.mapping(z) for z in latents], inject)  # [b, n_latent, D]
        if not ws.requires_grad:  # mapping frozen: differentiate w.r.t. ws as a leaf
            ws.requires_grad_(True)
        img = G.synthesis(ws)  # [b, 3, H, W]
        penalty, self.mean_path_length, _ = path_length_penalty(
            img, ws, self.mean_path_length, self.cfg.path_decay, self.path_gen, self.shard
        )
        _check_finite("path", penalty, step)
        return penalty
