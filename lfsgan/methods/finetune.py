"""Fine-tuning / TGAN (Wang et al., ECCV 2018): all of G and D train; the whole G is stored per task.

Run over a task sequence it chains: task t starts from task t−1's generator (and forgets earlier
tasks). These are exactly the defaults of :class:`~lfsgan.methods.base.Method`; this module only
names the method (its options: ``$defs/options_finetune`` in the config schema) and keeps an EMA
generator, as the few-shot GAN loops it comes from do (rosinality's ``accumulate`` in CDC's and
EWC's code bases): the stored task generator is the EMA one. EWC inherits both. The discriminator
starts from the source's at every task (only generators are stored per task).
"""

from __future__ import annotations

from .base import Method


class FineTune(Method):
    name = "finetune"
    uses_ema = True
