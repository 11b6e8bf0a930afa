"""matplotlib figures (PNG): forgetting heatmaps, metrics along the task sequence, sample mosaic,
same-latent grids."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from lfsgan.io import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_forgetting(matrices: dict[tuple[str, str], pd.DataFrame], metrics: list[str], path: str | Path) -> None:
    """Heatmap grid: rows = methods, columns = metrics; cell (t, s) = metric of task s after task t."""
    methods = sorted({m for m, _ in matrices})
    fig, axes = plt.subplots(
        len(methods), len(metrics), figsize=(3.8 * len(metrics), 3.2 * len(methods)), squeeze=False,
        layout="constrained",
    )
    for i, method in enumerate(methods):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            mat = matrices.get((method, metric))
            if mat is None:
                ax.axis("off")
                continue
            values = mat.to_numpy(dtype=float)
            im = ax.imshow(values, cmap="viridis_r" if metric in ("fid", "kid_mean") else "viridis")
            for (r, c), v in np.ndenumerate(values):
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
            ax.set_xticks(range(len(mat.columns)), mat.columns, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(mat.index)), [f"after {t}" for t in mat.index], fontsize=7)
            if j > 0:
                ax.set_yticklabels([])
            ax.set_title(f"{method}: {metric}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046).ax.tick_params(labelsize=6)
    fig.suptitle("Forgetting matrix: metric of task (column) after learning task (row)", fontsize=10)
    _save(fig, path)


def plot_along_tasks(df: pd.DataFrame, metrics: list[str], path: str | Path) -> None:
    """Each metric of the task just learnt (s = t), along the sequence, one line per method."""
    diag = df[df["after_task"] == df["task"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3), squeeze=False, layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        for method, g in diag.groupby("method"):
            g = g.sort_values("task_index")
            ax.plot(g["task"], g[metric], marker="o", label=method)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
    fig.suptitle("Metric of each task right after learning it", fontsize=10)
    _save(fig, path)


def sample_mosaic(grids: dict[tuple[str, str], str | Path], methods: list[str], tasks: list[str], path: str | Path) -> None:
    """Sample grids arranged as rows = methods, columns = tasks."""
    fig, axes = plt.subplots(
        len(methods), len(tasks), figsize=(2.4 * len(tasks), 2.4 * len(methods)), squeeze=False, layout="constrained"
    )  # constrained: the title stays next to the grids however many rows (the study has 24)
    for i, method in enumerate(methods):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if (method, task) in grids:
                ax.imshow(np.asarray(Image.open(grids[(method, task)]).convert("RGB")))
            if i == 0:
                ax.set_title(task, fontsize=9)
            if j == 0:
                ax.set_ylabel(method, fontsize=9)
    fig.suptitle("Samples after the last task", fontsize=10)
    _save(fig, path)


def same_latent_grid(rows: list[tuple[str, np.ndarray]], path: str | Path, title: str) -> None:
    """One row of images per generator, column ``j`` of every row drawn from the same latent ``z_j``.

    ``rows``: ``(label, uint8 images [K, 3, H, W])``, the source's row first by convention.
    """
    k = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(4.0, 0.9 * k) + 1.0, 0.9 * len(rows) + 0.5), squeeze=False,
                             layout="constrained")
    for ax, (label, images) in zip(axes[:, 0], rows):
        strip = np.concatenate([im.transpose(1, 2, 0) for im in images], axis=1)  # [H, K·W, 3]
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_r_gamma(table: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """Ito et al.'s R(γ) (lfsgan.permute.diagnostics.r_gamma): left, the network total against γ
    per merge method (mean over pairs of members); right, per layer at the largest γ."""
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    total = table[table["layer"] == "ALL"].groupby(["method", "gamma"], sort=False)["r"].mean()
    for method, r in total.groupby(level=0, sort=False):
        ax_t.plot(r.index.get_level_values("gamma"), r.values, marker="o", label=method)
    ax_t.set_xlabel("γ (σ ≥ γ σ_1)")
    ax_t.set_ylabel("R(γ), all layers")
    ax_t.set_ylim(min(-0.05, float(total.min()) - 0.05), 1.05)
    ax_t.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    ax_t.set_title(title, fontsize=9)
    g_max = table["gamma"].max()
    layers = table[(table["layer"] != "ALL") & (table["gamma"] == g_max)]
    per_layer = layers.groupby(["method", "layer"], sort=False)["r"].mean().unstack(0)
    per_layer.plot.bar(ax=ax_l, width=0.8, fontsize=6)
    ax_l.set_title(f"per layer, γ = {g_max:g}", fontsize=9)
    ax_l.set_ylabel("R(γ)")
    ax_l.legend(fontsize=7)
    _save(fig, path)


def plot_quality(quality: pd.DataFrame, path: str | Path) -> None:
    """One bar chart per generator and domain read out: the digit histogram of its confident
    samples (share of confident samples per digit), titled with the confident share, the share in
    the right domain, the digits covered, the same-latent correspondence, the memorised share and, in red, COLLAPSED."""
    rows = quality[quality["skipped"] == ""] if "skipped" in quality else quality.iloc[0:0]
    n = max(1, len(rows))
    cols = min(4, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3.4 * cols, 2.4 * ((n + cols - 1) // cols)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    if rows.empty:
        axes[0, 0].text(0.5, 0.5, "no quality read-out\n(see summary.md)", ha="center", va="center")
    for ax, r in zip(axes.flat, rows.itertuples()):
        ax.axis("on")
        hist = np.asarray(json.loads(r.digit_histogram), dtype=float)
        share = hist / hist.sum() if hist.sum() else hist
        ax.bar(np.arange(len(hist)), share, color="tab:red" if r.collapsed else "tab:blue")
        ax.set_xticks(np.arange(len(hist)))
        ax.set_ylim(0, 1)
        title = f"{r.generator}\n{r.domain}: conf {r.confident_share:.0%}, domain {r.domain_share:.0%}"
        parts = []  # a third line: on two, the titles of neighbouring panels overlap
        if r.coverage is not None and not pd.isna(r.coverage):
            parts.append(f"covers {int(r.coverage)}/{int(r.coverage_of)}")
        if getattr(r, "correspondence", None) is not None and not pd.isna(r.correspondence):
            parts.append(f"same-latent {r.correspondence:.2f}")
        if r.memorised_share is not None and not pd.isna(r.memorised_share):
            parts.append(f"memorised {r.memorised_share:.0%}")
        title += "\n" + ", ".join(parts) if parts else ""
        ax.set_title(title + ("\nCOLLAPSED" if r.collapsed else ""), fontsize=8, color="tab:red" if r.collapsed else "black")
    _save(fig, path)
