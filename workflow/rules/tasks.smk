# Per-task training: task t of a method starts from the method's state after task t-1.

# One training step's cost per method kind, relative to fine-tuning's (benchmarks/methods_step.py on the
# demo's model, 2026-12-07: LFS-GAN's mode-seeking term makes its step ~2.5x; EWC and Piggyback within 10 %).
# Used only to order the jobs.
STEP_COST = {"lfsgan": 2.5}


def train_priority(wc):
    """Snakemake priority of a task's training: the training left in its method's chain (this task and the
    later ones, in steps x the kind's step cost). The longest chain starts first and keeps a core busy;
    without it the scheduler was free to start the demo's LFS-GAN chain, a third of its training, last,
    and it then ran alone on one of two cores."""
    entry = method_entry(config, wc.method)
    remaining = len(TASKS) - task_index(wc.task)
    return int(remaining * method_train_config(config, wc.method)["iterations"] * STEP_COST.get(entry["kind"], 1.0))


rule train_task:
    input:
        source=source_checkpoint(),
        data="results/data/{task}/images.pt",
        previous=_previous_states,
        fisher=_fisher_input,
        code=method_code,
    output:
        state="results/tasks/{method}/{task}/task.pt",
        params_json="results/tasks/{method}/{task}/params.json",
        samples="results/tasks/{method}/{task}/samples.png",
    params:
        method=lambda wc: json.dumps(method_entry(config, wc.method), sort_keys=True),
        train=lambda wc: json.dumps(method_train_config(config, wc.method), sort_keys=True),
        model=section("model"),
        shots=replicate_shots_param,
        data_dir=lambda wc, input: Path(input.data).parent,
        fisher=lambda wc, input: f"--fisher {input.fisher[0]}" if input.fisher else "",
        out=lambda wc, output: Path(output.state).parent,
    log:
        "logs/train_task/{method}/{task}.log",
    benchmark:
        "benchmarks/train_task/{method}/{task}.tsv"
    threads: 1
    priority: train_priority
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["train_runtime"],
        gpu=GPU,
    shell:
        "lfsgan train-task --config {CONFIG_FILE} --method {wildcards.method} --task {wildcards.task} --source {input.source}"
        " --data {params.data_dir} --previous {input.previous} {params.fisher} --out {params.out}"
        " > {log} 2>&1"
