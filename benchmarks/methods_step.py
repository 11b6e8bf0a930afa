"""Images per second of one training iteration (``lfsgan.train.Trainer.step``) for every method, beside
fine-tuning in the same run; and the cost of LeFT's weight reconstruction, TensorLy vs hand-written
``torch.einsum``.

One iteration = D step + G step (+ the method's loss terms), lazy R1 every 16 and path length every
4 iterations: the mean over ``--steps`` consecutive iterations (a multiple of 16 holds the
regularisers in their true proportion) after ``--warmup`` plain ones, in ``--rounds`` rounds that
take the variants in turn; ratios to fine-tuning are the median of the round-by-round ratios. Variants:

- ``finetune``, ``ewc`` (Fisher = random positive tensors: same cost as a real one), ``piggyback``;
- ``lfsgan-left``: LeFT only (no patch D, no mode seeking) — the cost of rebuilding every weight on
  every forward; target ≤ 1.3× fine-tuning's time;
- ``lfsgan-patch``: LeFT + CDC anchor/patch D;
- ``lfsgan``: the full method (+ cluster-wise mode seeking on 4·B extra samples with LPIPS-VGG; a
  random-backbone LPIPS here, the same cost as the real one). The same real batch every step, as
  a few-shot task's batches come from the same shots: the shots' LPIPS features are cached. Its 4·B
  mode-seeking samples come from the same G call as the B fakes;
- ``lfsgan-two-pass``: the same with the mode-seeking samples in a G pass of their own (the released
  code's order): what drawing them in one pass saves.

``--ms-breakdown`` also times the parts of the mode-seeking term alone (process CPU s, in ratio to
fine-tuning's whole iteration): G forward+backward on the 4·B extra samples, LPIPS-VGG features of
the 4·B samples (the cluster assignment), and the pair loss (forward+backward) on their features.
The first two are what the official algorithm must compute each step, whatever the implementation;
each part's FLOPs (torch.utils.flop_counter) and achieved rate are printed against this machine's
large-``torch.mm`` rate, measured in the same run: how far each part is from the machine's limit.

Configs: the demo (size 32, channel_max 64, style_dim 64, n_mlp 4, batch 16) and, with ``--full``,
256 px / multiplier 2 / style_dim 512 / n_mlp 8 / batch 4 (use a GPU; ``--full-size`` scales it down).
Wall-clock and process CPU time are both printed; on a CPU shared with other jobs trust the latter.

    python benchmarks/methods_step.py [--device auto] [--threads N] [--steps 16] [--rounds 3] [--full] [--only demo|full] [--ms-breakdown]
                                      [--precision float32|bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from common import add_device_args, setup_device
from lfsgan.methods import LFSGAN, TaskContext, make_method
from lfsgan.methods.left import LeFTConv, LeFTFC
from lfsgan.models import Discriminator, Generator
from lfsgan.train import TrainConfig, Trainer

VARIANTS: dict[str, tuple[str, dict]] = {
    "finetune": ("finetune", {}),
    "ewc": ("ewc", {}),
    "piggyback": ("piggyback", {}),
    "lfsgan-left": ("lfsgan", {"mode_seeking": "off", "patch_d": False}),
    "lfsgan-patch": ("lfsgan", {"mode_seeking": "off"}),
    "lfsgan": ("lfsgan", {}),
    "lfsgan-two-pass": ("lfsgan", {}),
}


class TwoPassLFSGAN(LFSGAN):
    """LFS-GAN as the released code runs it: the mode-seeking samples in a G pass of their own, after
    the fakes' (the trainer is handed no extra latents, so the term draws its own): the baseline of
    drawing both in one pass."""

    def extra_latents(self, G, real, step):
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _models(model: dict, device: torch.device) -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    G = Generator(model["size"], style_dim=model["style_dim"], n_mlp=model["n_mlp"],
                  channel_multiplier=model["channel_multiplier"], channel_max=model["channel_max"])
    D = Discriminator(model["size"], channel_multiplier=model["channel_multiplier"], channel_max=model["channel_max"])
    return G.to(device), D.to(device)


def _demo_run() -> tuple[dict, int]:
    """The offline demo's generator and task batch (``config/config.yaml``: ``model`` at ``data.resolution``,
    ``task_train.batch``)."""
    import yaml

    with open(Path(__file__).resolve().parents[1] / "config" / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    m = cfg["model"]
    model = dict(size=cfg["data"]["resolution"], channel_max=m["channel_max"], channel_multiplier=m["channel_multiplier"],
                 style_dim=m["style_dim"], n_mlp=m["n_mlp"])
    return model, int(cfg["task_train"]["batch"])


def _random_lpips(device: torch.device) -> torch.nn.Module:
    """LPIPS-VGG as the methods build it (``make_lpips``), with a random backbone (the same cost as the
    ImageNet one)."""
    from lfsgan.metrics import make_lpips

    return make_lpips("vgg", allow_random_backbone=True, allow_download=False, device=str(device))


def _trainer(variant: str, model: dict, batch: int, device: torch.device, precision: str = "float32") -> Trainer:
    kind, options = VARIANTS[variant]
    G, D = _models(model, device)
    source = ({k: v.clone() for k, v in G.state_dict().items()}, {k: v.clone() for k, v in D.state_dict().items()})
    extras = {"fisher": {k: torch.rand_like(p) * 1e-6 for k, p in G.named_parameters()}}
    method = TwoPassLFSGAN(options) if variant == "lfsgan-two-pass" else make_method(kind, options)
    if kind == "lfsgan" and options.get("mode_seeking", "intended") != "off":
        method.lpips_model = _random_lpips(device)
    method.setup(G, D, TaskContext(0, "bench", *source, device=device, extras=extras))
    return Trainer(G, D, TrainConfig(batch=batch, device=device.type, precision=precision), method)


def seconds_per_iteration(variants: list[str], model: dict, batch: int, device: torch.device, steps: int,
                          warmup: int, rounds: int, precision: str = "float32") -> dict[str, list[tuple[float, float]]]:
    """Per variant, one (wall-clock s, process CPU s) per iteration for each of ``rounds`` rounds.

    Every round runs ``steps`` iterations of each variant in turn (the order reversed every other
    round), so a change in the machine's speed during the run hits every variant alike and the
    ratios are taken round by round.
    """
    real = torch.rand(batch, 3, model["size"], model["size"], generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    trainers = {v: _trainer(v, model, batch, device, precision) for v in variants}
    for trainer in trainers.values():
        for i in range(warmup):
            trainer.step(1 + 4 * i, real)  # plain patch-D iterations (no R1, no path length, not anchors)
    out: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(steps):
                trainers[v].step(i, real)
            _sync(device)
            out[v].append(((time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps))
    return out


def mode_seeking_parts(model: dict, batch: int, device: torch.device, reps: int = 3) -> dict[str, float]:
    """Process CPU s of each part of the mode-seeking term on ``4 · batch`` samples (min over ``reps``)."""
    from lfsgan.metrics.diversity import lpips_features
    from lfsgan.methods.mode_seeking import assign_clusters, mode_seeking_loss

    G, _ = _models(model, device)
    lp = _random_lpips(device)
    z = torch.randn(4 * batch, G.style_dim, generator=torch.Generator().manual_seed(0)).to(device)
    real = torch.rand(batch, 3, model["size"], model["size"], generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1

    def generate():
        w = G.mapping(z)
        return (w, *G.synthesis(G.make_ws([w]), noise_mode="random", return_features=True))

    w, images, feats = generate()
    clusters = assign_clusters(images.detach(), real, lp)

    def g_fwd_bwd():
        w, images, feats = generate()
        (images.sum() + sum(f.sum() for f in feats)).backward()

    def pair_loss():
        fs = [f.detach().requires_grad_() for f in feats]
        loss, _ = mode_seeking_loss(z, w.detach().requires_grad_(), fs, images.detach().requires_grad_(), clusters, batch)
        loss.backward()

    def lpips_fakes():
        with torch.no_grad():
            lpips_features(lp, images.detach())

    from train_step import _FlopCount

    out = {}
    for name, fn in (("G fwd+bwd on 4B", g_fwd_bwd), ("LPIPS-VGG on 4B", lpips_fakes), ("pair loss fwd+bwd", pair_loss)):
        times, walls = [], []
        for _ in range(reps + 1):
            _sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            _sync(device)
            times.append(time.process_time() - c0)
            walls.append(time.perf_counter() - t0)
        with _FlopCount() as fc:
            fn()
        out[name] = (min(times[1:]), min(walls[1:]), float(fc.total))
    return out


# --- LeFT reconstruction: TensorLy vs hand-written einsum -----------------------------------------
def einsum_reconstruction(adapter: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor | None):
    """methods.md §1.3a/b with ``torch.einsum`` only (the reference the TensorLy version must match)."""
    if isinstance(adapter, LeFTFC):
        w = weight * torch.einsum("or,ir->oi", adapter.U_m, adapter.V_m)
        if adapter.use_add:
            w = w + torch.einsum("or,ir->oi", adapter.U_a, adapter.V_a)
        b = None if bias is None else bias * adapter.beta_m + (adapter.beta_a if adapter.use_add else 0)
        return w, b
    assert isinstance(adapter, LeFTConv)
    m1 = torch.einsum("oq,sqk->sok", adapter.A, adapter.T)
    if adapter.use_add:
        m1 = m1 + torch.einsum("oq,kq->ok", adapter.P, adapter.Q)
    if adapter.use_act:
        m1 = torch.relu(m1)
    c_out, c_in, k = weight.shape[1], weight.shape[2], adapter.kernel_size
    w = weight * torch.einsum("is,sok->oik", adapter.B, m1).reshape(c_out, c_in, k, k)
    if adapter.use_add:
        w = w + torch.einsum("iq,kq->ik", adapter.R, adapter.S).reshape(c_in, k, k)
    return w, bias


def reconstruction_seconds(model: dict, device: torch.device, reps: int) -> dict[str, float]:
    """Forward + backward of rebuilding every adapted weight of G once (loss = Σ sums), per implementation.

    The two implementations alternate (and swap order) rep by rep and the median is reported, so drift in a shared
    machine's load hits both alike.
    """
    G, D = _models(model, device)
    method = make_method("lfsgan", {})
    method.attach_left(G, seed=0)
    layers = dict(G.named_modules())
    pairs = [(a, layers[name]) for name, a in method.adapters.items()]
    params = method.generator_parameters(G)
    impls = {"tensorly": lambda a, l: a(l.weight, getattr(l, "bias", None)),
             "einsum": lambda a, l: einsum_reconstruction(a, l.weight, getattr(l, "bias", None))}

    def once(fn) -> float:
        _sync(device)
        t0 = time.perf_counter()
        total = 0
        for a, l in pairs:
            w, b = fn(a, l)
            total = total + w.sum() + (0 if b is None else b.sum())
        torch.autograd.grad(total, params)
        _sync(device)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {k: [] for k in impls}
    for rep in range(reps + 1):
        for label, fn in sorted(impls.items(), reverse=rep % 2 == 1):  # alternate which goes first
            t = once(fn)
            if rep:  # rep 0 is warm-up
                times[label].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(ap)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of --steps iterations per variant")
    ap.add_argument("--full", action="store_true", help="also 256 px / multiplier 2 / batch 4")
    ap.add_argument("--only", choices=["demo", "demo-run", "full"], default=None,
                    help="demo: the benchmark's fixed small config (batch 16); demo-run: config/config.yaml's model and task batch")
    ap.add_argument("--full-size", type=int, default=256, help="resolution of the --full config (256 = the paper's)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--reconstruction-only", action="store_true", help="skip the training steps (e.g. 256 px on a CPU)")
    ap.add_argument("--reps", type=int, default=10, help="repetitions of the reconstruction timing")
    ap.add_argument("--ms-breakdown", action="store_true", help="also time the parts of the mode-seeking term")
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="every variant's train.precision (bfloat16: autocast, a method's own terms included; "
                         "needs native bfloat16, else float32 with a warning)")
    args = ap.parse_args()

    device = setup_device(args)
    configs = []
    if args.only in (None, "demo"):
        configs.append(("demo", dict(size=32, channel_max=64, channel_multiplier=2, style_dim=64, n_mlp=4), 16))
    if args.only in (None, "demo-run"):
        configs.append(("demo-run", *_demo_run()))
    if args.full or args.only == "full":
        configs.append((f"paper-{args.full_size}", dict(size=args.full_size, channel_max=512, channel_multiplier=2,
                                                        style_dim=512, n_mlp=8), 4))
    variants = ["finetune"] + [v for v in args.variants if v != "finetune"]
    for label, model, batch in configs:
        print(f"\n{label}: {model}, batch {batch}, precision {args.precision}")
        if not args.reconstruction_only:
            print(f"{args.rounds} rounds of {args.steps} iterations per variant, interleaved, after {args.warmup} warm-up;\n"
                  f"median over rounds (x finetune: median of the round-by-round ratios, [min, max])\n"
                  f"{'variant':<14} {'s/iter':>9} {'img/s':>9} {'x finetune':>24} {'cpu-s/iter':>11} {'x finetune':>24}")
            times = seconds_per_iteration(variants, model, batch, device, args.steps, args.warmup, args.rounds, args.precision)
            base = times["finetune"]
            for v in variants:
                sec = statistics.median(t[0] for t in times[v])
                cpu = statistics.median(t[1] for t in times[v])
                cols = []
                for k in (0, 1):
                    ratios = [t[k] / b[k] for t, b in zip(times[v], base)]
                    cols.append(f"{statistics.median(ratios):>6.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]")
                print(f"{v:<14} {sec:>9.4f} {batch / sec:>9.2f} {cols[0]:>24} {cpu:>11.4f} {cols[1]:>24}", flush=True)
            base = (statistics.median(t[0] for t in base), statistics.median(t[1] for t in base))
            if args.ms_breakdown:
                from train_step import matmul_rate

                peak = matmul_rate(device)
                for part, (cpu, wall, flops) in mode_seeking_parts(model, batch, device).items():
                    print(f"  mode seeking, {part:<20} {cpu:>8.4f} cpu-s  {cpu / base[1]:>6.2f}x a fine-tuning iteration;"
                          f" {flops / 1e9:6.2f} GFLOP at {flops / wall / 1e9:6.1f} GFLOP/s = {flops / wall / peak:.2f} of"
                          f" torch.mm's {peak / 1e9:.0f} GFLOP/s", flush=True)
        rec = reconstruction_seconds(model, device, reps=args.reps)
        print(f"LeFT reconstruction of all weights, fwd+bwd: tensorly {rec['tensorly'] * 1e3:.2f} ms, "
              f"einsum {rec['einsum'] * 1e3:.2f} ms (ratio {rec['tensorly'] / rec['einsum']:.2f})", flush=True)


if __name__ == "__main__":
    main()
