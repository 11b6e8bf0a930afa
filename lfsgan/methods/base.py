"""The interface every lifelong few-shot method implements.

One training loop (:mod:`lfsgan.train.loop`) serves source pretraining and every method. A method
only says *what* trains, which extra loss terms the generator gets, how latents are drawn and how
the discriminator is read on a step, what is stored per task, and how a task's generator is
rebuilt from the source and the stored per-task states. The defaults below are plain fine-tuning
(TGAN): all of G and D train, nothing extra, the whole G is stored.

Adding a method = one module under ``lfsgan/methods/`` subclassing :class:`Method`, registered in
``lfsgan/methods/__init__.py`` (``METHODS``), plus its name in the config schema's ``kind`` enum;
options beyond ``style_mixing`` (keys, ranges, defaults) go there too, as ``$defs/options_<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from lfsgan.config import method_options


@dataclass
class TaskContext:
    """What the loop hands a method before a task starts."""

    task_index: int  # 0-based position in the task sequence
    task_name: str
    source_g: dict[str, torch.Tensor]  # the source generator's state_dict (rosinality keys)
    source_d: dict[str, torch.Tensor]  # the source discriminator's state_dict
    previous: list[dict[str, Any]] = field(default_factory=list)  # stored states of tasks 0..t-1 (same method)
    real_shots: torch.Tensor | None = None  # float [-1,1] [n_shots, 3, H, W]
    device: torch.device = torch.device("cpu")
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. {"fisher": {...}} for EWC


@dataclass
class ExtraSamples:
    """Generator samples a method's loss terms need beside the step's adversarial fakes (LFS-GAN's
    mode-seeking batch): their ``z [N, style_dim]``, ``w = mapping(z) [N, style_dim]`` (broadcast to every
    layer, no mixing), ``images [N, 3, H, W]`` and ``feats``, every StyledConv output ``[N, C, r, r]``
    (:meth:`~lfsgan.models.Generator.synthesis`' ``return_features``)."""

    z: torch.Tensor
    w: torch.Tensor
    images: torch.Tensor
    feats: list[torch.Tensor]


def synthesize(G: nn.Module, latents: list[torch.Tensor], inject_index: int | None, extra_z: torch.Tensor,
               G_forward: nn.Module | None = None) -> tuple[torch.Tensor | None, ExtraSamples]:
    """The step's adversarial fakes and a method's extra samples in **one** mapping and one synthesis call.

    ``latents``: the fakes' 1 or 2 (style mixing, cut at ``inject_index``) tensors ``[B, style_dim]``, or
    ``[]`` for the extra samples alone; ``extra_z [N, style_dim]``. Every layer of G treats each row on
    its own, so this computes what two calls would, up to the order of the random noise draws (one
    ``[B + N, 1, r, r]`` draw per layer instead of two). At the demo's batch of 4 on a CPU it makes
    LFS-GAN's whole step 0–16 % faster (three runs of ``benchmarks/methods_step.py``, ``lfsgan-two-pass``).
    ``G_forward``: the module whose forward runs the synthesis (a compiled G), ``G`` by default.
    Returns (fakes ``[B, 3, H, W]`` or None, :class:`ExtraSamples`).
    """
    b = latents[0].shape[0] if latents else 0
    w = G.mapping(torch.cat([*latents, extra_z]))  # [len(latents)·B + N, style_dim]
    w_extra = w[len(latents) * b:]  # [N, style_dim]
    ws = G.make_ws([w_extra])  # [N, n_latent, style_dim]
    if latents:
        ws = torch.cat([G.make_ws(list(w[: len(latents) * b].split(b)), inject_index), ws])  # [B + N, ...]
    images, feats = (G_forward or G)(ws, input_is_latent=True, return_features=True)  # noise_mode random
    fakes = images[:b] if latents else None
    return fakes, ExtraSamples(extra_z, w_extra, images[b:], [f[b:] for f in feats])


class Method:
    """Plain fine-tuning semantics; subclasses override what differs."""

    name = "finetune"
    #: whether the loop keeps an EMA generator during this method's task training
    uses_ema = False
    #: True when every task keeps its own state that later tasks never change (adapter methods):
    #: task s "after task t" is then rebuilt from states 0..s; False for sequential methods, where
    #: it is the generator stored after task t.
    isolates_tasks = False

    def __init__(self, options: dict[str, Any] | None = None):
        #: the config's options for this kind, checked and completed from the schema's defaults
        self.options = method_options(self.name, options, source=f"method '{self.name}'")
        self.style_mixing = float(self.options["style_mixing"])

    @property
    def base(self) -> str:
        """The source generator every task starts from (``TaskContext.source_g``): ``"g_ema"``, or
        ``"g"`` for a method with ``options.base: g``. Samples are always rebuilt on ``g_ema``."""
        return self.options.get("base", "g_ema")

    # --- set-up -----------------------------------------------------------------------------
    def setup(self, G: nn.Module, D: nn.Module, ctx: TaskContext) -> None:
        """Prepare G and D for task ``ctx.task_index`` (load weights, attach adapters, freeze).

        Default: G starts from the previous task's stored generator (or the source), D from the
        source discriminator.
        """
        G.load_state_dict(ctx.previous[-1]["g"] if ctx.previous else ctx.source_g)
        D.load_state_dict(ctx.source_d)

    def generator_parameters(self, G: nn.Module) -> Iterable[nn.Parameter]:
        return G.parameters()

    def discriminator_parameters(self, D: nn.Module) -> Iterable[nn.Parameter]:
        return D.parameters()

    def extra_discriminator_modules(self) -> nn.Module | None:
        """Modules trained with D's optimiser (e.g. patch heads); None if there are none."""
        return None

    # --- per step ---------------------------------------------------------------------------
    def sample_latents(self, step: int, batch: int, G: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
        """Latents for a fake batch: one tensor, or two for style mixing (StyleGAN2 default)."""
        device = next(G.parameters()).device
        if self.style_mixing > 0 and torch.rand((), generator=generator).item() < self.style_mixing:
            z = torch.randn(2, batch, G.style_dim, generator=generator).to(device)
            return list(z.unbind(0))
        return [torch.randn(batch, G.style_dim, generator=generator).to(device)]

    def discriminate(self, D: nn.Module, images: torch.Tensor, step: int) -> torch.Tensor:
        """Logits the adversarial losses use on this step: ``[B, 1]`` or a patch map ``[B, 1, h, w]``."""
        return D(images)

    def extra_latents(self, G: nn.Module, real: torch.Tensor, step: int) -> torch.Tensor | None:
        """Latents ``z [N, style_dim]`` of the extra samples this step's generator terms need (no style
        mixing, random noise), or None. The trainer draws them in the same synthesis call as the step's
        adversarial fakes (:func:`synthesize`: one G pass instead of two) and hands them to
        :meth:`generator_loss_terms` as ``extra``."""
        return None

    def generator_loss_terms(self, G: nn.Module, D: nn.Module, real: torch.Tensor, step: int,
                             extra: ExtraSamples | None = None) -> dict[str, torch.Tensor]:
        """Extra generator loss terms (already weighted), added to the adversarial loss. ``extra``: the
        samples of :meth:`extra_latents`' latents when the trainer drew them (else None)."""
        return {}

    # --- storage ----------------------------------------------------------------------------
    def task_state(self, G: nn.Module, D: nn.Module) -> dict[str, Any]:
        """The smallest set of tensors that rebuilds this task's generator (given the source and
        the earlier tasks' states)."""
        return {"g": {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}}

    def rebuild(self, G: nn.Module, source_g: dict[str, torch.Tensor], states: list[dict[str, Any]]) -> nn.Module:
        """Turn ``G`` into task ``len(states) - 1``'s generator, from the source and the stored
        states of tasks ``0..t`` of this method, in order."""
        G.load_state_dict(states[-1]["g"] if states else source_g)
        return G

    def meta(self) -> dict[str, Any]:
        return {"method": self.name, "options": self.options}
