"""The shipped demo CNN (evaluation.fid.extractor_checkpoint): used only when it is, byte for byte, what
`lfsgan train-extractor` would write for the run's inputs and steps; otherwise the run stops and says why."""

import copy
import os
import pickle
import shutil
from pathlib import Path

import pytest
import yaml

from lfsgan.cli import main
from lfsgan.config import ConfigError, validate_config
from lfsgan.io import sha256_file
from lfsgan.metrics.demo_extractor import load_demo_extractor

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def config_with(tmp_path: Path, cfg: dict, name: str = "config.yaml", **fid) -> Path:
    cfg = copy.deepcopy(cfg)
    cfg["evaluation"]["fid"].update(fid)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def prepare(config: Path, cfg: dict, root: Path) -> list[str]:
    """The extractor's input folders as the workflow prepares them: the source domain, then the tasks."""
    dirs = []
    for domain in [cfg["source"]["domain"], *cfg["tasks"]]:
        assert main(["prepare", "--config", str(config), "--domain", domain, "--out", str(root / domain)]) == 0
        dirs.append(str(root / domain))
    return dirs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The test config's four prepared domains (16 px) and the demo CNN `lfsgan train-extractor` trains on them."""
    tmp = tmp_path_factory.mktemp("extractor")
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config = config_with(tmp, cfg)
    dirs = prepare(config, cfg, tmp / "data")
    weights = tmp / "trained.pt"
    assert main(["train-extractor", "--config", str(config), "--data", *dirs, "--out", str(weights)]) == 0
    return cfg, dirs, weights


def install(config: Path, dirs: list[str], checkpoint: Path, out: Path) -> int:
    return main(["install-extractor", "--config", str(config), "--data", *dirs, "--checkpoint", str(checkpoint), "--out", str(out)])


def test_installed_extractor_is_the_trained_file_byte_for_byte(trained, tmp_path):
    cfg, dirs, weights = trained
    config = config_with(tmp_path, cfg, extractor_checkpoint={"path": str(weights), "sha256": sha256_file(weights)})
    out = tmp_path / "results" / "demo_cnn.pt"
    assert install(config, dirs, weights, out) == 0
    assert out.read_bytes() == weights.read_bytes()
    _, meta = load_demo_extractor(out)
    assert len(meta["inputs_sha256"]) == 64 and meta["steps"] == cfg["evaluation"]["fid"]["extractor_steps"]


def test_a_second_training_writes_the_same_file(trained, tmp_path):
    """What makes shipping the file sound: training is seeded, so the same inputs give the same bytes."""
    cfg, dirs, weights = trained
    again = tmp_path / "again.pt"
    assert main(["train-extractor", "--config", str(config_with(tmp_path, cfg)), "--data", *dirs, "--out", str(again)]) == 0
    assert sha256_file(again) == sha256_file(weights)


@pytest.mark.parametrize("change, words", [
    ("sha256", "differs from evaluation.fid.extractor_checkpoint"),
    ("steps", "trained for 10 steps, the config's evaluation.fid.extractor_steps is 11"),
    ("data", "trained on other inputs than this run's (the prepared sets ['LAST'] differ"),
], ids=["sha256", "steps", "data"])
def test_an_extractor_that_is_not_what_the_run_would_train_is_refused(trained, tmp_path, caplog, change, words):
    cfg, dirs, weights = trained
    entry = {"path": str(weights), "sha256": "0" * 64 if change == "sha256" else sha256_file(weights)}
    fid = {"extractor_checkpoint": entry, **({"extractor_steps": 11} if change == "steps" else {})}
    config = config_with(tmp_path, cfg, **fid)
    if change == "data":  # the last task's folder holding another domain's images
        last = Path(dirs[-1]).name
        shutil.copytree(dirs[0], tmp_path / "other" / last)
        dirs, words = [*dirs[:-1], str(tmp_path / "other" / last)], words.replace("LAST", last)
    out = tmp_path / "results" / "demo_cnn.pt"
    assert install(config, dirs, weights, out) == 1
    assert words in caplog.text
    assert not out.exists()


def test_an_extractor_trained_with_other_settings_is_refused(trained, tmp_path, caplog):
    """Same inputs and steps, another batch size: not the file `lfsgan train-extractor` writes."""
    from lfsgan.metrics import train_demo_extractor
    from lfsgan.verbs.train_extractor import extractor_inputs, extractor_settings

    cfg, dirs, _ = trained
    full = validate_config(copy.deepcopy(cfg))  # with the schema's defaults, as a verb reads it
    x = extractor_inputs(full, dirs)
    other = tmp_path / "other.pt"
    train_demo_extractor(x.images, x.labels, other, **{**extractor_settings(full), "batch_size": 8}, digits=x.digits,
                         styles=x.styles, style_names=x.style_names, label_names=x.label_names, inputs_sha256=x.sha256(),
                         progress=False)
    config = config_with(tmp_path, cfg, extractor_checkpoint={"path": str(other), "sha256": sha256_file(other)})
    out = tmp_path / "results" / "demo_cnn.pt"
    assert install(config, dirs, other, out) == 1
    assert "trained with other settings than `lfsgan train-extractor` uses (file, here: {'batch_size': (8, 64)})" in caplog.text
    assert not out.exists()


def test_pickled_code_in_a_pinned_extractor_never_runs(trained, tmp_path, caplog):
    """Even with a matching sha256 (a file that was malicious from the start), nothing executes."""
    cfg, dirs, _ = trained
    marker = tmp_path / "pwned"

    class Attack:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"convs.0.weight": Attack()}))
    config = config_with(tmp_path, cfg, extractor_checkpoint={"path": str(evil), "sha256": sha256_file(evil)})
    out = tmp_path / "results" / "demo_cnn.pt"
    assert install(config, dirs, evil, out) == 1
    assert not marker.exists() and not out.exists()
    assert "not a loadable tensors-only checkpoint" in caplog.text


def test_only_the_demo_cnn_can_be_shipped():
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["evaluation"]["fid"] = {"extractor": "inception-v3-compat", "extractor_checkpoint": {"path": "x.pt", "sha256": "0" * 64}}
    with pytest.raises(ConfigError, match="only the lfsgan-demo-cnn extractor"):
        validate_config(cfg)


def test_workflow_installs_the_shipped_extractor_instead_of_training_it(trained, fresh_project):
    """The rule `install_extractor` replaces `train_extractor` when the config names a shipped file."""
    cfg, _, weights = trained
    shipped = fresh_project.root / "data" / "extractor" / "demo-cnn.pt"
    shipped.parent.mkdir(parents=True, exist_ok=True)
    shipped.write_bytes(weights.read_bytes())
    cfg = copy.deepcopy(cfg)
    cfg["evaluation"]["fid"]["extractor_checkpoint"] = {"path": "data/extractor/demo-cnn.pt", "sha256": sha256_file(shipped)}
    fresh_project.write_config(yaml.safe_dump(cfg, sort_keys=False))
    target = "results/extractor/demo_cnn.pt"
    assert {j.rule for j in fresh_project.dry_run(target)} == {"prepare_data", "install_extractor"}
    fresh_project.snakemake("--cores", "2", "--workflow-profile", "workflow/profiles/default", target)
    assert (fresh_project.root / target).read_bytes() == weights.read_bytes()
    assert "installed data/extractor/demo-cnn.pt" in (fresh_project.root / "logs" / "install_extractor" / "demo_cnn.log").read_text()


def test_the_demos_shipped_extractor_is_what_its_config_would_train(tmp_path):
    """config/config.yaml's extractor_checkpoint: the file's sha256, its steps, and the digest of the inputs
    it was trained on, against the demo's data prepared here by this code. A change to the demo data or
    its renderings must come with a remade file (bash scripts/train-demo-extractor.sh), or the demo stops."""
    from lfsgan.verbs.train_extractor import extractor_inputs

    cfg = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    entry = cfg["evaluation"]["fid"]["extractor_checkpoint"]
    assert entry, "the demo config ships its extractor"
    assert sha256_file(ROOT / entry["path"]) == entry["sha256"]
    _, meta = load_demo_extractor(ROOT / entry["path"])
    assert meta["steps"] == cfg["evaluation"]["fid"]["extractor_steps"]
    dirs = prepare(ROOT / "config" / "config.yaml", cfg, tmp_path)
    assert meta["inputs_sha256"] == extractor_inputs(cfg, dirs).sha256()
