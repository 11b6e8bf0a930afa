"""lfsgan.train: losses, lazy regularisation intervals, EMA, resumable bit-identical runs, NaN stop,
tensors-only checkpoints, method hooks. Tiny models (size 16, 16 channels) on the CPU."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import nn

from lfsgan.data import InfiniteSampler
from lfsgan.io import load_checkpoint
from lfsgan.methods.base import Method, TaskContext
from lfsgan.train import NonFiniteError, TrainConfig, Trainer, accumulate, build_models, load_generator, make_ema, train
from lfsgan.train import augment
from lfsgan.train.losses import MS_EPS, mode_seeking_penalty, path_length_penalty, r1_penalty
from lfsgan.train.state import pack, unpack

MODEL = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
SHOTS = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


pytestmark = pytest.mark.usefixtures("one_thread")


def models(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return build_models(MODEL)


def config(**kw) -> TrainConfig:
    base = dict(iterations=6, batch=4, r1_gamma=1.0, r1_every=2, path_reg_weight=2.0, path_reg_every=2,
                checkpoint_every=2, sample_every=3, log_every=1, ema_decay=0.9, seed=3)
    return TrainConfig(**{**base, **kw})


def sampler(cfg: TrainConfig) -> InfiniteSampler:
    return InfiniteSampler(SHOTS, cfg.batch, seed=cfg.seed)


def test_train_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'lr'.*allowed keys:.*lr_g"):
        TrainConfig.from_dict({"iterations": 2, "lr": 0.1})
    with pytest.raises(ValueError, match="r1_every"):
        TrainConfig.from_dict({"r1_every": 0})
    with pytest.raises(ValueError, match="device"):
        TrainConfig.from_dict({"device": "tpu"})
    cfg = TrainConfig.from_dict({"iterations": 3, "batch": 32})
    assert cfg.iterations == 3 and TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resolved_ema_decay() == pytest.approx(0.5 ** (32 / 10_000))  # rosinality's accum


def test_r1_is_squared_input_gradient_on_image_and_patch_logits():
    w = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    image_logits = (x * w).flatten(1).sum(1, keepdim=True)  # [B, 1], d/dx = w
    assert r1_penalty(image_logits, x).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)
    patch_logits = (x * w).sum(1, keepdim=True)  # [B, 1, 4, 4]; per-image mean has d/dx = w / 16
    assert r1_penalty(patch_logits, x).item() == pytest.approx(w.pow(2).sum().item() / 256, rel=1e-5)


def test_path_length_of_a_linear_synthesis():
    # img = ws A (linear): J^T y = y A^T exactly; lengths = sqrt(mean over latent rows of ||row||^2)
    A = torch.randn(2 * 4, 3 * 4 * 4, generator=torch.Generator().manual_seed(2)).requires_grad_()  # [n_latent*D, 3*H*W]
    ws = torch.randn(3, 2, 4, requires_grad=True)  # [B, n_latent, D]
    img = (ws.flatten(1) @ A).reshape(3, 3, 4, 4)
    a0 = torch.tensor(1.0)
    penalty, a1, lengths = path_length_penalty(img, ws, a0, 0.01, torch.Generator().manual_seed(0))
    y = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)) / 4.0  # same draw, / sqrt(H W)
    expected = (y.flatten(1) @ A.detach().T).reshape(3, 2, 4).pow(2).sum(2).mean(1).sqrt()
    assert torch.allclose(lengths, expected, rtol=1e-5)
    mean = 1.0 + 0.01 * (expected.mean() - 1.0)
    assert a1.item() == pytest.approx(mean.item(), rel=1e-6)
    assert penalty.item() == pytest.approx((expected - mean).pow(2).mean().item(), rel=1e-4)
    assert penalty.requires_grad and not a1.requires_grad  # trains the synthesis weights (A) through J


def test_mode_seeking_penalty_is_msgan_eq3_on_pooled_halves():
    g = torch.Generator().manual_seed(0)
    fake, z = torch.randn(6, 3, 8, 8, generator=g), torch.randn(6, 5, generator=g)
    pooled = fake.reshape(6, 3, 4, 2, 4, 2).mean((3, 5))  # 2x2 block means
    expected = 1 / ((pooled[:3] - pooled[3:]).abs().mean() / (z[:3] - z[3:]).abs().mean() + MS_EPS)
    assert mode_seeking_penalty(fake, z, pool=2).item() == pytest.approx(expected.item(), rel=1e-6)
    # a collapsed batch (every z gives one image) is penalised far more than a diverse one
    collapsed = fake[:1].expand(6, -1, -1, -1)
    assert mode_seeking_penalty(collapsed, z).item() > 1e3 * mode_seeking_penalty(fake, z).item()
    with pytest.raises(ValueError, match="at least 2"):
        mode_seeking_penalty(fake[:1], z[:1])


def test_mode_seeking_term_enters_the_g_step_only_when_weighted():
    cfg = config(r1_gamma=0.0, path_reg_weight=0.0)
    plain, weighted = Trainer(*models(), cfg), Trainer(*models(), config(r1_gamma=0.0, path_reg_weight=0.0, mode_seeking_weight=2.0))
    real = next(sampler(cfg))
    torch.manual_seed(1)
    a = plain.step(0, real)
    torch.manual_seed(1)
    b = weighted.step(0, real)
    assert "msgan" not in a and b["msgan"] > 0 and b["g_extra"] == pytest.approx(b["msgan"])
    assert a["d_loss"] == b["d_loss"] and a["g_loss"] == b["g_loss"]  # same draws, same D step and adversarial loss
    changed = [not torch.equal(p, q) for p, q in zip(plain.G.parameters(), weighted.G.parameters())]
    assert any(changed)  # ... but the term moved G differently


def test_mode_seeking_schedule_sets_the_weight_from_each_listed_iteration():
    cfg = config(mode_seeking_weight=3.0, mode_seeking_schedule=[[2, 0.5], [4, 0]])
    assert [cfg.mode_seeking_weight_at(s) for s in range(6)] == [3.0, 3.0, 0.5, 0.5, 0.0, 0.0]
    trainer = Trainer(*models(), config(r1_gamma=0.0, path_reg_weight=0.0, mode_seeking_weight=2.0, mode_seeking_schedule=[[1, 0.0]]))
    real = next(sampler(cfg))
    assert "msgan" in trainer.step(0, real) and "msgan" not in trainer.step(1, real)  # the weight 0 switches the term off
    for bad in ([[4, 1.0], [2, 1.0]], [[1, -1.0]], [[1.5, 1.0]], [3, 1.0]):
        with pytest.raises(ValueError, match="mode_seeking_schedule"):
            config(mode_seeking_schedule=bad)


def test_steps_run_and_lazy_regularisers_follow_their_intervals():
    G, D = models()
    cfg = config(r1_every=3, path_reg_every=2, lr_g=0.002, lr_d=0.003)
    trainer = Trainer(G, D, cfg)
    data = sampler(cfg)
    records = [trainer.step(i, next(data)) for i in range(5)]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records)
    assert [("r1" in r) for r in records] == [True, False, False, True, False]
    assert [("path" in r) for r in records] == [True, False, True, False, True]
    # one optimiser step per loss and per regulariser pass
    d_steps = trainer.d_optim.state[next(iter(D.parameters()))]["step"].item()
    g_steps = trainer.g_optim.state[G.conv1.conv.weight]["step"].item()
    assert (d_steps, g_steps) == (5 + 2, 5 + 3)
    # StyleGAN2 lazy-regularisation correction of Adam
    assert trainer.d_optim.param_groups[0]["lr"] == pytest.approx(0.003 * 3 / 4)
    assert trainer.d_optim.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (3 / 4)))
    assert trainer.g_optim.param_groups[0]["lr"] == pytest.approx(0.002 * 2 / 3)
    off = Trainer(*models(), config(r1_gamma=0.0, path_reg_weight=0.0))
    assert off.d_optim.param_groups[0]["lr"] == 0.002 and off.g_optim.param_groups[0]["betas"] == (0.0, 0.99)
    rec = off.step(0, next(sampler(cfg)))
    assert "r1" not in rec and "path" not in rec


def test_freeze_d_keeps_the_first_discriminator_blocks_fixed():
    """FreezeD (Mo et al. 2020): with freeze_d = 2, D's fromRGB and first ResBlock keep their weights
    bit for bit over training steps; the later blocks and G still train."""
    G, D = models()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    trainer = Trainer(G, D, config(freeze_d=2))
    data = sampler(trainer.cfg)
    for i in range(3):
        trainer.step(i, next(data))
    after = D.state_dict()
    frozen = [k for k in before if k.startswith(("convs.0.", "convs.1."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("convs.2."))
    assert not torch.equal(before["final_linear.1.weight"], after["final_linear.1.weight"])
    with pytest.raises(ValueError, match="freeze_d = 9"):
        Trainer(*models(), config(freeze_d=9))
    with pytest.raises(ValueError, match="freeze_d must be an integer"):
        config(freeze_d=-1)


def test_diff_augment_transforms_what_d_reads_and_resumes_bit_identical(tmp_path):
    """DiffAugment (Zhao et al. 2020): translation shifts by whole pixels with a zero border, cutout
    zeroes one square of half the side, colour is brightness/saturation/contrast; gradients pass
    through; D sees augmented images; the augmentation stream is checkpointed (bit-identical resume)."""
    gen = torch.Generator().manual_seed(0)
    ones = torch.ones(64, 1, 8, 8)
    shifted = augment.translation(ones, gen)  # shifts in [-1, 1] at 8 px: border rows/cols zero
    kept = shifted.sum(dim=(1, 2, 3))
    assert set(kept.tolist()) <= {64.0, 56.0, 49.0} and len(set(kept.tolist())) > 1
    img = torch.arange(1.0, 65.0).reshape(1, 1, 8, 8).repeat(16, 1, 1, 1)  # distinct, non-zero values

    def shifted_by(dy: int, dx: int) -> torch.Tensor:  # out[y, x] = img[y + dy, x + dx], 0 outside
        out = torch.zeros(8, 8)
        out[max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)] = img[0, 0, max(0, dy):8 - max(0, -dy),
                                                                              max(0, dx):8 - max(0, -dx)]
        return out

    candidates = [shifted_by(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    moved = augment.translation(img, torch.Generator().manual_seed(1))
    assert all(any(torch.equal(m[0], c) for c in candidates) for m in moved)
    cut = augment.cutout(ones, gen)
    zeros = (cut == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 square, clipped at the borders
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    y = augment.diff_augment(x, augment.parse_policy("color,translation,cutout"), gen)
    y.square().sum().backward()
    assert y.shape == x.shape and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown 'colour'"):
        config(augment="colour")

    seen = []
    G, D = models()
    D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    trainer = Trainer(G, D, config(augment="translation,cutout"))
    real = next(sampler(trainer.cfg))
    trainer.step(1, real)  # no R1 at step 1: D reads fakes, then reals, then the G step's fakes
    assert "augment" in trainer.generators() and not torch.equal(seen[1], real)
    assert (seen[1] == 0).any()  # cutout's zeros

    cfg = config(augment="color,translation,cutout")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train(*models(), sampler(cfg), cfg, out_dir=ref, model_cfg=MODEL, progress=False)
    train(*models(), sampler(cfg), cfg, out_dir=cut, model_cfg=MODEL, progress=False, stop_after=3)
    train(*models(seed=7), sampler(cfg), cfg, out_dir=cut, model_cfg=MODEL, progress=False, resume=True)
    _assert_same_weights(load_checkpoint(ref / "final.pt")[0], load_checkpoint(cut / "final.pt")[0])
    plain = tmp_path / "plain"
    train(*models(), sampler(config()), config(), out_dir=plain, model_cfg=MODEL, progress=False)
    assert not torch.equal(load_checkpoint(ref / "final.pt")[0]["g"]["to_rgb1.conv.weight"],
                           load_checkpoint(plain / "final.pt")[0]["g"]["to_rgb1.conv.weight"])


def test_ema_is_g_when_decay_is_zero_and_averages_otherwise():
    G, D = models()
    trainer = Trainer(G, D, config(ema_decay=0.0))
    data = sampler(trainer.cfg)
    for i in range(2):
        trainer.step(i, next(data))
    ema, g = trainer.g_ema.state_dict(), G.state_dict()
    assert all(torch.equal(ema[k], g[k]) for k in g)
    assert not any(p.requires_grad for p in trainer.g_ema.parameters())

    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    a_ema = make_ema(a)
    before = a_ema.weight.clone()
    accumulate(a_ema, b, 0.25)
    assert torch.allclose(a_ema.weight, 0.25 * before + 0.75 * b.weight)


def test_state_pack_round_trips_optimizer_state():
    p = nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], betas=(0.0, 0.99))
    p.grad = torch.ones(3)
    opt.step()
    tensors, skeleton = pack(opt.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    json.dumps(skeleton)  # the rest is plain JSON
    restored = unpack(tensors, json.loads(json.dumps(skeleton)))
    assert list(restored["state"]) == [0] and restored["param_groups"][0]["betas"] == (0.0, 0.99)
    assert torch.equal(restored["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def _assert_same_weights(a, b):
    for key in ("g", "d", "g_ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_bit_identical(tmp_path):
    cfg = config()
    ref_dir, cut_dir, pause_dir = tmp_path / "ref", tmp_path / "cut", tmp_path / "pause"
    train(*models(), sampler(cfg), cfg, out_dir=ref_dir, model_cfg=MODEL, progress=False)

    def kill_at_step_4(step, record):  # after the step-4 checkpoint; step 5's progress is lost
        if step == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(*models(), sampler(cfg), cfg, out_dir=cut_dir, model_cfg=MODEL, progress=False, callback=kill_at_step_4)
    assert not (cut_dir / "final.pt").exists() and load_checkpoint(cut_dir / "checkpoint.pt")[1]["step"] == 4
    # a fresh process: other initial weights, a fresh sampler; everything comes from the checkpoint
    train(*models(seed=99), sampler(cfg), cfg, out_dir=cut_dir, model_cfg=MODEL, progress=False, resume=True)

    result = train(*models(), sampler(cfg), cfg, out_dir=pause_dir, model_cfg=MODEL, progress=False, stop_after=3)
    assert result == {**result, "completed": False, "step": 3}
    train(*models(seed=7), sampler(cfg), cfg, out_dir=pause_dir, model_cfg=MODEL, progress=False, resume=True)

    ref, ref_meta = load_checkpoint(ref_dir / "final.pt")
    assert ref_meta["resumed_at_steps"] == [] and ref_meta["code"]["files"]["lfsgan/train/loop.py"]
    for d, at in ((cut_dir, 4), (pause_dir, 3)):
        other, meta = load_checkpoint(d / "final.pt")
        _assert_same_weights(ref, other)
        assert meta == {**ref_meta, "resumed_at_steps": [at]}  # the same run, and it says where it resumed
        assert (d / "losses.csv").read_text() == (ref_dir / "losses.csv").read_text()
        assert not (d / "checkpoint.pt").exists()  # a completed run leaves nothing to resume


def test_resume_only_continues_the_same_run(tmp_path, caplog):
    """A checkpoint of other settings, inputs or code (e.g. before a lower lr after a NaN stop, or an
    edited module) is ignored with one log line naming what changed; the run then equals a fresh one
    (the same settings resume: see the test above)."""
    cfg, new = config(), config(lr_g=0.01)
    code = {"sha256": "0" * 64, "files": {"lfsgan/a.py": "1" * 64, "lfsgan/b.py": "2" * 64}}
    edited = {"sha256": "3" * 64, "files": {**code["files"], "lfsgan/b.py": "4" * 64}}
    fresh = tmp_path / "fresh"
    train(*models(), sampler(new), new, out_dir=fresh, model_cfg=MODEL, progress=False, inputs={"data": "a"})
    cases = {"lr": ({"cfg": new}, "train.lr_g"), "data": ({"inputs": {"data": "b"}}, "inputs"),
             "code": ({"code": edited}, "(changed: code: lfsgan/b.py)")}
    for name, (change, named) in cases.items():
        out = tmp_path / name
        train(*models(), sampler(cfg), cfg, out_dir=out, model_cfg=MODEL, progress=False, inputs={"data": "a"}, code=code,
              stop_after=4)
        kw = {"cfg": cfg, "inputs": {"data": "a"}, "code": code, **change}
        caplog.clear()
        with caplog.at_level("INFO", logger="lfsgan.train.loop"):
            train(*models(), sampler(kw["cfg"]), kw["cfg"], out_dir=out, model_cfg=MODEL, progress=False, resume=True,
                  inputs=kw["inputs"], code=kw["code"])
        afresh = [r.getMessage() for r in caplog.records if "starting afresh" in r.getMessage()]
        assert len(afresh) == 1 and named in afresh[0], afresh
        assert len((out / "losses.csv").read_text().splitlines()) == 1 + cfg.iterations
    # resuming 4 steps of lr 0.002 would leave other weights than a fresh run with lr 0.01
    _assert_same_weights(load_checkpoint(fresh / "final.pt")[0], load_checkpoint(tmp_path / "lr" / "final.pt")[0])


def test_resume_restores_the_loss_log_from_the_checkpoint(tmp_path):
    """Snakemake deletes a failed job's declared outputs (losses.csv): the rows come back from the checkpoint."""
    cfg, ref, cut = config(), tmp_path / "ref", tmp_path / "cut"
    train(*models(), sampler(cfg), cfg, out_dir=ref, model_cfg=MODEL, progress=False)
    train(*models(), sampler(cfg), cfg, out_dir=cut, model_cfg=MODEL, progress=False, stop_after=4)
    (cut / "losses.csv").unlink()
    (cut / "metrics.jsonl").unlink()
    (cut / ".checkpoint.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")  # a killed atomic write
    train(*models(seed=5), sampler(cfg), cfg, out_dir=cut, model_cfg=MODEL, progress=False, resume=True)
    for name in ("losses.csv", "metrics.jsonl"):
        assert (cut / name).read_text() == (ref / name).read_text()
    assert len((cut / "losses.csv").read_text().splitlines()) == 1 + cfg.iterations
    assert not list(cut.glob(".*.tmp"))


def test_run_outputs_and_checkpoint_are_tensors_only(tmp_path):
    cfg = config(iterations=3, checkpoint_every=3)
    G, D = models()
    train(G, D, sampler(cfg), cfg, out_dir=tmp_path, model_cfg=MODEL, progress=False, stop_after=2)
    shutil.copyfile(tmp_path / "checkpoint.pt", tmp_path / "paused.pt")
    train(G, D, sampler(cfg), cfg, out_dir=tmp_path, model_cfg=MODEL, progress=False, resume=True)
    for name, step in (("paused.pt", 2), ("final.pt", 3)):
        payload = torch.load(tmp_path / name, weights_only=True)

        def walk(x, where):
            if isinstance(x, dict):
                for k, v in x.items():
                    assert isinstance(k, str), where
                    walk(v, f"{where}.{k}")
            else:
                assert isinstance(x, torch.Tensor), f"{name}:{where} is {type(x).__name__}"

        meta = json.loads(payload.pop("meta"))
        walk(payload, name)
        assert meta["model"] == MODEL and meta["step"] == step and meta["train"]["iterations"] == 3
    ckpt = torch.load(tmp_path / "paused.pt", weights_only=True)
    assert {"g", "d", "g_ema", "g_optim", "d_optim", "sampler", "rng", "loop"} <= set(ckpt)
    assert ckpt["rng"]["torch_cpu"].dtype == torch.uint8 and ckpt["g_optim"]  # Adam moments stored
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "samples" / "step_000003.png").is_file()
    assert (tmp_path / "losses.csv").read_text().splitlines()[0].startswith("step,kimg,d_loss,g_loss")
    # final.pt rebuilds the EMA generator
    G2 = load_generator(tmp_path / "final.pt")
    z = torch.randn(2, MODEL["style_dim"])
    trainer_ema = load_checkpoint(tmp_path / "final.pt")[0]["g_ema"]
    assert all(torch.equal(v, trainer_ema[k]) for k, v in G2.state_dict().items())
    assert G2(z, noise_mode="const").shape == (2, 3, 16, 16)


class _PatchHeadMethod(Method):
    """Only the mapping network trains; D is read through a patch head trained with D's optimiser."""

    name = "patch-test"

    def __init__(self, nan_from_step: int | None = None, poison_grad_at_step: int | None = None):
        super().__init__({"style_mixing": 0.5})
        self.head = nn.Conv2d(16, 1, 1)
        self.nan_from_step = nan_from_step
        self.poison_grad_at_step = poison_grad_at_step
        self.gen = torch.Generator().manual_seed(5)  # the method's own random stream (checkpointed by the loop)

    def setup(self, G, D, ctx):
        super().setup(G, D, ctx)
        G.requires_grad_(False)
        G.style.requires_grad_(True)
        self.head.to(ctx.device)

    def generator_parameters(self, G):
        return G.style.parameters()

    def extra_discriminator_modules(self):
        return self.head

    def discriminate(self, D, images, step):
        if step % 2 == 0:
            return D(images)
        _, feats = D(images, return_features=True)
        return self.head(feats[2])  # [B, 1, 4, 4]

    def generator_loss_terms(self, G, D, real, step, extra=None):
        if step == self.poison_grad_at_step:  # value 0 (finite) but d sqrt(x)/dx at 0 is inf: NaN weights
            return {"boom": torch.sqrt((G.style[1].weight * 0).sum())}
        if self.nan_from_step is not None and step >= self.nan_from_step:
            return {"boom": torch.tensor(float("nan"))}
        return {"boom": 0.01 * torch.randn((), generator=self.gen) * G.style[1].weight.sum()}

    def task_state(self, G, D):
        return {"style": {k: v.detach().clone() for k, v in G.style.state_dict().items()}}


def _ctx(G, D) -> TaskContext:
    return TaskContext(task_index=0, task_name="t0", source_g=G.state_dict(), source_d=D.state_dict())


def test_method_hooks_patch_logits_frozen_parts_and_task_state(tmp_path):
    G, D = models()
    frozen_before = G.conv1.conv.weight.detach().clone()
    style_before = G.style[1].weight.detach().clone()
    method = _PatchHeadMethod()
    head_before = method.head.weight.detach().clone()
    cfg = config(iterations=4, checkpoint_every=4, sample_every=4)
    train(G, D, sampler(cfg), cfg, out_dir=tmp_path, method=method, ctx=_ctx(G, D), model_cfg=MODEL, progress=False, stop_after=2)
    tensors, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    assert "extra" in tensors and "g_ema" not in tensors  # Method.uses_ema is False
    assert meta["method"]["method"] == "patch-test"
    train(G, D, sampler(cfg), cfg, out_dir=tmp_path, method=method, ctx=_ctx(G, D), model_cfg=MODEL, progress=False, resume=True)
    assert torch.equal(G.conv1.conv.weight, frozen_before)  # not in generator_parameters: untouched
    assert not torch.equal(G.style[1].weight, style_before)
    assert not torch.equal(method.head.weight, head_before)  # trained by D's optimiser
    task, _ = load_checkpoint(tmp_path / "task.pt")
    assert torch.equal(task["style"]["1.weight"], G.style[1].weight.detach())
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["g_extra"] == pytest.approx(r["boom"]) and r["boom"] != 0 for r in rows)


def test_task_run_with_method_streams_resumes_bit_identical(tmp_path):
    cfg = config(iterations=4, checkpoint_every=2, sample_every=4)
    finals = []
    for name, stop in (("ref", None), ("paused", 2)):
        G, D = models()
        kw = dict(out_dir=tmp_path / name, model_cfg=MODEL, progress=False)
        method = _PatchHeadMethod()
        train(G, D, sampler(cfg), cfg, method=method, ctx=_ctx(G, D), stop_after=stop, **kw)
        if stop is not None:
            G, D = models(seed=11)
            method = _PatchHeadMethod()
            train(G, D, sampler(cfg), cfg, method=method, ctx=_ctx(*models()), resume=True, **kw)
        final = load_checkpoint(tmp_path / name / "final.pt")[0]
        final["extra"] = method.head.state_dict()
        finals.append((final, load_checkpoint(tmp_path / name / "task.pt")[0], method.gen.get_state()))
    (ref, ref_task, ref_gen), (other, other_task, other_gen) = finals
    for part in ("g", "d", "extra"):
        assert all(torch.equal(ref[part][k], other[part][k]) for k in ref[part]), part
    assert torch.equal(ref_gen, other_gen)
    assert all(torch.equal(ref_task["style"][k], other_task["style"][k]) for k in ref_task["style"])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    G, D = models()
    cfg = config(iterations=6, checkpoint_every=2)
    with pytest.raises(NonFiniteError, match=r"loss 'boom' is nan at step 3.*last good checkpoint"):
        train(G, D, sampler(cfg), cfg, out_dir=tmp_path, method=_PatchHeadMethod(nan_from_step=3), ctx=_ctx(G, D),
              model_cfg=MODEL, progress=False)
    tensors, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    assert meta["step"] == 2
    assert all(torch.isfinite(v).all() for part in ("g", "d", "extra") for v in tensors[part].values())
    assert not (tmp_path / "final.pt").exists()

    # a finite loss with a NaN gradient poisons the weights: caught before they reach a checkpoint
    out = tmp_path / "poisoned"
    G, D = models()
    with pytest.raises(NonFiniteError, match=r"parameter g\.style\.1\.weight became non-finite at step 3.*last good checkpoint"):
        train(G, D, sampler(cfg), config(checkpoint_every=1), out_dir=out, method=_PatchHeadMethod(poison_grad_at_step=3),
              ctx=_ctx(G, D), model_cfg=MODEL, progress=False)
    tensors, meta = load_checkpoint(out / "checkpoint.pt")
    assert meta["step"] == 3
    assert all(torch.isfinite(v).all() for part in ("g", "d") for v in tensors[part].values())


def test_divergence_without_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    """A huge lr (0.5 here; 5 in the test workflow reached ~1e18) blows the logistic losses up while every
    number stays finite: stopped as diverged, after a few good steps."""
    cfg = config(iterations=10, checkpoint_every=1, sample_every=100, lr_g=0.5, lr_d=0.5)
    with pytest.raises(NonFiniteError, match=r"loss '[dg]_loss' is .* at step \d+, beyond 1000: the run diverged.*last good checkpoint"):
        train(*models(), sampler(cfg), cfg, out_dir=tmp_path, model_cfg=MODEL, progress=False)
    tensors, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert meta["step"] >= 1 and len(rows) == meta["step"] and not (tmp_path / "final.pt").exists()
    assert max(max(abs(r["d_loss"]), abs(r["g_loss"])) for r in rows) <= 1e3  # the diverged step is not logged
