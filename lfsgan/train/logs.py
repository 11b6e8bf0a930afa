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
    """Appends one row per logged step to ``losses.csv`` and ``metrics.jsonl`` in ``out_dir``, and keeps
    every row in memory so that a training checkpoint carries the log up to its step (:meth:`state`).

    ``restored`` (the :meth:`state` stored in the checkpoint a run resumes from) rewrites both files
    from the checkpoint's rows: rows of steps after the checkpoint (written before the interruption)
    are dropped, and rows deleted meanwhile (Snakemake removes a failed job's declared outputs) come
    back, so the log of a resumed run equals that of an uninterrupted one. Without it, both files
    start empty.
    """

    def __init__(self, out_dir: Path, restored: dict[str, list] | None = None):
        self.csv_path = Path(out_dir) / "losses.csv"
        self.jsonl_path = Path(out_dir) / "metrics.jsonl"
        self.csv_rows: list[list[str]] = [list(r) for r in (restored or {}).get("csv", [])]
        self.jsonl_lines: list[str] = list((restored or {}).get("jsonl", []))
        with atomic_path(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            w.writerows(self.csv_rows)
        with atomic_path(self.jsonl_path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in self.jsonl_lines))

    def write(self, record: dict[str, Any]) -> None:
        row = [str(_fmt(record.get(k, ""))) for k in CSV_COLUMNS]
        line = json.dumps({k: v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))})
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(row)
        with open(self.jsonl_path, "a") as f:
            f.write(line + "\n")
        self.csv_rows.append(row)
        self.jsonl_lines.append(line)

    def state(self) -> dict[str, list]:
        """Every row so far (``{"csv": [[...]], "jsonl": ["..."]}``, JSON), for the checkpoint's meta."""
        return {"csv": [list(r) for r in self.csv_rows], "jsonl": list(self.jsonl_lines)}


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def image_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """``images`` ``[N, 3, H, W]`` in [-1, 1] as one uint8 ``[H', W', 3]`` grid: ``torchvision.utils.save_image``'s
    ``make_grid(nrow, padding=2, normalize=True, value_range=(-1, 1))`` and rounding, byte for byte, without
    importing torchvision (~2.5 s: it imports ``torch._dynamo``), which a sampling job otherwise pays for one PNG."""
    x = images.detach().float().cpu().clamp(-1, 1).sub(-1).div(2)  # [N, 3, H, W] in [0, 1]
    n, c, h, w = x.shape
    if n == 1:
        grid = x[0]
    else:
        cols = min(nrow, n)
        rows = int(math.ceil(n / cols))
        grid = x.new_zeros((c, (h + padding) * rows + padding, (w + padding) * cols + padding))
        for k in range(n):
            y0, x0 = (k // cols) * (h + padding) + padding, (k % cols) * (w + padding) + padding
            grid[:, y0 : y0 + h, x0 : x0 + w] = x[k]
    return grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save ``images`` ``[N, 3, H, W]`` in [-1, 1] as one PNG grid (``nrow`` defaults to ~sqrt(N))."""
    from PIL import Image

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    with atomic_path(path) as tmp:
        Image.fromarray(image_grid(images, nrow).numpy()).save(tmp, format="png")
