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
) -> dict[str, Any]:
    """The read-out above for ``fake`` (uint8 ``[N, 3, H, W]``) of domain ``domain_index`` (the
    extractor's domain class), against ``real`` (uint8 ``[M, 3, H, W]``, the domain's prepared set).

    Returns ``{confident_share, digit_histogram, domain_share, top_digit, top_digit_share,
    spread_ratio, collapsed, collapse_reasons, protocol}``.
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
            "spread_real": spread_real,
            "spread_fake": spread_fake,
            "seed": seed,
        },
    }
