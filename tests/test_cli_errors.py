"""Bad input through the `lfsgan` command as a user runs it: one clear line naming the file, a
non-zero exit, no traceback, nothing half-written.

Each test plants the bad input for real (an empty file, a checkpoint of another architecture, NaN
weights, a learning rate that diverges, a full filesystem, a truncated zip) and runs the CLI in a
subprocess.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from lfsgan.config import load_config
from lfsgan.train import build_models
from lfsgan.train.checkpoint import save_final
from lfsgan.verbs._models import model_config

REPO = Path(__file__).resolve().parents[1]
LFSGAN = Path(sys.executable).parent / "lfsgan"
TEST_CONFIG = REPO / "config" / "test.yaml"


def lfsgan(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("LFSGAN_FAIL_RULE", None)
    return subprocess.run([str(LFSGAN), *map(str, args)], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


def assert_one_clear_line(run: subprocess.CompletedProcess, *names: str, rc: int | None = None) -> str:
    """Non-zero exit, no traceback, exactly one ERROR line, and it names every one of ``names``."""
    assert run.returncode != 0, run.stdout
    if rc is not None:
        assert run.returncode == rc, run.stdout
    assert "Traceback" not in run.stdout, run.stdout
    errors = [line for line in run.stdout.splitlines() if " ERROR " in line]
    assert len(errors) == 1, run.stdout
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


def write_config(path: Path, change) -> Path:
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    change(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def rosinality_checkpoint(path: Path, cfg: dict, nan: bool = False) -> Path:
    """A rosinality-format file ({"g", "d", "g_ema"}) of the model ``cfg`` describes."""
    G, D = build_models(model_config(cfg))
    g = {k: v.clone() for k, v in G.state_dict().items()}
    if nan:
        g["style.1.weight"].view(-1)[0] = float("nan")
    torch.save({"g": g, "d": D.state_dict(), "g_ema": g}, path)
    return path


def other_architecture(cfg: dict) -> dict:
    return {**cfg, "model": {**cfg["model"], "style_dim": cfg["model"]["style_dim"] * 2}}


@pytest.fixture(scope="module")
def cfg():
    return load_config(TEST_CONFIG)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The test config's source and first task domains, prepared by the CLI."""
    root = tmp_path_factory.mktemp("data")
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    for domain in (cfg["source"]["domain"], cfg["tasks"][0]):
        run = lfsgan("prepare", "--config", TEST_CONFIG, "--domain", domain, "--out", root / domain, cwd=root)
        assert run.returncode == 0, run.stdout
    return root


def test_empty_checkpoint_file(tmp_path):
    empty = tmp_path / "ffhq.pt"
    empty.touch()
    run = lfsgan("import-source", "--config", TEST_CONFIG, "--checkpoint", empty, "--out", tmp_path / "src", cwd=tmp_path)
    line = assert_one_clear_line(run, empty)
    assert "empty file (0 bytes)" in line
    assert not (tmp_path / "src" / "final.pt").exists()


def test_import_of_another_architecture(tmp_path, cfg):
    wrong = rosinality_checkpoint(tmp_path / "wrong.pt", other_architecture(cfg))
    run = lfsgan("import-source", "--config", TEST_CONFIG, "--checkpoint", wrong, "--out", tmp_path / "src", cwd=tmp_path)
    line = assert_one_clear_line(run, wrong)
    assert "does not fit the config's model" in line and "shapes differ" in line
    assert not (tmp_path / "src" / "final.pt").exists()


@pytest.fixture
def wrong_source(tmp_path, cfg) -> Path:
    """A source final.pt of another architecture than the test config's model."""
    G, D = build_models(model_config(other_architecture(cfg)))
    path = tmp_path / "source" / "final.pt"
    save_final(path, G, D, None, {"model": model_config(other_architecture(cfg))})
    return path


def test_fisher_of_a_source_of_another_architecture(tmp_path, wrong_source):
    run = lfsgan("fisher", "--config", TEST_CONFIG, "--source", wrong_source, "--out", tmp_path / "fisher", cwd=tmp_path)
    line = assert_one_clear_line(run, wrong_source)
    assert "'g' does not fit the config's model" in line
    assert not (tmp_path / "fisher" / "fisher.pt").exists()


def test_train_task_on_a_source_of_another_architecture(tmp_path, wrong_source, prepared, cfg):
    task = cfg["tasks"][0]
    run = lfsgan("train-task", "--config", TEST_CONFIG, "--method", "finetune", "--task", task, "--source", wrong_source,
                 "--data", prepared / task, "--out", tmp_path / "task", cwd=tmp_path)
    assert_one_clear_line(run, wrong_source, "does not fit the config's model")
    assert not (tmp_path / "task" / "task.pt").exists()


def test_unknown_method(tmp_path, cfg, prepared):
    task = cfg["tasks"][0]
    run = lfsgan("train-task", "--config", TEST_CONFIG, "--method", "no-such-method", "--task", task,
                 "--source", tmp_path / "final.pt", "--data", prepared / task, "--out", tmp_path / "task", cwd=tmp_path)
    line = assert_one_clear_line(run, TEST_CONFIG, "--method 'no-such-method'", rc=2)
    assert all(name in line for name in cfg["methods"])


def test_non_finite_weights_are_refused_at_import(tmp_path, cfg):
    bad = rosinality_checkpoint(tmp_path / "nan.pt", cfg, nan=True)
    run = lfsgan("import-source", "--config", TEST_CONFIG, "--checkpoint", bad, "--out", tmp_path / "src", cwd=tmp_path)
    assert_one_clear_line(run, bad, "'g.style.1.weight'", "non-finite")
    assert not (tmp_path / "src" / "final.pt").exists()


def test_non_finite_source_is_refused_by_fisher(tmp_path, cfg):
    G, D = build_models(model_config(cfg))
    with torch.no_grad():
        next(iter(D.parameters())).view(-1)[0] = float("inf")
    path = tmp_path / "source" / "final.pt"
    save_final(path, G, D, None, {"model": model_config(cfg)})
    run = lfsgan("fisher", "--config", TEST_CONFIG, "--source", path, "--out", tmp_path / "fisher", cwd=tmp_path)
    assert_one_clear_line(run, path, "non-finite")


def test_training_that_turns_nan_stops_with_one_line(tmp_path, prepared, cfg):
    def diverge(c):
        c["source"]["train"].update(lr_g=1e12, lr_d=1e12)

    config = write_config(tmp_path / "config.yaml", diverge)
    out = tmp_path / "run"
    run = lfsgan("pretrain", "--config", config, "--seed", "0", "--data", prepared / cfg["source"]["domain"], "--out", out, cwd=tmp_path)
    line = assert_one_clear_line(run, "non-finite" if "non-finite" in run.stdout else "is nan", "Lower the learning rates")
    assert "lfsgan pretrain" in line
    assert not (out / "final.pt").exists()


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs {tmp_path}"],
                           capture_output=True) if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0


def test_full_disk(tmp_path, cfg):
    """A real full filesystem: a 32 KiB tmpfs mounted in a private mount namespace (unshare)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces)")
    good = rosinality_checkpoint(tmp_path / "good.pt", cfg)
    out = mnt / "source"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = (f"mount -t tmpfs -o size=32k tmpfs {mnt} && "
              f"{LFSGAN} import-source --config {TEST_CONFIG} --checkpoint {good} --out {out}; rc=$?; "
              f"ls -A {out}; exit $rc")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    line = assert_one_clear_line(run, out, "No space left on device")
    assert "free space" in line
    assert "final.pt" not in run.stdout.split(line, 1)[1]  # `ls -A` of --out after the failure: nothing half-written


def test_truncated_zip_domain(tmp_path):
    from PIL import Image

    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as z:
        for i in range(6):
            png = io.BytesIO()
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(png, "PNG")
            z.writestr(f"img{i}.png", png.getvalue())
    truncated = tmp_path / "mine.zip"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    config = write_config(tmp_path / "config.yaml", lambda c: c["data"]["domains"].update(mine={"path": str(truncated)}))
    run = lfsgan("prepare", "--config", config, "--domain", "mine", "--out", tmp_path / "prepared", cwd=tmp_path)
    line = assert_one_clear_line(run, truncated)
    assert "truncated or damaged .zip" in line
    assert not (tmp_path / "prepared").exists()


def _nothing_under_results(cwd: Path) -> None:
    results = cwd / "results"
    assert not results.exists() or not any(results.rglob("*")), sorted(results.rglob("*"))


@pytest.mark.parametrize("case", ["duplicate key", "replicates: 2.0", "iterations: 1.0e+9"])
def test_bad_config_values_stop_the_verb_with_one_line(tmp_path, case):
    text = TEST_CONFIG.read_text()
    if case == "duplicate key":
        text = text.replace("  finetune: {kind: finetune}\n", "  finetune: {kind: finetune}\n  finetune: {kind: ewc}\n")
        first = text.splitlines().index("  finetune: {kind: finetune}") + 1
        named = ("key 'finetune' appears twice", f"lines {first} and {first + 1}")
    elif case == "replicates: 2.0":
        text += "replicates: 2.0\n"
        named = ("key 'replicates'", "not of type 'integer'", "whole number")
    else:
        text = text.replace("task_train: {iterations: 8,", "task_train: {iterations: 1.0e+9,")
        named = ("key 'task_train.iterations'", "not of type 'integer'", "whole number")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    run = lfsgan("prepare", "--config", config, "--domain", "inverted", "--out", "results/data/inverted", cwd=tmp_path)
    assert_one_clear_line(run, config, *named, rc=2)
    _nothing_under_results(tmp_path)


@pytest.fixture(scope="module")
def source(tmp_path_factory, cfg) -> Path:
    """A source final.pt of the test config's model (untrained weights: enough to train a task from)."""
    torch.manual_seed(0)
    G, D = build_models(model_config(cfg))
    path = tmp_path_factory.mktemp("source") / "final.pt"
    save_final(path, G, D, None, {"model": model_config(cfg)})
    return path


def test_previous_task_state_of_another_method_is_refused(tmp_path, cfg, prepared, source):
    first, second = cfg["tasks"][:2]
    run = lfsgan("prepare", "--config", TEST_CONFIG, "--domain", second, "--out", prepared / second, cwd=prepared)
    assert run.returncode == 0, run.stdout
    other = tmp_path / "piggyback" / first
    run = lfsgan("train-task", "--config", TEST_CONFIG, "--method", "piggyback", "--task", first, "--source", source,
                 "--data", prepared / first, "--out", other, cwd=tmp_path)
    assert run.returncode == 0, run.stdout
    out = tmp_path / "results" / "tasks" / "finetune" / second
    run = lfsgan("train-task", "--config", TEST_CONFIG, "--method", "finetune", "--task", second, "--source", source,
                 "--data", prepared / second, "--previous", other / "task.pt", "--out", out, cwd=tmp_path)
    line = assert_one_clear_line(run, other / "task.pt", "kind 'piggyback'", "task 1 of a 'finetune' method is needed", rc=1)
    assert "KeyError" not in line
    _nothing_under_results(tmp_path)


def _pngs(folder: Path, n: int, seed: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        pixels = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(pixels).save(folder / f"shot{i:02d}.png")
    return folder


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_duplicate_shots_are_refused(tmp_path, kind):
    """Ten given shots of which two are one image (folder), or a zip with two members named alike."""
    full = _pngs(tmp_path / "full", 12, seed=0)
    shots = _pngs(tmp_path / "shots", 10, seed=1)
    if kind == "folder":
        (shots / "shot09.png").write_bytes((shots / "shot04.png").read_bytes())
        named = (f"the shots {shots}", "shot04.png and shot09.png are the same image")
    else:
        archive = tmp_path / "shots.zip"
        with zipfile.ZipFile(archive, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
            for i, png in enumerate(sorted(shots.iterdir())):
                z.write(png, "shot05.png" if i == 9 else png.name)  # the last member repeats a name
        shots, named = archive, (archive, "more than once (shot05.png)", "rebuild the .zip")
    config = write_config(tmp_path / "config.yaml",
                          lambda c: c["data"]["domains"].update(mine={"path": str(full), "shots": str(shots)}))
    run = lfsgan("prepare", "--config", config, "--domain", "mine", "--out", "results/data/mine", cwd=tmp_path)
    assert_one_clear_line(run, *named, rc=1)
    _nothing_under_results(tmp_path)
