"""The inputs of the claims whose sides are not method rows, read from what the workflow's own rules
write: the source Fisher per layer group (rule ``fisher``), the weight change of full-generator task
states per layer group (rule ``train_task``), weight matching per source pair (rules
``match_permutation`` and ``lmc_curve``) and each task's distance from the source (the real sets'
FID features that ``evaluate`` and ``lmc_curve`` keep in the FID cache).

**Layer groups.** Li et al. (2020, EWC) motivate their penalty with a per-layer reading of
StyleGAN's *synthesis* network, ordered from 4×4 to the output resolution: fine-tuned on abundant
data, the last (high-resolution) layers change least, and their Fisher information is largest.
Here ``"last"`` is the synthesis block at the generator's output resolution — in rosinality's
generator the two modulated convolutions ``convs.{2L-2}``, ``convs.{2L-1}`` and ``to_rgbs.{L-1}``
(with their modulation, noise strength and bias) — and ``"rest"`` every earlier synthesis layer
(``input``, ``conv1``, ``to_rgb1`` and the lower-resolution ``convs``/``to_rgbs``). The mapping
network is in neither group: it is not part of that per-layer analysis, and its weights live on
another scale (equalised learning rate ``lr_mlp``). Which resolutions count as "last" beyond the
final block is not recoverable from the paper text available to us; one block is our choice.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from lfsgan.config import REPLICATE_SEP
from lfsgan.fisher import layer_of
from lfsgan.io import load_checkpoint

LAST, REST = "last", "rest"


def layer_group(stage: str, resolution: int, top_resolution: int) -> str | None:
    """``"last"`` (synthesis at the output resolution), ``"rest"`` (earlier synthesis) or ``None`` (mapping, other)."""
    if stage != "synthesis":
        return None
    return LAST if resolution == top_resolution else REST


#: the columns of ``layers.csv`` (:func:`lfsgan.fisher.fisher_summary`) that the groups need
FISHER_COLUMNS = ("stage", "resolution", "n_params", "fisher_mean")


def read_fisher_layers(path: str | Path) -> pd.DataFrame:
    """``layers.csv`` of ``lfsgan fisher``, checked to have :data:`FISHER_COLUMNS` (a ``ValueError`` naming the file)."""
    table = pd.read_csv(path)
    missing = set(FISHER_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: not a Fisher layer table (no columns {sorted(missing)}); rerun `lfsgan fisher`")
    return table


def fisher_by_group(layers: pd.DataFrame) -> dict[str, float]:
    """Mean diagonal Fisher per parameter of each group, ``Σ_ℓ F̄_ℓ n_ℓ / Σ_ℓ n_ℓ`` over its layers, from
    :func:`lfsgan.fisher.fisher_summary`'s table (``layers.csv``: ``fisher_mean`` F̄_ℓ, ``n_params`` n_ℓ)."""
    missing = set(FISHER_COLUMNS) - set(layers.columns)
    if missing:
        raise ValueError(f"Fisher layer table lacks the columns {sorted(missing)}")
    top = int(layers.loc[layers["stage"] == "synthesis", "resolution"].max())
    group = [layer_group(s, int(r), top) for s, r in zip(layers["stage"], layers["resolution"])]
    df = layers.assign(group=group, total=layers["fisher_mean"] * layers["n_params"]).dropna(subset=["group"])
    sums = df.groupby("group")[["total", "n_params"]].sum()
    return {g: float(r.total / r.n_params) for g, r in sums.iterrows()}


def weight_change(task_g: Mapping[str, torch.Tensor], source_g: Mapping[str, torch.Tensor],
                  names: Iterable[str]) -> dict[str, float]:
    """Relative change of each group, ``||θ_task − θ_S||₂ / ||θ_S||₂`` over all parameters ``names`` of its
    layers taken together (stored, i.e. equalised-lr, values; buffers such as noise maps and blur kernels
    are not parameters and are left out by ``names``)."""
    info = {n: layer_of(n) for n in names}
    top = max(res for _, stage, res, _ in info.values() if stage == "synthesis")
    diff2: dict[str, float] = {}
    norm2: dict[str, float] = {}
    for name, (_, stage, res, _) in info.items():
        g = layer_group(stage, res, top)
        if g is None:
            continue
        src = source_g[name].double()
        diff2[g] = diff2.get(g, 0.0) + float((task_g[name].double() - src).pow(2).sum())
        norm2[g] = norm2.get(g, 0.0) + float(src.pow(2).sum())
    return {g: float(np.sqrt(diff2[g] / norm2[g])) for g in diff2 if norm2[g] > 0}


def task_weight_changes(task_files: Iterable[str | Path], source_g: Mapping[str, torch.Tensor],
                        names: Iterable[str]) -> pd.DataFrame:
    """One row per (run, task, group) of every ``task.pt`` that stores a full generator (``"g"``: fine-tuning,
    EWC): ``method, base_method, replicate, task, task_index, group, change`` (:func:`weight_change`
    against the source ``source_g``; for a chained run, task t's generator against the source, not t − 1)."""
    names = list(names)
    rows = []
    for path in task_files:
        tensors, meta = load_checkpoint(path)
        if "g" not in tensors:
            continue
        wf = meta.get("workflow") or {}
        if not {"method", "task", "task_index"} <= set(wf) or set(names) - set(tensors["g"]):
            raise ValueError(f"{path}: not a task state of this model (needs meta 'workflow' and every generator "
                             "parameter); rerun `lfsgan train-task`")
        base = wf["method"].partition(REPLICATE_SEP)[0]
        for group, change in weight_change(tensors["g"], source_g, names).items():
            rows.append({"method": wf["method"], "base_method": base, "replicate": int(wf.get("replicate", 0)),
                         "task": wf["task"], "task_index": wf["task_index"], "group": group, "change": change})
    return pd.DataFrame(rows, columns=["method", "base_method", "replicate", "task", "task_index", "group", "change"])


def pair_table(match: Iterable[str | Path], lmc: Iterable[str | Path] = ()) -> pd.DataFrame:
    """One row per source pair ``a_b`` (its folder name), from ``match.json`` and the ``svd.csv`` beside it
    (written by the same ``lfsgan match`` job) and from ``lmc.json``:

    * ``l2_reduction`` — ``1 − ||W_A − π(W_B)|| / ||W_A − W_B||`` over G's weights (``g_l2_reduction``);
    * ``top_gain``, ``tail_gain`` — matching's gain in the per-index alignment ``(u_i^A·u_i^B)(v_i^A·v_i^B)``,
      ``after − before``, of the top-k and the tail singular pairs, mean over the layers that have a tail;
    * ``r_gain_high``, ``r_gain_low`` — the gain ``R_after(γ) − R_before(γ)`` at the largest and the smallest
      γ of ``permutation.gammas`` (``gamma_high``, ``gamma_low``; absent with a single γ);
    * ``naive_barrier``, ``matched_barrier`` — the FID barrier ``max_λ [M(λ) − ((1−λ) M(0) + λ M(1))]`` of the
      naive and the matched path, and ``barrier_reduction = 1 − matched/naive`` (NaN when naive ≤ 0).
    """
    rows: dict[str, dict] = {}
    for path in match:
        path = Path(path)
        with _fields(path, "lfsgan match"):
            rec = json.loads(path.read_text())
            svd = pd.read_csv(path.parent / "svd.csv").dropna(subset=["align_tail_after", "align_tail_before"])
            row = {"pair": path.parent.name, "l2_reduction": rec["g_l2_reduction"],
                   "top_gain": float((svd["align_top_after"] - svd["align_top_before"]).mean()),
                   "tail_gain": float((svd["align_tail_after"] - svd["align_tail_before"]).mean())}
            gammas = sorted(float(g) for g in rec["gammas"])
            if len(gammas) >= 2:
                for side, g in (("high", gammas[-1]), ("low", gammas[0])):
                    row[f"gamma_{side}"] = g
                    row[f"r_gain_{side}"] = rec[f"g_r_gamma_{g:g}_after"] - rec[f"g_r_gamma_{g:g}_before"]
        rows[row["pair"]] = row
    for path in lmc:
        with _fields(path, "lfsgan lmc"):
            rec = json.loads(Path(path).read_text())
            naive, matched = rec["naive_fid_barrier_linear"], rec["matched_fid_barrier_linear"]
        rows.setdefault(Path(path).parent.name, {"pair": Path(path).parent.name}).update(
            naive_barrier=naive, matched_barrier=matched,
            barrier_reduction=1 - matched / naive if naive > 0 else float("nan"))
    return pd.DataFrame(list(rows.values()))


@contextmanager
def _fields(path: str | Path, verb: str):
    """A missing key or column of ``path`` as one ``ValueError`` naming the file and the verb that writes it."""
    try:
        yield
    except KeyError as e:
        raise ValueError(f"{path}: no {e} (written by an older or another tool?); rerun `{verb}`") from e


def source_distance(metrics: pd.DataFrame, lmc: Iterable[str | Path], cache_dir: str | Path | None) -> pd.DataFrame | str:
    """Per task, ``FID(real target set, real source set)`` with the configured extractor, from the real-set
    features both sets already have in the FID cache (the target's written by ``evaluate``, named in each
    metrics file's protocol; the source's by ``lmc_curve``, named in ``lmc.json``). Columns ``task,
    distance, protocol``; or a sentence saying what is missing."""
    from lfsgan.metrics.fid import cache_feature_space, cached_real_features, fid_from_features

    lmc = list(lmc)
    if cache_dir is None:
        return "the report was given no FID cache folder (--cache)"
    if not lmc:
        return ("the real source set's FID features, which the LMC rule writes (permutation enabled with "
                ">= 2 source seeds)")
    with _fields(lmc[0], "lfsgan lmc"):
        source_name = json.loads(Path(lmc[0]).read_text())["metric_protocol"]["real_stats_cache"]["name"]
    column = "protocol.fid_kid.real_stats_cache.name"
    if column not in metrics:
        return "metrics files that name their real set's FID features (protocol.fid_kid.real_stats_cache)"
    targets = metrics.drop_duplicates("task").set_index("task")[column]
    try:
        source = cached_real_features(cache_dir, source_name)
        rows = []
        for task, name in targets.items():
            if cache_feature_space(name) != cache_feature_space(source_name):
                return f"the same FID extractor for the source ({source_name}) and task '{task}' ({name})"
            fid = fid_from_features(cached_real_features(cache_dir, name), source)
            rows.append({"task": task, "distance": fid,
                         "protocol": f"FID(real {task}, real source) from cached features {name} vs {source_name}"})
    except FileNotFoundError as missing:
        return str(missing)
    return pd.DataFrame(rows)
