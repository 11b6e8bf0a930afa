"""The training step's optional fast paths (lfsgan.train.fastpath) against float32 eager, and the
per-job start-up savings (no torchvision, no tensorly where a verb does not need them).

Each fast path runs iteration 0 (D step, R1, G step, path length, EMA) of a tiny model and is compared
with float32 eager on the same draws. Stated tolerances:

- float32 paths (channels-last, ``adam_impl`` foreach/fused, compile): every loss within 1e-5
  relative, every weight within 1e-4 absolute of eager's (one step moves a weight by ~lr = 2e-3);
- ``precision: bfloat16``: every loss within 3e-2 relative, and the step's weight update
  (``w1 - w0`` over all of G and D) at cosine similarity >= 0.9 with eager's update.

A path the platform lacks is switched off with a WARNING and the step equals float32 eager bit for bit.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lfsgan.train import TrainConfig, Trainer, build_models
from lfsgan.train import fastpath

MODEL = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=16)
LOSSES = ("d_loss", "r1", "g_loss", "path")


pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(*modules: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().float().cpu() for m in modules for p in m.parameters()])


def one_step(device: str = "cpu", **opts) -> tuple[dict, torch.Tensor, torch.Tensor, Trainer]:
    """(losses of iteration 0, G+D weights before, after, the trainer) with train options ``opts``."""
    torch.manual_seed(0)
    G, D = build_models(MODEL)
    G.to(device), D.to(device)
    cfg = TrainConfig(batch=4, r1_gamma=1.0, path_reg_weight=2.0, device=device, **opts)
    trainer = Trainer(G, D, cfg)
    real = (torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1).to(device)
    before = _weights(G, D)
    torch.manual_seed(3)  # per-layer noise
    out = trainer.step(0, real)
    return out, before, _weights(G, D), trainer


def assert_close_to_eager(device: str, rtol: float, atol: float | None, min_cos: float, **opts) -> None:
    ref, w0, w_ref, _ = one_step(device)
    out, w0_fast, w_fast, _ = one_step(device, **opts)
    assert torch.equal(w0, w0_fast)
    for k in LOSSES:
        assert out[k] == pytest.approx(ref[k], rel=rtol), f"{k}: {out[k]} vs eager {ref[k]} ({opts})"
    if atol is not None:
        assert (w_fast - w_ref).abs().max() <= atol, opts
    cos = torch.nn.functional.cosine_similarity(w_fast - w0, w_ref - w0, dim=0)
    assert cos >= min_cos, f"update cosine {cos:.4f} < {min_cos} ({opts})"


def test_defaults_are_float32_eager():
    _, _, _, trainer = one_step()
    assert trainer.fast.effective() == {"bf16": False, "channels_last": False, "compile": False}
    assert trainer.G_step is trainer.G and trainer.D_step is trainer.D


@pytest.mark.parametrize("opts", [{"channels_last": True}, {"adam_impl": "foreach"}, {"adam_impl": "fused"}], ids=str)
def test_float32_fast_paths_match_eager(opts):
    assert_close_to_eager("cpu", rtol=1e-5, atol=1e-4, min_cos=0.9999, **opts)


def _bf16_even_if_emulated(monkeypatch) -> None:
    """The numerics tests run wherever oneDNN runs bfloat16, emulated included (the same rounding, only
    slower): a CPU without bfloat16 instructions would otherwise switch the path off and compare float32."""
    if not fastpath.bf16_runs_on_cpu():
        pytest.skip("oneDNN runs no bfloat16 on this CPU")
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: (True, ""))


def test_bfloat16_autocast_matches_eager_within_tolerance(monkeypatch):
    _bf16_even_if_emulated(monkeypatch)
    assert_close_to_eager("cpu", rtol=3e-2, atol=None, min_cos=0.9, precision="bfloat16")
    assert_close_to_eager("cpu", rtol=3e-2, atol=None, min_cos=0.9, precision="bfloat16", channels_last=True)


@pytest.mark.integration  # compiling G and D forward and backward takes minutes on 2 CPU cores
def test_compile_matches_eager():
    if not fastpath.compile_supported(torch.device("cpu"))[0]:
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
    torch._dynamo.reset()
    assert_close_to_eager("cpu", rtol=1e-5, atol=1e-4, min_cos=0.9999, compile=True)


def test_paths_the_platform_lacks_are_off_with_a_warning(monkeypatch, caplog):
    ref, _, w_ref, _ = one_step()
    monkeypatch.setattr(fastpath, "bf16_supported", lambda device: (False, "no bf16 here"))
    monkeypatch.setattr(fastpath, "compile_supported", lambda device: (False, "no compiler here"))
    with caplog.at_level(logging.WARNING, logger="lfsgan.train.fastpath"):
        out, _, w, trainer = one_step(precision="bfloat16", compile=True, cudnn_benchmark=True)
    text = caplog.text
    assert "precision bfloat16 is off: no bf16 here" in text and "compile is off: no compiler here" in text
    assert "cudnn_benchmark is off" in text
    assert trainer.fast.effective() == {"bf16": False, "channels_last": False, "compile": False}
    assert torch.equal(w, w_ref) and all(out[k] == ref[k] for k in LOSSES)


def test_bfloat16_is_off_on_a_cpu_that_would_emulate_it(monkeypatch, caplog):
    """oneDNN says yes to bfloat16 on AVX-512 CPUs without its instructions (Ice Lake) and emulates it, 2.3x
    slower than float32 in a 512-channel step there: the path counts as missing, with a warning."""
    monkeypatch.setattr(fastpath, "bf16_runs_on_cpu", lambda: True)
    monkeypatch.setattr(fastpath, "cpu_has_bf16_instructions", lambda: False)
    ok, why = fastpath.bf16_supported(torch.device("cpu"))
    assert not ok and "AVX512-BF16 or AMX" in why
    with caplog.at_level(logging.WARNING, logger="lfsgan.train.fastpath"):
        _, _, _, trainer = one_step(precision="bfloat16")
    assert "precision bfloat16 is off: this CPU has no bfloat16 instructions" in caplog.text
    assert trainer.fast.effective()["bf16"] is False
    monkeypatch.setattr(fastpath, "cpu_has_bf16_instructions", lambda: True)
    assert fastpath.bf16_supported(torch.device("cpu")) == (True, "")


def test_cpu_bfloat16_instructions_match_the_kernels_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file() or not fastpath.on_x86():
        pytest.skip("needs Linux's /proc/cpuinfo on an x86 CPU")
    flags = set(cpuinfo.read_text().split())
    assert fastpath.cpu_has_bf16_instructions() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_train_config_checks_fast_path_values():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16")
    with pytest.raises(ValueError, match="adam_impl"):
        TrainConfig(adam_impl="apex")
    with pytest.raises(ValueError, match="channels_last"):
        TrainConfig(channels_last="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fast_paths_match_eager():
    """Unmeasured on GPU for speed; this checks only that the CUDA paths run and agree."""
    assert_close_to_eager("cuda", rtol=1e-4, atol=1e-3, min_cos=0.999, channels_last=True, cudnn_benchmark=True)
    if torch.cuda.is_bf16_supported():
        assert_close_to_eager("cuda", rtol=3e-2, atol=None, min_cos=0.9, precision="bfloat16", channels_last=True)
    torch.backends.cudnn.benchmark = False


# --- job start-up ------------------------------------------------------------------------------

def test_save_grid_writes_torchvision_save_image_bytes(tmp_path):
    from torchvision.utils import save_image

    from lfsgan.train.logs import save_grid

    x = torch.randn(7, 3, 9, 11, generator=torch.Generator().manual_seed(0)) * 1.5  # values beyond [-1, 1] too
    for n, nrow in ((7, None), (7, 3), (1, None), (5, 8)):
        save_image(x[:n], tmp_path / "tv.png", nrow=nrow or 3, normalize=True, value_range=(-1, 1), format="png")
        save_grid(x[:n], tmp_path / "ours.png", nrow=nrow)
        assert (tmp_path / "tv.png").read_bytes() == (tmp_path / "ours.png").read_bytes(), (n, nrow)


def test_sample_verb_imports_neither_torchvision_nor_tensorly():
    code = ("import sys, lfsgan.cli, lfsgan.config, lfsgan.verbs.sample, lfsgan.methods; "
            "print(sorted(m for m in ('torchvision', 'tensorly', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bfloat16_autocast_covers_lfsgans_mode_seeking_term_within_tolerance(monkeypatch):
    """LFS-GAN's own generator term (an extra G pass and the LPIPS cluster assignment on 4·B samples, the
    larger part of its step) runs under the step's autocast too; against float32 eager its loss stays
    within 3e-2 (the mode-seeking term within 5e-2: a ratio of small distances) and the update's cosine
    >= 0.9, and float32 stays bit-identical to a step without autocast."""
    _bf16_even_if_emulated(monkeypatch)
    from lfsgan.methods import TaskContext, make_method
    from lfsgan.metrics import make_lpips

    lpips_model = make_lpips("vgg", allow_random_backbone=True, allow_download=False, device="cpu")

    def lfsgan_step(**opts):
        torch.manual_seed(0)
        G, D = build_models(MODEL)
        source = ({k: v.clone() for k, v in G.state_dict().items()}, {k: v.clone() for k, v in D.state_dict().items()})
        method = make_method("lfsgan", {"mode_seeking": "intended", "lpips_allow_random_backbone": True})
        method.lpips_model = lpips_model
        method.setup(G, D, TaskContext(0, "t", *source, seed=0))
        trainer = Trainer(G, D, TrainConfig(batch=4, r1_gamma=1.0, **opts), method)
        real = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
        before = _weights(G, D)
        torch.manual_seed(3)
        out = trainer.step(1, real)
        return out, before, _weights(G, D)

    ref, w0, w_ref = lfsgan_step()
    again, _, w_again = lfsgan_step()
    assert torch.equal(w_ref, w_again) and ref["mode_seeking"] == again["mode_seeking"]
    out, w0_fast, w_fast = lfsgan_step(precision="bfloat16")
    assert torch.equal(w0, w0_fast) and "mode_seeking" in out
    # G is the same before its step in both runs (the D step changes D only): a different term means it ran in bfloat16
    assert out["mode_seeking"] != ref["mode_seeking"]
    for k, rel in (("d_loss", 3e-2), ("g_loss", 3e-2), ("mode_seeking", 5e-2)):
        assert out[k] == pytest.approx(ref[k], rel=rel), f"{k}: {out[k]} vs eager {ref[k]}"
    cos = torch.nn.functional.cosine_similarity(w_fast - w0, w_ref - w0, dim=0)
    assert cos >= 0.9, f"update cosine {cos:.4f}"
