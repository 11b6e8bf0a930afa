# Config validation, the resolved config every verb reads, wildcard constraints, helpers.
import json
import re
from pathlib import Path

import yaml

from lfsgan.codedeps import method_sources
from lfsgan.config import (
    config_digest,
    merge_sets,
    method_entry,
    method_runs,
    method_train_config,
    permutation_pairs,
    read_yaml,
    split_run,
    validate_config,
)

# Snakemake has read the config files with a YAML loader that keeps the last of two equal keys;
# read each again with lfsgan's strict one, so a duplicate key stops here, naming it and its lines.
for _configfile in workflow.configfiles:
    read_yaml(_configfile)

# Validate once, fill the schema's defaults in place (a bad key fails here, before any job).
_CONFIG_FILES = " + ".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml"
_resolved = validate_config(config, source=f"workflow config ({_CONFIG_FILES}, with --config if given)")
config.clear()
config.update(_resolved)

# Every verb gets the resolved config by path; the file is content-addressed, so changing the config
# writes a new file and never touches an old one. It is not an input of any job; per-rule reruns come from
# each rule's `params`, which hold only the config sections that rule depends on. Rules name it in
# their shell command as {CONFIG_FILE} (never in params, which would rerun everything).
CONFIG_FILE = f".snakemake/lfsgan/config-{config_digest(config)}.yaml"
Path(CONFIG_FILE).parent.mkdir(parents=True, exist_ok=True)
if not Path(CONFIG_FILE).exists():
    Path(CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=True))

DOMAINS = list(config["data"]["domains"])
TASKS = list(config["tasks"])
METHODS = method_runs(config)  # every method and replicate run (lfsgan.config.method_runs)
SEEDS = list(config["source"]["seeds"])
BASE_SEED = SEEDS[0]
PAIRS = permutation_pairs(config)
MERGE_SETS = ["_".join(map(str, s)) for s in merge_sets(config)]  # wildcard {seeds}: '0_1_2'
STE = bool(MERGE_SETS) and config["permutation"]["ste"]["enabled"]
GPU = 1 if config["use_gpu"] else 0
RES = config["resources"]
DEMO_EXTRACTOR = config["evaluation"]["fid"]["extractor"] == "lfsgan-demo-cnn"


# --- data-parallel training (train.devices x train.nodes processes; docs/distributed.md) ---------------
TORCHRUN = "python -m torch.distributed.run"


def data_parallel(train):
    """(processes per node, nodes) of a training config section."""
    return train.get("devices", 1), train.get("nodes", 1)


def launcher(train):
    """What a training rule's shell puts before `lfsgan`: nothing for one process; on one node,
    torchrun with `devices` workers on a free local port; on several nodes, `srun` starting one
    torchrun per node, which meet at the job's first node (port $LFSGAN_RDZV_PORT, default 29500).
    Braces are doubled for Snakemake's formatting of the shell string."""
    devices, nodes = data_parallel(train)
    if devices * nodes == 1:
        return ""
    if nodes == 1:
        return f"{TORCHRUN} --standalone --nproc-per-node={devices} --no-python "
    head = '"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):${{LFSGAN_RDZV_PORT:-29500}}"'
    return (f"srun --nodes={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 {TORCHRUN} --nnodes={nodes} "
            f"--nproc-per-node={devices} --rdzv-backend=c10d --rdzv-endpoint={head} --rdzv-id=\"$SLURM_JOB_ID\" --no-python ")


def launch_resources(train):
    """The executor resources of a training rule: `gpu` GPUs per process on one node (sbatch
    --gpus); on several nodes one SLURM task per node (`nodes`, `tasks`), each with `devices` GPUs
    (`gres`), and `mpi` so that the SLURM plugin leaves the `srun` to the rule's shell."""
    devices, nodes = data_parallel(train)
    if nodes == 1:
        return {"gpu": GPU * devices}
    gpus = {"gres": f"gpu:{devices}", "tasks_per_gpu": 0} if GPU else {}  # tasks_per_gpu 0: no --ntasks-per-gpu
    return {"nodes": nodes, "tasks": nodes, "mpi": "srun", **gpus}


for _method in METHODS:
    if data_parallel(method_train_config(config, _method)) != (1, 1):
        raise ValueError(f"methods.{_method}: task training sets train.devices/nodes; the workflow launches data-parallel "
                         "training for the source only (source.train); run `lfsgan train-task` under torchrun by hand")


def _alternatives(names):
    return "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))


def section(*keys):
    """A config section as canonical JSON, for `params` (a change reruns the job that uses it)."""
    node = config
    for k in keys:
        node = node[k]
    return json.dumps(node, sort_keys=True)


def source_checkpoint(seed=BASE_SEED):
    return f"results/source/seed{seed}/final.pt"


def shipped_source(seed):
    """The source.checkpoints entry of a seed (validated: every seed has exactly one)."""
    return next(e for e in config["source"]["checkpoints"] if e["seed"] == seed)


def domain_images(wildcards):
    """The image files of a folder domain, or the .zip, as inputs of `prepare_data`: a changed, added or
    removed image reruns the preparation and what follows. A built-in demo domain has none."""
    spec = config["data"]["domains"][wildcards.domain]
    from lfsgan.data.files import open_image_files  # local: only a folder domain needs it

    inputs = []
    for key in ("path", "shots"):  # the full set and, when given, the training shots
        if key not in spec:
            continue
        folder = Path(spec[key])
        if not folder.is_dir():
            inputs.append(spec[key])  # a .zip (or a missing path, which Snakemake then names)
            continue
        with open_image_files(folder) as files:
            inputs += [str(folder / name) for name in files.names]
    return inputs


def method_code(wildcards):
    """The method's own modules: editing one reruns that method's tasks (lfsgan/codedeps.py)."""
    return method_sources(method_entry(config, wildcards.method)["kind"], root=Path.cwd())


def replicate_shots_param(wildcards):
    """Which shots a replicate run draws: data.shots_per_replicate changes replicates k >= 1 only."""
    replicate = split_run(config, wildcards.method)[1]
    return json.dumps(bool(config["data"]["shots_per_replicate"]) and replicate > 0)


# What sampling reads (rules sample and sample_source): a change redraws every sample set.
SAMPLING = json.dumps({k: config["evaluation"][k] for k in ("n_samples", "seed", "truncation", "batch_size", "grid")},
                      sort_keys=True)


def task_index(task):
    return TASKS.index(task)


def task_states(method, last_task):
    """task.pt of the method's tasks 1..last_task, in order."""
    return [f"results/tasks/{method}/{t}/task.pt" for t in TASKS[: task_index(last_task) + 1]]


# (after t, task s <= t): the cells of every method's forgetting matrix
EVAL_PAIRS = [(after, s) for i, after in enumerate(TASKS) for s in TASKS[: i + 1]]


def evaluation_targets():
    """(method, after t, task s <= t) for every method: the forgetting matrix."""
    return [f"results/eval/{m}/after_{after}/{s}.json" for m in METHODS for after, s in EVAL_PAIRS]


def report_targets():
    return [
        "results/report/summary.csv",
        "results/report/summary.md",
        "results/report/claims.csv",
        "results/report/forgetting.png",
        "results/report/metrics_along_tasks.png",
        "results/report/samples.png",
        "results/report/quality.csv",
        "results/report/quality.png",
        "results/report/same_latents.json",
        *[f"results/report/same_latents_{t}.png" for t in TASKS],
    ]


def final_targets():
    targets = report_targets()
    targets += [f"results/source/seed{s}/samples.png" for s in SEEDS]
    return targets


EXTRACTOR = "results/extractor/demo_cnn.pt"
# what the demo CNN learns from (rule train_extractor, or install_extractor checks against): the source domain and the tasks
EXTRACTOR_DATA = [f"results/data/{d}/images.pt" for d in [config["source"]["domain"], *TASKS]]


def _previous_states(wc):
    return task_states(wc.method, wc.task)[:-1]


def _fisher_input(wc):
    return ["results/fisher/fisher.pt"] if method_entry(config, wc.method)["kind"] == "ewc" else []


def _extractor_input(wc=None):
    return [EXTRACTOR] if DEMO_EXTRACTOR else []


def _report_inputs(wc=None):
    return {
        "metrics": evaluation_targets(),
        "tasks": [f"results/tasks/{m}/{t}/task.pt" for m in METHODS for t in TASKS],
        "grids": [f"results/samples/{m}/after_{TASKS[-1]}/{s}/grid.png" for m in METHODS for s in TASKS],
        "lmc": [f"results/lmc/{a}_{b}/lmc.json" for a, b in PAIRS],
        "match": [f"results/permutation/{a}_{b}/match.json" for a, b in PAIRS],
        "merge": [f"results/merge/{s}/merge.json" for s in MERGE_SETS],
        "fisher": "results/fisher/layers.csv",
        "source": source_checkpoint(),  # fine-tuning's weight change per layer group (claims page)
        "quality": [f"results/quality/source/seed{s}.json" for s in SEEDS] if DEMO_EXTRACTOR else [],
        "same_latents": [f"results/samples/source/seed{BASE_SEED}/samples.pt"]
        + [f"results/samples/{m}/after_{t}/{t}/samples.pt" for m in config["methods"] for t in TASKS],
    }


def merge_sources(wc):
    """final.pt of every seed in the merge set ``{seeds}`` ('0_1_2'), the first the anchor."""
    return [source_checkpoint(int(s)) for s in wc.seeds.split("_")]


def _ste_input(wc):
    return [f"results/ste/{wc.seeds}/ste.pt"] if STE else []


onstart:
    # Stop before the first job when a weights file the config needs is missing and cannot be
    # downloaded (e.g. on an offline cluster), instead of failing at evaluation after all training.
    from lfsgan.metrics.requirements import check_required_weights

    check_required_weights(config, source="workflow config")
