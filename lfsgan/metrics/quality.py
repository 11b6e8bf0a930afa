"""Quality read-out of one generator's samples with the demo extractor's two heads (domain, digit).

For ``N`` samples (uint8 ``[N, 3, H, W]``) of a generator that should produce domain ``k``:

* ``p_n = softmax(digit_logits_n)``; sample ``n`` is *confident* when ``max_c p_nc ≥ τ`` (``threshold``);
* ``confident_share = #confident / N``;
* ``digit_histogram[c] = #{confident n : argmax p_n = c}`` (over every digit the extractor knows);
* ``domain_share = #{n : argmax domain_logits_n = k} / N``.

**Collapse criterion** (``collapsed`` true when either holds; both numbers are recorded):

1. *Class collapse*: at least ``min_confident`` confident samples and one digit holds more than
   ``max_class_share`` of them (default 0.8). The demo's real domains are balanced over 3 digits
   (targets, 33 % each) or 7 (source, 14 % each), so 80 % in one class is far outside what a
   generator covering the domain gives (the real images themselves: ≤ 36 %).
2. *Feature collapse*: the samples' spread in the extractor's penultimate features — the mean
   pairwise Euclidean distance ``spread(X) = mean_{i<j} ||f_i − f_j||`` — is below
   ``min_spread_ratio`` (default 0.25) of the spread of the domain's real images (``n_real`` of them,
   chosen with ``seed``). A constant image repeated has spread 0; a generator that draws one blurred
   shape with small variations stays far below the real set's spread even when no class is confident.

Two more numbers say whether a generator kept the source's variety and learnt the style rather than
the 10 images (what the few-shot papers show with histograms and nearest-neighbour figures):

* ``coverage = #{c ∈ target digits : digit_histogram[c] ≥ min_coverage_share · #confident}`` — how
  many of the domain's digits (the labels of its real images) hold at least 4 % of the confident
  samples (``coverage_of`` is how many there are);
* ``memorised_share = #{n : ∃ i, ||f_n − s_i|| < τ_i} / N`` with ``τ_i = min_{r ∈ R} ||s_i − r||``:
  the share of samples nearer, in the extractor's penultimate features ``f``, to one of the training
  shots ``s_1..s_K`` than any other real image of the domain (``R``: the full set minus the shots) is
  to that shot — a copy, where a new image of the domain would not be. The shots themselves read 1;
  a real image of the domain reads 0 (by construction: it is one of the ``r``). A threshold shared by
  all shots, the shots' distance to each other (``min_{i≠j} ||s_i − s_j||``), was tried first and
  flagged 29 % of fresh real images at 16 px: digits of one class sit close together in a
  classifier's features, nearer than two shots of different digits.
"""

from __future__ import annotations

from typing import Any

import torch

from lfsgan.metrics.demo_extractor import DemoCNN


def mean_pairwise_distance(f: torch.Tensor) -> float:
    """``mean_{i<j} ||f_i − f_j||_2`` of ``f [N, D]`` (0 for N < 2)."""
    if len(f) < 2:
        return 0.0
    d = torch.cdist(f.double(), f.double())  # [N, N]
    n = len(f)
    return float(d.sum() / (n * (n - 1)))


def memorisation(f_fake: torch.Tensor, f_shots: torch.Tensor, f_others: torch.Tensor) -> tuple[float | None, list[float] | None]:
    """``(memorised_share, τ)`` for features ``f_fake [N, D]``, the shots' ``f_shots [K, D]`` and the
    other real images' ``f_others [M, D]``: ``τ_i = min_r ||s_i − r||`` and the share of samples with
    ``||f_n − s_i|| < τ_i`` for some shot ``i`` (``(None, None)`` without shots or other images)."""
    if len(f_shots) == 0 or len(f_others) == 0:
        return None, None
    tau = torch.cdist(f_shots.double(), f_others.double()).min(1).values  # [K]
    near = torch.cdist(f_fake.double(), f_shots.double()) < tau[None, :]  # [N, K]
    return float(near.any(1).double().mean()), tau.tolist()


def _not_shots(real: torch.Tensor, shots: torch.Tensor) -> torch.Tensor:
    """The real images that are not byte-identical to a shot, uint8 [M', 3, H, W]."""
    flat = real.flatten(1)
    is_shot = torch.zeros(len(real), dtype=torch.bool)
    for shot in shots.flatten(1):
        is_shot |= (flat == shot).all(1)
    return real[~is_shot]


@torch.no_grad()
def _heads(net: DemoCNN, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    outs = [net.heads(chunk) for chunk in images.split(batch_size)]
    if outs[0][2] is None:
        raise ValueError("the demo extractor has no digit head (its prepared data recorded no digit labels); "
                         "re-prepare the built-in domains and retrain it (rule train_extractor)")
    return tuple(torch.cat([o[i] for o in outs]) for i in range(3))  # type: ignore[return-value]


def quality_readout(
    net: DemoCNN,
    fake: torch.Tensor,
    real: torch.Tensor,
    domain_index: int,
    *,
    threshold: float = 0.9,
    max_class_share: float = 0.8,
    min_confident: int = 10,
    min_spread_ratio: float = 0.25,
    n_real: int = 500,
    seed: int = 0,
    batch_size: int = 256,
    target_digits: list[int] | None = None,
    min_coverage_share: float = 0.04,
    shots: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The read-out above for ``fake`` (uint8 ``[N, 3, H, W]``) of domain ``domain_index`` (the
    extractor's domain class), against ``real`` (uint8 ``[M, 3, H, W]``, the domain's prepared set).
    ``target_digits``: the domain's digits (coverage); ``shots``: uint8 ``[K, 3, H, W]``, the training
    shots (memorisation).

    Returns ``{confident_share, digit_histogram, domain_share, top_digit, top_digit_share, coverage,
    coverage_of, memorised_share, spread_ratio, collapsed, collapse_reasons, protocol}``.
    """
    if fake.dtype != torch.uint8 or real.dtype != torch.uint8:
        raise ValueError(f"quality_readout expects uint8 images, got fake {fake.dtype} and real {real.dtype}")
    if not 0 <= domain_index < net.n_classes:
        raise ValueError(f"domain index {domain_index} outside the extractor's {net.n_classes} domains")
    f_fake, dom_logits, dig_logits = _heads(net, fake, batch_size)
    prob = dig_logits.softmax(1)  # [N, n_digits]
    conf, digit = prob.max(1)  # [N]
    confident = conf >= threshold
    hist = torch.bincount(digit[confident], minlength=net.n_digits)  # [n_digits]
    n_conf = int(confident.sum())
    top = int(hist.argmax()) if n_conf else None
    top_share = float(hist.max()) / n_conf if n_conf else None

    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[: min(n_real, len(real))]
    f_real = _heads(net, real[pick], batch_size)[0]
    spread_fake, spread_real = mean_pairwise_distance(f_fake), mean_pairwise_distance(f_real)
    ratio = spread_fake / spread_real if spread_real > 0 else None

    coverage = None
    if target_digits is not None:
        coverage = sum(1 for c in target_digits if n_conf and int(hist[c]) >= min_coverage_share * n_conf)
    memorised, tau = (None, None)
    if shots is not None:
        others = _not_shots(real, shots)
        memorised, tau = memorisation(f_fake, _heads(net, shots, batch_size)[0], _heads(net, others, batch_size)[0] if len(others) else others)

    reasons = []
    if n_conf >= min_confident and top_share is not None and top_share > max_class_share:
        reasons.append(f"digit {top} holds {top_share:.0%} of the {n_conf} confident samples (> {max_class_share:.0%})")
    if ratio is not None and ratio < min_spread_ratio:
        reasons.append(f"feature spread is {ratio:.2f} of the real images' (< {min_spread_ratio})")
    return {
        "confident_share": n_conf / len(fake),
        "digit_histogram": hist.tolist(),
        "domain_share": float((dom_logits.argmax(1) == domain_index).float().mean()),
        "top_digit": top,
        "top_digit_share": top_share,
        "coverage": coverage,
        "coverage_of": None if target_digits is None else len(target_digits),
        "memorised_share": memorised,
        "spread_ratio": ratio,
        "collapsed": bool(reasons),
        "collapse_reasons": reasons,
        "protocol": {
            "n_samples": int(len(fake)),
            "threshold": threshold,
            "confident": "max softmax of the digit head >= threshold",
            "domain_index": domain_index,
            "collapse_criterion": (
                f"collapsed if (>= {min_confident} confident samples and one digit holds > {max_class_share} of them) "
                f"or mean pairwise penultimate-feature distance < {min_spread_ratio} x that of {len(pick)} real images "
                f"of the domain (chosen by torch.randperm with seed {seed})"
            ),
            "coverage": f"digits of {target_digits} holding >= {min_coverage_share} of the confident samples",
            "memorisation": "share of samples nearer to some shot i (penultimate features, Euclidean) than any other "
            "real image of the domain is to shot i (tau_i, one per shot)",
            "memorisation_tau": tau,
            "spread_real": spread_real,
            "spread_fake": spread_fake,
            "seed": seed,
        },
    }
