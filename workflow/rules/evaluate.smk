# Sampling and evaluation: every (method, after task t, task s <= t) -> the forgetting matrix.



if DEMO_EXTRACTOR and config["evaluation"]["fid"]["extractor_checkpoint"]:

    rule install_extractor:
        input:
            data=EXTRACTOR_DATA,
            checkpoint=config["evaluation"]["fid"]["extractor_checkpoint"]["path"],
        output:
            EXTRACTOR,
        params:
            fid=section("evaluation", "fid"),
            dirs=lambda wc, input: " ".join(str(Path(p).parent) for p in input.data),
        log:
            "logs/install_extractor/demo_cnn.log",
        benchmark:
            "benchmarks/install_extractor/demo_cnn.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
        shell:
            "lfsgan install-extractor --config {CONFIG_FILE} --data {params.dirs} --checkpoint {input.checkpoint}"
            " --out {output} > {log} 2>&1"

elif DEMO_EXTRACTOR:

    rule train_extractor:
        input:
            data=EXTRACTOR_DATA,
        output:
            EXTRACTOR,
        params:
            fid=section("evaluation", "fid"),
            dirs=lambda wc, input: " ".join(str(Path(p).parent) for p in input.data),
        log:
            "logs/train_extractor/demo_cnn.log",
        benchmark:
            "benchmarks/train_extractor/demo_cnn.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
        shell:
            "lfsgan train-extractor --config {CONFIG_FILE} --data {params.dirs} --out {output} > {log} 2>&1"


# evaluation.jobs also groups sampling: per_method draws all of a method run's sets in one process (the
# same files as per_set's one job per set), paying the start-up (importing torch, ~2-3 s) once.
if config["evaluation"]["jobs"] == "per_set":

    rule sample:
        input:
            source=source_checkpoint(),
            states=lambda wc: task_states(wc.method, wc.after),
        output:
            samples="results/samples/{method}/after_{after}/{task}/samples.pt",
            meta="results/samples/{method}/after_{after}/{task}/samples.json",
            grid="results/samples/{method}/after_{after}/{task}/grid.png",
        params:
            sampling=SAMPLING,
            out=lambda wc, output: Path(output.samples).parent,
        log:
            "logs/sample/{method}/after_{after}/{task}.log",
        benchmark:
            "benchmarks/sample/{method}/after_{after}/{task}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
            gpu=GPU,
        shell:
            "lfsgan sample --config {CONFIG_FILE} --method {wildcards.method} --after {wildcards.after} --task {wildcards.task}"
            " --source {input.source} --states {input.states} --out {params.out} > {log} 2>&1"

else:

    rule sample:
        input:
            source=source_checkpoint(),
            states=lambda wc: task_states(wc.method, TASKS[-1]),
        output:
            samples=[f"results/samples/{{method}}/after_{a}/{t}/samples.pt" for a, t in EVAL_PAIRS],
            meta=[f"results/samples/{{method}}/after_{a}/{t}/samples.json" for a, t in EVAL_PAIRS],
            grid=[f"results/samples/{{method}}/after_{a}/{t}/grid.png" for a, t in EVAL_PAIRS],
        params:
            sampling=SAMPLING,
            after=" ".join(a for a, _ in EVAL_PAIRS),
            task=" ".join(t for _, t in EVAL_PAIRS),
            out=lambda wc, output: " ".join(str(Path(p).parent) for p in output.samples),
        log:
            "logs/sample/{method}.log",
        benchmark:
            "benchmarks/sample/{method}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=lambda wc: RES["runtime"] * len(EVAL_PAIRS),
            gpu=GPU,
        shell:
            "lfsgan sample --config {CONFIG_FILE} --method {wildcards.method} --after {params.after} --task {params.task}"
            " --source {input.source} --states {input.states} --out {params.out} > {log} 2>&1"


rule sample_source:
    input:
        source=source_checkpoint("{seed}"),
    output:
        samples="results/samples/source/seed{seed}/samples.pt",
        meta="results/samples/source/seed{seed}/samples.json",
        grid="results/samples/source/seed{seed}/grid.png",
    params:
        sampling=SAMPLING,
        out=lambda wc, output: Path(output.samples).parent,
    log:
        "logs/sample_source/seed{seed}.log",
    benchmark:
        "benchmarks/sample_source/seed{seed}.tsv"
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime"],
        gpu=GPU,
    shell:
        "lfsgan sample --config {CONFIG_FILE} --source {input.source} --out {params.out} > {log} 2>&1"


# The base source's samples, drawn from the same latents as every task generator's: each set's
# same-latent correspondence is measured against them.
SOURCE_SAMPLES = f"results/samples/source/seed{BASE_SEED}/samples.pt"

# A change to the evaluation protocol (params) re-evaluates without resampling; evaluation.jobs says
# whether one job evaluates one sample set or all of a method run's sets in one process.
EVAL_PROTOCOL = json.dumps(
    {k: v for k, v in config["evaluation"].items() if k in ("fid", "lpips", "batch_size", "quality")}, sort_keys=True
)

if config["evaluation"]["jobs"] == "per_set":

    rule evaluate:
        input:
            samples="results/samples/{method}/after_{after}/{task}/samples.pt",
            data="results/data/{task}/images.pt",
            extractor=_extractor_input,
            source_samples=SOURCE_SAMPLES,
        output:
            "results/eval/{method}/after_{after}/{task}.json",
        params:
            protocol=EVAL_PROTOCOL,
            samples_dir=lambda wc, input: Path(input.samples).parent,
            data_dir=lambda wc, input: Path(input.data).parent,
            extractor=lambda wc, input: f"--extractor {input.extractor[0]}" if input.extractor else "",
            source_dir=lambda wc, input: Path(input.source_samples).parent,
        log:
            "logs/evaluate/{method}/after_{after}/{task}.log",
        benchmark:
            "benchmarks/evaluate/{method}/after_{after}/{task}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
            gpu=GPU,
        shell:
            "lfsgan evaluate --config {CONFIG_FILE} --samples {params.samples_dir} --data {params.data_dir} {params.extractor}"
            " --source-samples {params.source_dir} --cache results/eval/.cache --out {output} > {log} 2>&1"

else:

    rule evaluate:
        input:
            samples=lambda wc: [f"results/samples/{wc.method}/after_{a}/{t}/samples.pt" for a, t in EVAL_PAIRS],
            data=[f"results/data/{t}/images.pt" for _, t in EVAL_PAIRS],
            extractor=_extractor_input,
            source_samples=SOURCE_SAMPLES,
        output:
            [f"results/eval/{{method}}/after_{a}/{t}.json" for a, t in EVAL_PAIRS],
        params:
            protocol=EVAL_PROTOCOL,
            samples_dirs=lambda wc, input: " ".join(str(Path(p).parent) for p in input.samples),
            data_dirs=lambda wc, input: " ".join(str(Path(p).parent) for p in input.data),
            extractor=lambda wc, input: f"--extractor {input.extractor[0]}" if input.extractor else "",
            source_dir=lambda wc, input: Path(input.source_samples).parent,
        log:
            "logs/evaluate/{method}.log",
        benchmark:
            "benchmarks/evaluate/{method}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=lambda wc: RES["runtime"] * len(EVAL_PAIRS),
            gpu=GPU,
        shell:
            "lfsgan evaluate --config {CONFIG_FILE} --samples {params.samples_dirs} --data {params.data_dirs}"
            " {params.extractor} --source-samples {params.source_dir} --cache results/eval/.cache --out {output} > {log} 2>&1"


if DEMO_EXTRACTOR:

    rule quality_source:
        input:
            samples=rules.sample_source.output.samples,
            data=f"results/data/{config['source']['domain']}/images.pt",
            task_data=[f"results/data/{t}/images.pt" for t in TASKS],
            extractor=EXTRACTOR,
        output:
            "results/quality/source/seed{seed}.json",
        params:
            protocol=lambda wc: json.dumps(
                {k: v for k, v in config["evaluation"].items() if k in ("quality", "batch_size")}, sort_keys=True
            ),
            data_dir=lambda wc, input: Path(input.data).parent,
            samples_dir=lambda wc, input: Path(input.samples).parent,
            task_dirs=lambda wc, input: " ".join(str(Path(p).parent) for p in input.task_data),
        log:
            "logs/quality_source/seed{seed}.log",
        benchmark:
            "benchmarks/quality_source/seed{seed}.tsv"
        resources:
            mem_mb=RES["mem_mb"],
            runtime=RES["runtime"],
            gpu=GPU,
        shell:
            "lfsgan quality --config {CONFIG_FILE} --samples {params.samples_dir} --data {params.data_dir}"
            " --task-data {params.task_dirs} --extractor {input.extractor} --out {output} > {log} 2>&1"
