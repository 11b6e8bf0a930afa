"""StyleGAN2 generator and discriminator in pure PyTorch, with rosinality's state_dict keys.

* :class:`Generator`, :class:`Discriminator` — any power-of-two size 8…1024.
* :class:`EqualLinear`, :class:`EqualConv2d`, :class:`ModulatedConv2d` — the weight layers; each
  takes an optional ``adapter`` (``layer.set_adapter(m)``) that rewrites ``(weight, bias)``.
* :func:`iter_adaptable` — ``(name, layer)`` for every such layer, in a fixed order.
"""

from .discriminator import Discriminator
from .generator import Generator, channel_table
from .layers import EqualConv2d, EqualLinear, ModulatedConv2d, iter_adaptable
from .ops import fused_leaky_relu, upfirdn2d

__all__ = [
    "Generator",
    "Discriminator",
    "EqualLinear",
    "EqualConv2d",
    "ModulatedConv2d",
    "iter_adaptable",
    "channel_table",
    "upfirdn2d",
    "fused_leaky_relu",
]
