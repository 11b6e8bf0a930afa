"""Fine-tuning / TGAN (Wang et al., ECCV 2018): all of G and D train; the whole G is stored per task.

Run over a task sequence it chains: task t starts from task t−1's generator (and forgets earlier
tasks). These are exactly the defaults of :class:`~lfsgan.methods.base.Method`; this module only
names the method and checks its options.
"""

from __future__ import annotations

from typing import Any

from .base import Method
from .options import check_number, resolve_options

class FineTune(Method):
    name = "finetune"
    #: every option this method accepts, with its default
    defaults: dict[str, Any] = {"style_mixing": 0.9}

    def __init__(self, options: dict[str, Any] | None = None):
        opts = resolve_options(self.name, options, self.defaults)
        self.check_options(opts)
        super().__init__(opts)

    def check_options(self, opts: dict[str, Any]) -> None:
        check_number(self.name, "style_mixing", opts["style_mixing"], 0, 1)
