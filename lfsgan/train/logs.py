"""Run outputs a person reads: the loss log (CSV for DVC plots, JSONL with every term) and image grids."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import torch

from lfsgan.io import atomic_path

#: fixed columns of ``losses.csv``; every extra method term is summed into ``g_extra`` there and kept
#: under its own name in ``metrics.jsonl``.
CSV_COLUMNS = ("step", "kimg", "d_loss", "g_loss", "g_extra", "r1", "path", "path_length", "real_score", "fake_score")


class LossLog:
    """Appends one row per logged step to ``losses.csv`` and ``metrics.jsonl`` in ``out_dir``.

    On resume from step ``k`` the rows of steps ``>= k`` (written after the checkpoint, before the
    interruption) are dropped, so a resumed log equals an uninterrupted one.
    """

    def __init__(self, out_dir: Path, resume_step: int | None = None):
        self.csv_path = Path(out_dir) / "losses.csv"
        self.jsonl_path = Path(out_dir) / "metrics.jsonl"
        if resume_step is None:
            self.csv_path.write_text(",".join(CSV_COLUMNS) + "\n")
            self.jsonl_path.write_text("")
        else:
            self._truncate(resume_step)

    def _truncate(self, step: int) -> None:
        rows = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) < step]
        with open(self.csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        lines = []
        if self.jsonl_path.is_file():
            lines = [ln for ln in self.jsonl_path.read_text().splitlines() if ln and json.loads(ln)["step"] < step]
        self.jsonl_path.write_text("".join(ln + "\n" for ln in lines))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore").writerow(
                {k: _fmt(record.get(k, "")) for k in CSV_COLUMNS}
            )
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps({k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}) + "\n")


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save ``images`` ``[N, 3, H, W]`` in [-1, 1] as one PNG grid (``nrow`` defaults to ~sqrt(N))."""
    from torchvision.utils import save_image  # lazy: torchvision is slow to import

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    with atomic_path(path) as tmp:
        save_image(images.detach().float().cpu(), tmp, nrow=nrow, normalize=True, value_range=(-1, 1), format="png")
