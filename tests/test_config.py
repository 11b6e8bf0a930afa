"""The config schema: defaults, key-path errors, cross-references; the same check in Snakemake and the CLI."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lfsgan.config import ConfigError, load_config, read_yaml, method_train_config, permutation_pairs, validate_config
from lfsgan.methods import METHODS, make_method

ROOT = Path(__file__).resolve().parents[1]


def demo() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "test.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "config" / name)
    assert cfg["evaluation"]["fid"]["extractor"] in ("inception-v3-compat", "lfsgan-demo-cnn")


def test_study_config_merged_as_snakemake_merges_it_validates_and_ships_its_sources():
    # config/study.yaml is only ever used over config/config.yaml (--configfile): merge it the way
    # Snakemake does, validate, and check every shipped source it names against its sha256.
    from snakemake.utils import update_config

    from lfsgan.io import sha256_file

    cfg = demo()
    update_config(cfg, yaml.safe_load((ROOT / "config" / "study.yaml").read_text()))
    cfg = validate_config(cfg, "config/study.yaml")
    assert cfg["replicates"] >= 3 and len(cfg["source"]["seeds"]) >= 3
    for entry in cfg["source"]["checkpoints"]:
        assert sha256_file(ROOT / entry["path"]) == entry["sha256"], entry["path"]


def test_defaults_come_from_the_schema():
    cfg = demo()
    del cfg["fisher"]
    out = validate_config(cfg)
    assert out["fisher"] == {"n_samples": 1000, "batch_size": 1, "seed": 0}
    assert out["permutation"]["max_iter"] == 100
    assert "fisher" not in cfg  # the input is not modified


def test_every_method_kind_has_one_options_schema():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    entry = schema["properties"]["methods"]["additionalProperties"]
    own = {k.removeprefix("options_") for k in schema["$defs"] if k.startswith("options_")} - {"base"}
    branches = entry["allOf"]
    base_branch = [b for b in branches if "not" in b["if"]["properties"]["kind"]]
    assert len(base_branch) == 1 and set(base_branch[0]["if"]["properties"]["kind"]["not"]["enum"]) == own
    routed = {b["if"]["properties"]["kind"]["const"]: b["then"]["properties"]["options"]["$ref"]
              for b in branches if "const" in b["if"]["properties"]["kind"]}
    assert routed == {k: f"#/$defs/options_{k}" for k in own}
    assert own <= set(entry["properties"]["kind"]["enum"]) == set(METHODS)


def test_method_option_defaults_come_from_the_schema():
    cfg = demo()
    cfg["methods"] = {"pb": {"kind": "piggyback"}, "ft": {"kind": "finetune", "options": {"style_mixing": 0.5}}}
    out = validate_config(cfg)
    assert out["methods"]["pb"]["options"] == {"style_mixing": 0.9, "lambda_u": 0.25, "fc": False, "init": "source"}
    assert out["methods"]["ft"]["options"] == {"style_mixing": 0.5}
    # the methods read the same defaults when built without a config file
    assert make_method("piggyback").options == out["methods"]["pb"]["options"]


@pytest.mark.parametrize(
    "mutate, path, words",
    [
        (lambda c: c["model"].update(chanel_max=32), "model", "chanel_max"),
        (lambda c: c["model"].update(style_dim="64"), "model.style_dim", "not of type 'integer'"),
        (lambda c: c["methods"]["lfsgan"].update(kind="lora"), "methods.lfsgan.kind", "is not one of"),
        (lambda c: c["task_train"].update(iterations=0), "task_train.iterations", "minimum"),
        (lambda c: c["data"].update(resolution=48), "data.resolution", "is not one of"),
        (lambda c: c.update(tasks=["inverted", "nope"]), "tasks.1", "not a key of data.domains"),
        (lambda c: c["source"].update(domain="nope"), "source.domain", "not a key of data.domains"),
        (lambda c: c["data"]["domains"].update(x={"builtin": "mnist-nope"}), "data.domains.x.builtin", "unknown demo domain"),
        (lambda c: c["permutation"].update(pairs=[[0, 7]]), "permutation.pairs.0", "not in source.seeds"),
        (lambda c: c["data"]["domains"].update(x={"shots": "s/"}), "data.domains.x", "give either `builtin: NAME`"),
        (lambda c: c["data"]["domains"].update(x={"builtin": "mnist-sketch", "path": "p/"}), "data.domains.x", "not ['builtin', 'path']"),
        (lambda c: c["data"]["domains"].update(x={"builtin": "mnist-sketch", "shots": "s/"}), "data.domains.x.shots", "only a `path` domain"),
        (lambda c: c["data"].update(sampling="bootstrap"), "data.sampling", "is not one of"),
        # method options: checked per kind against $defs/options_<kind>
        (lambda c: c["methods"]["ewc"]["options"].update(lamda=1), "methods.ewc.options", "'lamda' was unexpected"),
        (lambda c: c["methods"]["lfsgan"]["options"].update(rank=0), "methods.lfsgan.options.rank", "minimum"),
        (lambda c: c["methods"]["piggyback"]["options"].update(rank=2), "methods.piggyback.options", "'rank' was unexpected"),
        (lambda c: c["methods"]["piggyback"]["options"].update(lambda_u=0), "methods.piggyback.options.lambda_u", "minimum"),
        (lambda c: c["methods"]["lfsgan"]["options"].update(mode_seeking="on"), "methods.lfsgan.options.mode_seeking", "is not one of"),
    ],
)
def test_errors_name_the_key_path(mutate, path, words):
    cfg = demo()
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, source="my.yaml")
    msg = str(e.value)
    assert f"my.yaml: key '{path}'" in msg and words in msg


def test_misspelt_key_lists_the_allowed_ones():
    cfg = demo()
    cfg["evaluation"]["n_sample"] = 3
    with pytest.raises(ConfigError, match=r"allowed keys here: .*n_samples"):
        validate_config(cfg)


def test_method_train_config_overrides_task_train():
    cfg = validate_config(demo())
    cfg["methods"]["ewc"]["train"] = {"iterations": 7}
    merged = method_train_config(cfg, "ewc")
    assert merged["iterations"] == 7 and merged["batch"] == cfg["task_train"]["batch"]


def test_permutation_pairs_default_to_consecutive_seeds():
    cfg = validate_config(demo())
    assert permutation_pairs(cfg) == [(0, 1)]
    cfg["permutation"]["enabled"] = False
    assert permutation_pairs(cfg) == []


def test_yaml_tags_are_not_executed(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("device: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    assert not (Path.cwd() / "pwned").exists()


def test_cli_rejects_bad_config_before_running(tmp_path):
    cfg = demo()
    cfg["model"]["chanel_max"] = 32
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "lfsgan.cli", "prepare", "--config", str(path), "--domain", "inverted", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2
    assert "key 'model'" in r.stderr and "chanel_max" in r.stderr
    assert not (tmp_path / "o").exists()


def test_snakemake_rejects_bad_config_before_any_job(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "tasks=[nope]"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode != 0
    assert "tasks.0" in r.stdout + r.stderr and "not a key of data.domains" in r.stdout + r.stderr


def test_snakemake_rejects_a_misspelt_method_option(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("methods:\n  ewc: {kind: ewc, options: {lamda: 1.0}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/config.yaml", str(extra)],
        capture_output=True, text=True, cwd=ROOT,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "methods.ewc.options" in out and "'lamda' was unexpected" in out


DUPLICATES = {  # (config text change, key named, its two lines in config/test.yaml after the change)
    "methods.finetune": ("  finetune: {kind: finetune}\n", "  finetune: {kind: finetune}\n  finetune: {kind: ewc, options: {lambda: 1.0}}\n", "finetune"),
    "data.domains.sketch": ("    sketch: {builtin: mnist-sketch}\n", "    sketch: {builtin: mnist-sketch}\n    sketch: {builtin: mnist-inverted}\n", "sketch"),
}


def _with_duplicate(case: str) -> tuple[str, str, tuple[int, int]]:
    old, new, key = DUPLICATES[case]
    text = (ROOT / "config" / "test.yaml").read_text()
    assert old in text
    text = text.replace(old, new)
    first = text.splitlines().index(new.splitlines()[0]) + 1
    return text, key, (first, first + 1)


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_keys_are_refused_naming_the_key_and_both_lines(tmp_path, case):
    text, key, (a, b) = _with_duplicate(case)
    assert yaml.safe_load(text)  # plain YAML takes it silently, keeping the last entry
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{path}: key '{key}' appears twice in one mapping \(lines {a} and {b}\)"):
        load_config(path)


def test_a_key_brought_in_by_a_yaml_merge_may_be_overridden_but_not_given_twice(tmp_path):
    """YAML merge keys (``<<: *anchor``) exist so that a mapping can override what they bring in (the
    sweep's variants: ``{<<: *rank1, ms_weight: 3.0}``); the mapping's own keys still count once each."""
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {rank: 1, ms_weight: 1.0}\nvariant: {<<: *b, ms_weight: 3.0}\n")
    assert read_yaml(path) == {"base": {"rank": 1, "ms_weight": 1.0}, "variant": {"rank": 1, "ms_weight": 3.0}}
    path.write_text("base: &b {rank: 1}\nvariant: {<<: *b, ms_weight: 3.0, ms_weight: 2.0}\n")
    with pytest.raises(ConfigError, match=r"key 'ms_weight' appears twice in one mapping \(lines 2 and 2\)"):
        read_yaml(path)


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_snakemake_refuses_duplicate_keys_before_any_job(fresh_project, case):
    text, key, (a, b) = _with_duplicate(case)
    fresh_project.write_config(text)
    r = fresh_project.snakemake("-n", "--cores", "1", check=False)
    assert r.returncode != 0
    assert f"key '{key}' appears twice in one mapping (lines {a} and {b})" in r.stdout
    assert not (fresh_project.root / "results").exists()


FLOATS = {"replicates": ("replicates", 2.0), "task_train.iterations": ("task_train", "iterations", 1.0e9)}


def _set(cfg: dict, *path) -> dict:
    node = cfg
    for k in path[:-2]:
        node = node[k]
    node[path[-2]] = path[-1]
    return cfg


@pytest.mark.parametrize("case", list(FLOATS))
def test_a_float_where_an_integer_belongs_is_refused_by_the_schema(case):
    cfg = _set(yaml.safe_load((ROOT / "config" / "test.yaml").read_text()), *FLOATS[case])
    with pytest.raises(ConfigError, match=rf"key '{case}': .* is not of type 'integer' \(write a whole number"):
        validate_config(cfg)
    validate_config(_set(cfg, *FLOATS[case][:-1], int(FLOATS[case][-1])))  # the same value as an integer passes


@pytest.mark.parametrize("case", list(FLOATS))
def test_snakemake_dry_run_refuses_a_float_where_an_integer_belongs(fresh_project, case):
    cfg = _set(yaml.safe_load(fresh_project.read_config()), *FLOATS[case])
    fresh_project.write_config(yaml.safe_dump(cfg, sort_keys=False))
    r = fresh_project.snakemake("-n", "--cores", "1", check=False)
    assert r.returncode != 0 and f"key '{case}'" in r.stdout and "is not of type 'integer'" in r.stdout
    assert not (fresh_project.root / "results").exists()


def test_cli_lists_verbs():
    r = subprocess.run([sys.executable, "-m", "lfsgan.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    for verb in ("prepare", "pretrain", "import-source", "install-source", "fisher", "train-task", "sample", "evaluate", "match", "lmc", "report"):
        assert verb in r.stdout


# --- config/paper.yaml's provenance labels -------------------------------------------------------
#: the official LFS-GAN code (KHU-AGI/LFS-GAN at 17c12f7) as read: the value each key has there
#: (train.py's argparse defaults and loader, generate.py, evaluate_b_lpips.py, prepare_data.py)
OFFICIAL = {
    "data.resize_filter": "lanczos",  # prepare_data.py: resample=Image.LANCZOS
    "data.hflip": True,  # train.py: transforms.RandomHorizontalFlip()
    "task_train.iterations": 3002,  # --iter
    "task_train.batch": 4,  # --batch
    "task_train.lr_g": 0.002,  # --lr (G and D)
    "task_train.lr_d": 0.002,
    "task_train.r1_gamma": 10.0,  # --r1
    "task_train.r1_every": 16,  # --d_reg_every
    "task_train.path_reg_weight": 2.0,  # --path_regularize
    "task_train.path_reg_every": 4,  # --g_reg_every
    "task_train.path_batch_shrink": 2,  # --path_batch_shrink
    "task_train.style_mixing": 0.9,  # --mixing
    "task_train.ema_decay": 0.5 ** (32 / (10 * 1000)),  # accum, rounded in the config
    "task_train.checkpoint_every": 100,  # --save_freq
    "evaluation.seed": 10,  # generate.py: torch.manual_seed(10)
    "evaluation.lpips.n_fake": 1000,  # evaluate_b_lpips.py: os.listdir(fake_path)[:1000]
    "evaluation.lpips.cluster_size": 50,  # evaluate_b_lpips.py: --cluster_size 50
}
#: keys whose lfsgan value the official code does not use: data loading there is
#: DataLoader(RandomSampler (without replacement), batch 4, drop_last=True) — two batches per pass
#: over 10 shots, two shots skipped each pass; lfsgan's `epochs` sampler covers every shot
NOT_OFFICIAL = {"data.sampling"}


def _labelled_values(path: Path) -> dict[str, str]:
    """``{dotted key: label}`` of every ``key: value  # [label] ...`` line of a YAML file (mapping
    keys only; a section line ``key:`` with nothing after the colon carries no value)."""
    import re

    labels, stack = {}, []
    for line in path.read_text().splitlines():
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):\s*([^#\s][^#]*?)?\s*(?:#\s*\[(\w+)\].*)?$", line)
        if not m:
            continue
        indent, key, value, label = len(m[1]), m[2], m[3], m[4]
        stack = [(i, k) for i, k in stack if i < indent]
        if value is None:
            stack.append((indent, key))
        elif label:
            labels[".".join([k for _, k in stack] + [key])] = label
    return labels


def test_paper_config_code_labels_only_on_official_values():
    """A `[code]` label in config/paper.yaml means the official code runs with that value."""
    labels = _labelled_values(ROOT / "config" / "paper.yaml")
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())

    def value(dotted: str):
        node = config
        for part in dotted.split("."):
            node = node[part]
        return node

    code = {k for k, label in labels.items() if label == "code"}
    assert code, "no [code]-labelled value found: the parser or the file changed"
    assert code <= OFFICIAL.keys(), f"[code] on values the official code does not set: {sorted(code - OFFICIAL.keys())}"
    for key in code:
        assert value(key) == pytest.approx(OFFICIAL[key], rel=1e-4) if isinstance(OFFICIAL[key], float) else value(key) == OFFICIAL[key], key
    for key in NOT_OFFICIAL:
        assert labels.get(key) == "ours", f"{key} is lfsgan's own choice: label it [ours]"
