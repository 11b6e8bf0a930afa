"""Shipped sources (source.checkpoints): installed only after their sha256 and contents check out."""

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from lfsgan.cli import main
from lfsgan.config import ConfigError, validate_config
from lfsgan.io import load_checkpoint, sha256_file
from lfsgan.train import build_models
from lfsgan.train.checkpoint import save_final

ROOT = Path(__file__).resolve().parents[1]


def demo_test_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def model_cfg(cfg: dict) -> dict:
    return {"size": cfg["data"]["resolution"], **cfg["model"]}


def shipped(tmp_path: Path, cfg: dict, seed: int = 0, init: int | None = None) -> Path:
    """A source final.pt as `lfsgan pretrain` writes it (random weights of the config's model, drawn with
    ``torch.manual_seed(init)``, by default the seed's own)."""
    torch.manual_seed(seed if init is None else init)
    G, D = build_models(model_cfg(cfg))
    G_ema, _ = build_models(model_cfg(cfg))
    path = tmp_path / f"seed{seed}.pt"
    save_final(path, G, D, G_ema, {"model": model_cfg(cfg), "step": 5, "workflow": {"stage": "source", "seed": seed}})
    return path


def write_config(tmp_path: Path, cfg: dict, entries: list[dict]) -> Path:
    cfg = {**cfg, "source": {**cfg["source"], "seeds": [e["seed"] for e in entries], "checkpoints": entries}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def install(config: Path, seed: int, checkpoint: Path, out: Path) -> int:
    return main(["install-source", "--config", str(config), "--seed", str(seed), "--checkpoint", str(checkpoint), "--out", str(out)])


def test_installed_source_has_the_shipped_weights(tmp_path):
    cfg = demo_test_config()
    ckpt = shipped(tmp_path, cfg)
    config = write_config(tmp_path, cfg, [{"seed": 0, "path": str(ckpt), "sha256": sha256_file(ckpt)}])
    assert install(config, 0, ckpt, tmp_path / "run") == 0
    got, meta = load_checkpoint(tmp_path / "run" / "final.pt")
    want, _ = load_checkpoint(ckpt)
    for name in ("g", "d", "g_ema"):
        assert got[name].keys() == want[name].keys()
        assert all(torch.equal(got[name][k], want[name][k]) for k in want[name])
    assert meta["workflow"]["sha256"] == sha256_file(ckpt) and meta["workflow"]["seed"] == 0
    assert meta["model"] == model_cfg(cfg) and meta["step"] == 5
    assert (tmp_path / "run" / "samples.png").stat().st_size > 0


def test_a_changed_file_is_refused_before_it_is_read(tmp_path, caplog):
    cfg = demo_test_config()
    ckpt = shipped(tmp_path, cfg)
    config = write_config(tmp_path, cfg, [{"seed": 0, "path": str(ckpt), "sha256": sha256_file(ckpt)}])
    with open(ckpt, "ab") as f:
        f.write(b"\0")
    assert install(config, 0, ckpt, tmp_path / "run") == 1
    assert "differs from source.checkpoints" in caplog.text
    assert not (tmp_path / "run" / "final.pt").exists()


def test_pickled_code_in_a_pinned_file_never_runs(tmp_path, caplog):
    """Even with a matching sha256 (a pinned file that was malicious from the start), nothing executes."""
    marker = tmp_path / "pwned"

    class Attack:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(pickle.dumps({"g": Attack()}))
    cfg = demo_test_config()
    config = write_config(tmp_path, cfg, [{"seed": 0, "path": str(ckpt), "sha256": sha256_file(ckpt)}])
    assert install(config, 0, ckpt, tmp_path / "run") == 1
    assert not marker.exists()
    assert "not a loadable tensors-only checkpoint" in caplog.text
    assert not (tmp_path / "run" / "final.pt").exists()


def test_a_source_of_another_seed_or_model_is_refused(tmp_path, caplog):
    cfg = demo_test_config()
    ckpt = shipped(tmp_path, cfg, seed=1)
    config = write_config(tmp_path, cfg, [{"seed": 0, "path": str(ckpt), "sha256": sha256_file(ckpt)}])
    assert install(config, 0, ckpt, tmp_path / "run") == 1
    assert "pretrained with seed 1, listed for seed 0" in caplog.text
    other = {**cfg, "model": {**cfg["model"], "channel_max": 8}}
    ckpt = shipped(tmp_path, other, seed=0)
    config = write_config(tmp_path, cfg, [{"seed": 0, "path": str(ckpt), "sha256": sha256_file(ckpt)}])
    assert install(config, 0, ckpt, tmp_path / "run") == 1
    assert "does not fit the config's model" in caplog.text
    assert not (tmp_path / "run" / "final.pt").exists()


@pytest.mark.parametrize(
    "source, words",
    [
        ({"seeds": [0, 1], "checkpoints": [{"seed": 0, "path": "a.pt", "sha256": "0" * 64}]}, "expected one entry for each"),
        ({"seeds": [0], "checkpoints": [{"seed": 0, "path": "a.pt", "sha256": "0" * 64}], "import_checkpoint": "x.pt"}, "keep one"),
        ({"seeds": [0], "checkpoints": [{"seed": 0, "path": "a.pt", "sha256": "abc"}]}, "source.checkpoints.0.sha256"),
    ],
)
def test_checkpoint_list_is_validated(source, words):
    cfg = demo_test_config()
    cfg["source"] = {**cfg["source"], **source}
    with pytest.raises(ConfigError, match=words):
        validate_config(cfg)


def test_workflow_installs_shipped_sources_instead_of_pretraining(fresh_project, tmp_path):
    """The rule `install_source` replaces `pretrain_source` when source.checkpoints is set."""
    cfg = demo_test_config()
    data = fresh_project.root / "data" / "sources"
    data.mkdir(parents=True, exist_ok=True)
    entries = []
    for seed in cfg["source"]["seeds"]:
        ckpt = shipped(data, cfg, seed)
        entries.append({"seed": seed, "path": str(ckpt.relative_to(fresh_project.root)), "sha256": sha256_file(ckpt)})
    cfg["source"]["checkpoints"] = entries
    fresh_project.write_config(yaml.safe_dump(cfg, sort_keys=False))
    targets = [f"results/source/seed{s}/final.pt" for s in cfg["source"]["seeds"]]
    jobs = {j.rule for j in fresh_project.dry_run(*targets)}
    assert jobs == {"install_source"}
    fresh_project.snakemake("--cores", "1", "--workflow-profile", "workflow/profiles/default", *targets)
    for seed, target in zip(cfg["source"]["seeds"], targets):
        _, meta = load_checkpoint(fresh_project.root / target)
        assert meta["workflow"]["seed"] == seed and meta["workflow"]["installed_from"] == f"data/sources/seed{seed}.pt"
        assert (fresh_project.root / "logs" / "install_source" / f"seed{seed}.log").is_file()


def test_source_demo_overlay_pretrains_longer_on_the_demo_model():
    """config/source-demo.yaml merged over config/config.yaml (Snakemake's --configfile rule: nested
    dicts update key by key) validates, pretrains every seed, and only changes source.train."""
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    demo = load_configfile(str(ROOT / "config" / "config.yaml"))
    merged = load_configfile(str(ROOT / "config" / "config.yaml"))
    update_config(merged, load_configfile(str(ROOT / "config" / "source-demo.yaml")))
    cfg = validate_config(merged)
    assert cfg["source"]["checkpoints"] == [] and cfg["source"]["import_checkpoint"] is None
    assert cfg["source"]["train"]["iterations"] > demo["source"]["train"]["iterations"]
    assert {k: v for k, v in merged.items() if k != "source"} == {k: v for k, v in demo.items() if k != "source"}


# --- source.continue_from: a further pretraining phase from a pinned source -----------------------------------


@pytest.fixture(scope="module")
def source_data(tmp_path_factory) -> Path:
    """The test config's source domain, prepared by the CLI."""
    root = tmp_path_factory.mktemp("data")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(demo_test_config()))
    assert main(["prepare", "--config", str(config), "--domain", "mnist-source", "--out", str(root / "mnist-source")]) == 0
    return root / "mnist-source"


def continued_config(tmp_path: Path, cfg: dict, entries: list[dict], iterations: int = 2) -> Path:
    train = {**cfg["source"]["train"], "iterations": iterations, "checkpoint_every": iterations, "sample_every": iterations}
    cfg = {**cfg, "source": {**cfg["source"], "seeds": [0], "continue_from": entries, "train": train}}
    path = tmp_path / "continue.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def pretrain(config: Path, data: Path, out: Path) -> int:
    return main(["pretrain", "--config", str(config), "--seed", "0", "--data", str(data), "--out", str(out), "--no-resume"])


def relative_distance(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in b)
    return (num / sum(float(b[k].pow(2).sum()) for k in b)) ** 0.5


def test_continued_pretraining_starts_from_the_pinned_weights(tmp_path, source_data):
    """Two steps from a pinned source stay near its g and d; two steps from scratch (same seed) do not;
    the run records which file it continued."""
    cfg = demo_test_config()
    start = shipped(tmp_path, cfg, seed=0, init=7)  # not the weights seed 0 starts from
    base, _ = load_checkpoint(start)
    config = continued_config(tmp_path, cfg, [{"seed": 0, "path": str(start), "sha256": sha256_file(start)}])
    assert pretrain(config, source_data, tmp_path / "continued") == 0
    (tmp_path / "scratch").mkdir()
    scratch = continued_config(tmp_path / "scratch", cfg, [])
    assert pretrain(scratch, source_data, tmp_path / "scratch-run") == 0
    cont, meta = load_checkpoint(tmp_path / "continued" / "final.pt")
    fresh, fresh_meta = load_checkpoint(tmp_path / "scratch-run" / "final.pt")
    for name in ("g", "d"):
        near, far = relative_distance(cont[name], base[name]), relative_distance(fresh[name], base[name])
        assert near < 0.1 < far, (name, near, far)
    assert meta["workflow"]["continued_from"] == {"path": str(start), "sha256": sha256_file(start), "step": 5}
    assert meta["inputs"]["continue_from"]["sha256"] == sha256_file(start)
    assert "continued_from" not in fresh_meta["workflow"]


def test_a_changed_start_file_is_refused_before_it_is_read(tmp_path, source_data, caplog):
    cfg = demo_test_config()
    start = shipped(tmp_path, cfg, seed=0)
    config = continued_config(tmp_path, cfg, [{"seed": 0, "path": str(start), "sha256": sha256_file(start)}])
    with open(start, "ab") as f:
        f.write(b"\0")
    assert pretrain(config, source_data, tmp_path / "run") == 1
    assert "differs from source.continue_from" in caplog.text
    assert not (tmp_path / "run" / "final.pt").exists()


@pytest.mark.parametrize(
    "source, words",
    [
        ({"seeds": [0], "checkpoints": [{"seed": 0, "path": "a.pt", "sha256": "0" * 64}],
          "continue_from": [{"seed": 0, "path": "b.pt", "sha256": "0" * 64}]}, "only to sources pretrained in the run"),
        ({"seeds": [0], "continue_from": [{"seed": 1, "path": "b.pt", "sha256": "0" * 64}]}, "at most one entry for each"),
    ],
)
def test_continue_from_is_validated(source, words):
    cfg = demo_test_config()
    cfg["source"] = {**cfg["source"], **source}
    with pytest.raises(ConfigError, match=words):
        validate_config(cfg)
