"""Training: one loop for source pretraining and for every method's tasks.

- :func:`train` (:mod:`.loop`): the run — resumable checkpoints, loss log, sample grids, final outputs.
- :class:`Trainer` (:mod:`.step`): one StyleGAN2 iteration (D, lazy R1, G + method terms, lazy path
  length, EMA); :class:`NonFiniteError` when a loss or weight turns NaN/inf.
- :class:`TrainConfig` (:mod:`.config`): hyperparameters, ``from_dict`` rejects unknown keys.
- :mod:`.losses`: non-saturating logistic losses, R1, path-length penalty. :mod:`.ema`: ``accumulate``.
- :func:`build_models`, :func:`load_generator` (:mod:`.checkpoint`): models from config / ``final.pt``.
- :mod:`.distributed`: data-parallel training under torchrun (a :class:`~.distributed.Shard` per
  process: its rows of each batch, gradients averaged over the ranks, rank 0 writes).

Modules: ``config``, ``losses``, ``ema``, ``optim`` (lazy-regularised Adam), ``state`` (tensor/JSON
split of optimiser and sampler state), ``sampler`` (the data protocol), ``logs``, ``checkpoint``,
``distributed``, ``fastpath`` (the step's optional bfloat16 / channels-last / compiled paths), ``step``, ``loop``.
"""

from lfsgan.train.checkpoint import build_models, load_generator
from lfsgan.train.config import TrainConfig
from lfsgan.train.ema import accumulate, make_ema
from lfsgan.train.loop import train
from lfsgan.train.step import NonFiniteError, Trainer

__all__ = ["NonFiniteError", "TrainConfig", "Trainer", "accumulate", "build_models", "load_generator", "make_ema", "train"]
